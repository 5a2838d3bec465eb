"""`t5tune convert`: Hugging Face T5 <-> t5tune model directories (safetensors, no torch).

  t5tune convert hf-to-t5tune --input=HF_DIR --output=DIR
  t5tune convert t5tune-to-hf --input=DIR --output=HF_DIR
"""
from absl import flags

from t5tune import errors
from t5tune.cli import common

_INPUT = flags.DEFINE_string("input", None, "Source model directory.")
_OUTPUT = flags.DEFINE_string("output", None, "Destination directory (written atomically).")

DIRECTIONS = ("hf-to-t5tune", "t5tune-to-hf")


def main(argv):
  if len(argv) != 2 or argv[1] not in DIRECTIONS:
    got = argv[1] if len(argv) > 1 else "nothing"
    raise errors.UsageError(
        f"expected a direction, one of {'|'.join(DIRECTIONS)}, got {got!r}"
        + (errors.did_you_mean(argv[1], DIRECTIONS) if len(argv) > 1 else ""),
        where="command line", fix="usage: t5tune convert DIRECTION --input=DIR --output=DIR")
  common.require([_INPUT, _OUTPUT], "convert")
  from t5tune.convert import loading
  if argv[1] == "hf-to-t5tune":
    cfg = loading.hf_to_t5tune(_INPUT.value, _OUTPUT.value)
  else:
    cfg = loading.t5tune_to_hf(_INPUT.value, _OUTPUT.value)
  print(f"wrote {_OUTPUT.value} ({cfg.feed_forward_proj}, d_model={cfg.d_model},"
        f" layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers}, vocab={cfg.vocab_size})")
