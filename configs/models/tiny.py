"""Model preset `tiny`.

  t5tune info --config=tiny
"""
from t5tune.models import config as model_config


def get_config(arg=None):
  """Returns the `tiny` architecture as a ConfigDict (overridable field by field)."""
  del arg
  return model_config.as_config_dict(model_config.preset("tiny"))
