"""Decode speed: t5tune greedy and beam search vs transformers' `generate`, each side in its own process.

    python benchmarks/decode.py                      # t5_1_1_small, batch 8, 64 -> 32 tokens
    python benchmarks/decode.py --preset=tiny --repeats=2 --new_tokens=8   # a smoke run

Random weights in the preset's architecture are built once with transformers
(in a child process) and saved; each side loads them in a fresh process, so
both decode the same model. Both decode exactly --new_tokens tokens per
sequence (EOS suppressed on both sides, so neither stops early); the sides'
tokens are compared (not for sampling, whose random numbers differ). PyTorch runs with `torch.set_flush_denormal(True)` set
at process start (its best practice on a CPU; the unflushed time is a
footnote). Times are medians of --repeats runs after one warm-up run (which
includes t5tune's compilation, reported separately); every raw time is
printed. tokens/s = batch * new_tokens / time (for beam search the returned
sequences' tokens, not every beam's).
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)


def methods(args):
  """(name, t5tune DecodeOptions kwargs, generate kwargs) per method."""
  return [
      ("greedy", {"max_decode_len": args.new_tokens}, {"num_beams": 1}),
      (f"beam ({args.num_beams})",
       {"method": "beam", "num_beams": args.num_beams, "length_penalty": 1.0,
        "max_decode_len": args.new_tokens},
       {"num_beams": args.num_beams, "length_penalty": 1.0, "early_stopping": False}),
      # Sampling as chat and completion clients ask for it: the filter's per-step threshold
      # search is what this row measures beside greedy. The tokens differ (other RNGs).
      ("sample (top-k 50, top-p 0.95)",
       {"method": "sample", "temperature": 1.0, "top_k": 50, "top_p": 0.95,
        "max_decode_len": args.new_tokens},
       {"do_sample": True, "temperature": 1.0, "top_k": 50, "top_p": 0.95, "num_beams": 1}),
  ]


def inputs(args, vocab_size):
  import numpy as np
  rng = np.random.RandomState(0)
  return rng.randint(2, vocab_size, (args.batch, args.input_len)).astype(np.int32)


def prepare_side(args):
  """Random weights saved as a Hugging Face directory, EOS made unreachable."""
  import torch
  from t5tune.models import config as model_config
  cfg = model_config.preset(args.preset, dropout_rate=0.0)
  torch.manual_seed(0)
  model = harness.hf_t5(cfg).eval()
  # EOS gets a zero output row, so its logit is 0 whatever the hidden state,
  # below the largest of the other random logits at every step: every row
  # decodes exactly new_tokens (a large negative row is not enough: its logit
  # is -c * sum(hidden), which is large and POSITIVE when the sum is negative).
  with torch.no_grad():
    model.lm_head.weight[1] = 0.0
  model.save_pretrained(args.dir, safe_serialization=True)
  return {"vocab_size": cfg.vocab_size}


def t5tune_side(args):
  import jax
  import numpy as np
  import flax
  import t5tune
  from t5tune.infer import decoding
  model = t5tune.load_model(args.dir, dtype=args.dtype)
  enc = inputs(args, model.config.vocab_size)
  out = {"versions": f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()}"
                     f" device(s)), flax {flax.__version__}"}
  for name, kwargs, _ in methods(args):
    opts = decoding.DecodeOptions(**kwargs)
    t0 = time.perf_counter()
    tokens = decoding.decode(model, enc, opts).tokens
    first = time.perf_counter() - t0
    median, times = harness.median_seconds(lambda: decoding.decode(model, enc, opts), args.repeats)
    np.save(os.path.join(args.dir, f"t5tune_{name[:4]}.npy"), np.asarray(tokens))
    out[name] = {"median_s": median, "times_s": times, "first_s": first,
                 "early_eos": bool((np.asarray(tokens) == 1).any())}
  return out


def torch_side(args, torch):
  import numpy as np
  import transformers
  model = transformers.T5ForConditionalGeneration.from_pretrained(args.dir).eval()
  device = "cuda" if torch.cuda.is_available() else "cpu"  # the peer uses a GPU like jax does
  model.to(device)
  if args.dtype == "bfloat16":
    model.to(torch.bfloat16)
  enc = torch.tensor(inputs(args, model.config.vocab_size), dtype=torch.long, device=device)
  mask = torch.ones_like(enc)
  out = {"versions": f"torch {torch.__version__} ({torch.get_num_threads()} threads,"
                     f" {device}, flush_denormal={args.flushing}),"
                     f" transformers {transformers.__version__}"}
  for name, _, hf_kwargs in methods(args):
    def run():
      with torch.no_grad():
        tokens = model.generate(input_ids=enc, attention_mask=mask,
                                max_new_tokens=args.new_tokens, min_new_tokens=0,
                                **{"do_sample": False, **hf_kwargs})
      if device == "cuda":
        torch.cuda.synchronize()
      return tokens.cpu()
    tokens = run()
    median, times = harness.median_seconds(run, args.repeats)
    if args.flush:
      np.save(os.path.join(args.dir, f"torch_{name[:4]}.npy"),
              tokens.numpy()[:, 1:args.new_tokens + 1])
    out[name] = {"median_s": median, "times_s": times}
  return out


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
  # One side, in a child process.
  parser.add_argument("--side", choices=("prepare", "t5tune", "torch"))
  parser.add_argument("--flush", type=int, default=1)
  parser.add_argument("--dir")
  args = parser.parse_args()
  if harness.dispatch(args, {"prepare": prepare_side, "t5tune": t5tune_side, "torch": torch_side}):
    return

  import numpy as np
  script = os.path.abspath(__file__)
  common = [f"--{k}={getattr(args, k)}" for k in
            ("preset", "batch", "input_len", "new_tokens", "num_beams", "repeats", "dtype")]
  with tempfile.TemporaryDirectory(prefix="t5tune_bench_") as tmp:
    common.append(f"--dir={tmp}")
    harness.run_side(script, ["--side=prepare", *common])
    ours = harness.run_side(script, ["--side=t5tune", *common])
    theirs = harness.run_side(script, ["--side=torch", "--flush=1", *common])
    unflushed = harness.run_side(script, ["--side=torch", "--flush=0", *common])
    same = {name: np.array_equal(np.load(os.path.join(tmp, f"t5tune_{name[:4]}.npy")),
                                 np.load(os.path.join(tmp, f"torch_{name[:4]}.npy")))
            for name, _, _ in methods(args)}

  def raw(side):
    return " ".join(f"{t:.3f}" for t in side["times_s"])
  print(f"\n## Decode speed: {args.preset}, batch {args.batch}, input {args.input_len},"
        f" {args.new_tokens} new tokens, {args.dtype} (each side in its own process)\n")
  print("\n".join(harness.machine_lines({"t5tune": ours["versions"],
                                         "transformers": theirs["versions"]})))
  print(f"- median of {args.repeats} runs after a warm-up; ratio = transformers / t5tune time"
        " (above 1: t5tune faster)\n")
  print("| method | t5tune s | transformers s (flushed) | ratio | t5tune tokens/s |"
        " transformers tokens/s | t5tune raw s | transformers raw s | t5tune first call s |"
        " same tokens |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  tokens = args.batch * args.new_tokens
  for name, _, _ in methods(args):
    o, t = ours[name], theirs[name]
    if o["early_eos"]:
      sys.exit(f"{name}: a sequence ended early; the token count would be wrong")
    print(f"| {name} | {o['median_s']:.3f} | {t['median_s']:.3f} |"
          f" {t['median_s'] / o['median_s']:.2f}x | {tokens / o['median_s']:.0f} |"
          f" {tokens / t['median_s']:.0f} | {raw(o)} | {raw(t)} | {o['first_s']:.1f} |"
          f" {'n/a (two RNGs)' if name.startswith('sample') else 'yes' if same[name] else 'no'} |")
  print("\nFootnote: transformers without `torch.set_flush_denormal(True)`: " + "; ".join(
      f"{name} {unflushed[name]['median_s']:.3f} s (raw {raw(unflushed[name])})"
      for name, _, _ in methods(args)) + ".")


if __name__ == "__main__":
  main()
