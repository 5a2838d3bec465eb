"""`t5tune convert`: Hugging Face T5 <-> t5tune model directories (safetensors, no torch).

  t5tune convert hf-to-t5tune --input=HF_DIR --output=DIR
  t5tune convert t5tune-to-hf --input=DIR --output=HF_DIR
"""
from absl import flags

_INPUT = flags.DEFINE_string("input", None, "Source model directory.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Destination directory (replaced atomically).",
                              required=True)

DIRECTIONS = ("hf-to-t5tune", "t5tune-to-hf")


def main(argv):
  if len(argv) != 2 or argv[1] not in DIRECTIONS:
    raise SystemExit(f"usage: t5tune convert {{{'|'.join(DIRECTIONS)}}} --input=DIR --output=DIR"
                     f" (got {argv[1:]})")
  from t5tune.convert import hf, loading
  try:
    if argv[1] == "hf-to-t5tune":
      cfg = loading.hf_to_t5tune(_INPUT.value, _OUTPUT.value)
    else:
      cfg = loading.t5tune_to_hf(_INPUT.value, _OUTPUT.value)
  except (hf.ConversionError, FileNotFoundError) as e:
    raise SystemExit(f"t5tune convert: {e}")
  print(f"wrote {_OUTPUT.value} ({cfg.feed_forward_proj}, d_model={cfg.d_model},"
        f" layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers}, vocab={cfg.vocab_size})")
