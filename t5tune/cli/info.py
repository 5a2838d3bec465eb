"""`t5tune info`: parameter count, per-component breakdown and FLOPs of a model config.

  t5tune info --config=flan_t5_xxl
  t5tune info --config=configs/models/t5_1_1_base.py --inputs_len=512 --targets_len=128
  t5tune info --config=path/to/hf_or_t5tune_model_dir
"""
import os

from absl import flags

from t5tune import errors
from t5tune.cli import common
from t5tune.models import config as model_config

_CONFIG = flags.DEFINE_string(
    "config", None, "A preset name (e.g. flan_t5_base), a configs/models/*.py file, or a"
    " model directory (t5tune or Hugging Face).")
_INPUTS_LEN = flags.DEFINE_integer("inputs_len", 512, "Input length for the FLOP estimate.")
_TARGETS_LEN = flags.DEFINE_integer("targets_len", 128, "Target length for the FLOP estimate.")


def resolve(spec: str) -> model_config.T5Config:
  """A T5Config from a preset name, a config file, or a model directory."""
  if os.path.isdir(spec):
    from t5tune.convert import loading
    return loading.read_config(spec)
  if spec.endswith(".py"):
    if not os.path.isfile(spec):
      raise errors.InputError("no such file", where=f"--config={spec}",
                              fix="give a preset name, a configs/models/*.py file or a model dir")
    import importlib.util
    module_spec = importlib.util.spec_from_file_location("_t5tune_model_config", spec)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  try:
    if spec.endswith(".py"):
      return model_config.from_dict(module.get_config().to_dict())
    return model_config.preset(spec)
  except ValueError as e:
    raise errors.UsageError(str(e), where=f"--config={spec}",
                            fix="give a preset name, a configs/models/*.py file or a model dir"
                            ) from None


def main(argv):
  common.no_extra_args(argv, "info")
  common.require([_CONFIG], "info")
  from t5tune.models import info
  cfg = resolve(_CONFIG.value)
  counts = info.parameter_counts(cfg)
  print(f"model: {_CONFIG.value}")
  print(f"  {cfg.feed_forward_proj} FFN, d_model={cfg.d_model}, d_ff={cfg.d_ff}, heads={cfg.num_heads}"
        f"x{cfg.d_kv}, layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers},"
        f" vocab={cfg.vocab_size}, tied={cfg.tie_word_embeddings}")
  print("parameters:")
  width = max(len(k) for k in counts)
  for key, n in counts.items():
    if key != "total":
      print(f"  {key:<{width}}  {n:>15,d}  ({info.human(n)})")
  print(f"  {'total':<{width}}  {counts['total']:>15,d}  ({info.human(counts['total'])})")
  L, T = _INPUTS_LEN.value, _TARGETS_LEN.value
  fwd = info.forward_flops(cfg, L, T)
  print(f"FLOPs per example ({L} input / {T} target tokens):")
  print(f"  forward  {info.human(fwd)}  ({info.human(fwd / (L + T))} per token)")
  tr = info.train_flops(cfg, L, T)
  print(f"  training {info.human(tr)}  ({info.human(tr / (L + T))} per token)")
