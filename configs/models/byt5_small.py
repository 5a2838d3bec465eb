"""Model preset `byt5_small`.

  t5tune info --config=byt5_small
"""
from t5tune.models import config as model_config


def get_config(arg=None):
  """Returns the `byt5_small` architecture as a ConfigDict (overridable field by field)."""
  del arg
  return model_config.as_config_dict(model_config.preset("byt5_small"))
