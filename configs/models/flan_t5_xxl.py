"""Model preset `flan_t5_xxl`.

  t5tune info --config=flan_t5_xxl
"""
from t5tune.models import config as model_config


def get_config(arg=None):
  """Returns the `flan_t5_xxl` architecture as a ConfigDict (overridable field by field)."""
  del arg
  return model_config.as_config_dict(model_config.preset("flan_t5_xxl"))
