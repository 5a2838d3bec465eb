"""Model preset `t5_1_1_base`.

  t5tune info --config=t5_1_1_base
"""
from t5tune.models import config as model_config


def get_config(arg=None):
  """Returns the `t5_1_1_base` architecture as a ConfigDict (overridable field by field)."""
  del arg
  return model_config.as_config_dict(model_config.preset("t5_1_1_base"))
