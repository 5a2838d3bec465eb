"""Model preset `flan_t5_base`.

  t5tune info --config=flan_t5_base
"""
from t5tune.models import config as model_config


def get_config(arg=None):
  """Returns the `flan_t5_base` architecture as a ConfigDict (overridable field by field)."""
  del arg
  return model_config.as_config_dict(model_config.preset("flan_t5_base"))
