"""`t5tune convert`: Hugging Face T5 <-> t5tune model directories (safetensors, no torch),
and T5X checkpoints -> t5tune.

  t5tune convert hf-to-t5tune --input=HF_DIR --output=DIR
  t5tune convert t5tune-to-hf --input=DIR --output=HF_DIR
  t5tune convert t5x-to-t5tune --input=T5X_DIR/checkpoint_N --output=DIR [--config=PRESET|config.gin]
"""
from absl import flags

from t5tune import errors
from t5tune.cli import arguments

_INPUT = flags.DEFINE_string("input", None, "Source model directory.", allow_override=True)
_OUTPUT = flags.DEFINE_string("output", None, "Destination directory (written atomically).", allow_override=True)
_CONFIG = flags.DEFINE_string(
    "config", None, "t5x-to-t5tune: a preset (e.g. flan_t5_xl) or the run's config.gin, for what"
    " array shapes cannot say (the MLP activation); <model_dir>/config.gin is used if present.", allow_override=True)
_FEED_FORWARD = flags.DEFINE_enum(
    "feed_forward_proj", None, ["relu", "gelu", "gated-gelu", "gated-silu", "gated-relu"],
    "t5x-to-t5tune: the MLP activation when no --config gives it.", allow_override=True)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace an existing --output, only if it is a model directory of the"
    " same kind (a directory holding anything else is never replaced).", allow_override=True)

DIRECTIONS = ("hf-to-t5tune", "t5tune-to-hf", "t5x-to-t5tune")


def main(argv):
  if len(argv) != 2 or argv[1] not in DIRECTIONS:
    got = argv[1] if len(argv) > 1 else "nothing"
    raise errors.UsageError(
        f"expected a direction, one of {'|'.join(DIRECTIONS)}, got {got!r}"
        + (errors.did_you_mean(argv[1], DIRECTIONS) if len(argv) > 1 else ""),
        where="command line", fix="usage: t5tune convert DIRECTION --input=DIR --output=DIR")
  arguments.require([_INPUT, _OUTPUT], "convert")
  from t5tune import progress
  with progress.status(f"convert {argv[1]}"):
    cfg = _convert(argv[1])
  print(f"wrote {_OUTPUT.value} ({cfg.feed_forward_proj}, d_model={cfg.d_model},"
        f" layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers}, vocab={cfg.vocab_size})")


def _convert(direction: str):
  """Runs one conversion; returns the model's T5Config."""
  from t5tune.convert import loading
  if direction == "hf-to-t5tune":
    cfg = loading.hf_to_t5tune(_INPUT.value, _OUTPUT.value, _OVERWRITE.value)
  elif direction == "t5tune-to-hf":
    cfg = loading.t5tune_to_hf(_INPUT.value, _OUTPUT.value, _OVERWRITE.value)
  else:
    from t5tune.convert import t5x
    imported = t5x.t5x_to_t5tune(_INPUT.value, _OUTPUT.value, _CONFIG.value, _OVERWRITE.value,
                                 feed_forward_proj=_FEED_FORWARD.value)
    cfg, layout = imported.config, imported.layout
    print(f"read {imported.format} checkpoint (step {imported.step},"
          f" {'scanned' if layout.scanned else 'unscanned'} layers,"
          f" {'per-layer' if layout.per_layer_relpos else 'shared'} position bias)"
          + (f" with {imported.gin_path}" if imported.gin_path else ""))
    if imported.dropped_state:
      print(f"optimizer state not imported ({len(imported.dropped_state)} arrays, e.g."
            f" {imported.dropped_state[0]}): t5tune's optimizer starts fresh")
  return cfg
