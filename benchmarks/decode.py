"""Decode speed: t5tune greedy and beam search vs transformers' PyTorch `generate`, same weights.

    python benchmarks/decode.py                      # t5_1_1_small, batch 8, 32 new tokens
    python benchmarks/decode.py --preset=tiny --repeats=3

Random weights in the t5_1_1_small architecture are built once with
transformers, saved, and loaded into t5tune, so both sides run the same model.
Both decode exactly --new_tokens tokens per sequence (EOS suppressed on both
sides, so neither stops early). Times are the median of --repeats runs after
one warm-up run (which includes t5tune's compilation, reported separately).
tokens/s = batch * new_tokens / time; for beam search the tokens of the
returned sequences (not of every beam). Prints a markdown table.
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timing  # noqa: E402  (benchmarks/timing.py, beside this script)



def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="t5_1_1_small")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--input_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=32)
  parser.add_argument("--num_beams", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="activations on both sides (t5tune keeps float32 parameters)")
  args = parser.parse_args()

  import jax
  import numpy as np
  import torch
  import transformers
  import flax

  import t5tune
  from t5tune.infer import decoding
  from t5tune.models import config as model_config

  cfg = model_config.preset(args.preset, dropout_rate=0.0)
  torch.manual_seed(0)
  hf_cfg = transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
      num_heads=cfg.num_heads, num_layers=cfg.num_encoder_layers,
      num_decoder_layers=cfg.num_decoder_layers, feed_forward_proj=cfg.feed_forward_proj,
      tie_word_embeddings=cfg.tie_word_embeddings, dropout_rate=0.0, pad_token_id=0,
      eos_token_id=1, decoder_start_token_id=0)
  hf_model = transformers.T5ForConditionalGeneration(hf_cfg).eval()
  # EOS gets a hugely negative output row on both sides: exactly new_tokens each.
  with torch.no_grad():
    hf_model.lm_head.weight[1] = -100.0 * hf_model.lm_head.weight.abs().max()
  tmp = tempfile.mkdtemp(prefix="t5tune_bench_")
  hf_model.save_pretrained(tmp, safe_serialization=True)
  model = t5tune.load_model(tmp, dtype=args.dtype)
  # The peer runs on the GPU when there is one, like jax does.
  device = "cuda" if torch.cuda.is_available() else "cpu"
  hf_model.to(device)
  if args.dtype == "bfloat16":
    hf_model.to(torch.bfloat16)

  rng = np.random.RandomState(0)
  enc = rng.randint(2, cfg.vocab_size, (args.batch, args.input_len)).astype(np.int32)
  enc_t = torch.tensor(enc, dtype=torch.long, device=device)
  mask_t = torch.ones_like(enc_t)
  rows = []
  for name, opts, hf_kwargs in [
      ("greedy", decoding.DecodeOptions(max_decode_len=args.new_tokens), dict(num_beams=1)),
      (f"beam ({args.num_beams})",
       decoding.DecodeOptions(method="beam", num_beams=args.num_beams, length_penalty=1.0,
                              max_decode_len=args.new_tokens),
       dict(num_beams=args.num_beams, length_penalty=1.0, early_stopping=False))]:
    t0 = time.perf_counter()
    ours = decoding.decode(model, enc, opts)
    first = time.perf_counter() - t0
    ours_s = timing.median_seconds(lambda: decoding.decode(model, enc, opts), args.repeats)

    def hf_run():
      with torch.no_grad():
        out = hf_model.generate(input_ids=enc_t, attention_mask=mask_t, do_sample=False,
                                max_new_tokens=args.new_tokens, min_new_tokens=0, **hf_kwargs)
      if device == "cuda":
        torch.cuda.synchronize()
      return out.cpu()
    ref = hf_run()
    hf_s = timing.median_seconds(hf_run, args.repeats)
    assert not (ours.tokens == 1).any(), "a sequence ended early; the token count would be wrong"
    same = np.array_equal(ours.tokens, ref.numpy()[:, 1:args.new_tokens + 1])
    tokens = args.batch * args.new_tokens
    rows.append((name, tokens / ours_s, tokens / hf_s, ours_s, hf_s, first, same))

  print(f"\n## Decode speed: {args.preset}, batch {args.batch}, input {args.input_len},"
        f" {args.new_tokens} new tokens\n")
  print(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
  print(f"- machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs,"
        f" {platform.system()} {platform.release()}; jax backend: {jax.default_backend()}"
        f" ({jax.device_count()} devices)")
  print(f"- versions: jax {jax.__version__}, flax {flax.__version__}, torch {torch.__version__}"
        f" ({torch.get_num_threads()} threads), transformers {transformers.__version__},"
        f" python {platform.python_version()}")
  print(f"- median of {args.repeats} runs after a warm-up; {args.dtype} activations;"
        f" transformers on {device}\n")
  print("| method | t5tune tokens/s | transformers (PyTorch) tokens/s | t5tune s | transformers s"
        " | t5tune first call (compile) s | same tokens |")
  print("|---|---|---|---|---|---|---|")
  for name, ours_tps, hf_tps, ours_s, hf_s, first, same in rows:
    print(f"| {name} | {ours_tps:.0f} | {hf_tps:.0f} | {ours_s:.3f} | {hf_s:.3f} | {first:.1f}"
          f" | {'yes' if same else 'no'} |")


if __name__ == "__main__":
  main()
