"""Model preset `ul2`.

  t5tune info --config=ul2
"""
from t5tune.models import config as model_config


def get_config(arg=None):
  """Returns the `ul2` architecture as a ConfigDict (overridable field by field)."""
  del arg
  return model_config.as_config_dict(model_config.preset("ul2"))
