"""Evaluation throughput: rank classification and short-answer generation, t5tune vs transformers.

    python benchmarks/eval_throughput.py                # t5_1_1_small, 64 examples
    python benchmarks/eval_throughput.py --preset=tiny --examples=16 --repeats=1   # a smoke run

What an evaluation spends its time on, in examples per second, each side in
its own process on the same random weights (saved once by transformers,
`decode.prepare_side`, with EOS unreachable so every answer is exactly
--answer_len tokens on both sides):

- rank classification: every example's --options candidate answers (each
  --option_len tokens) scored by the sum of their token log-probabilities,
  the best picked. t5tune: `scoring.rank_classify` (one encoder pass per
  example, its options decoded together). transformers, given the same best
  practice by hand: the encoder once per batch, its states repeated for the
  options, one teacher-forced decoder pass, log-softmax gathered.
- generation of short answers: greedy, --answer_len new tokens.
  t5tune: `decoding.decode`; transformers: `generate(num_beams=1)` with its KV cache.

Both sides process the examples in batches of --batch; PyTorch runs with
`torch.set_flush_denormal(True)` (its best practice on a CPU). Times are
medians of --repeats passes over all examples after one warm-up pass (t5tune's
compile is in the warm-up, reported separately); every raw time is printed and
the sides' picks and tokens are compared.
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
import decode  # noqa: E402  (its prepare_side saves the shared random weights)
import train_step  # noqa: E402  (its ceiling: the machine's float32 GEMM peak)


def data(args, vocab_size):
  """Inputs [N, L] and options [N, K, T] (EOS-terminated), the same on both sides."""
  import numpy as np
  rng = np.random.RandomState(0)
  enc = rng.randint(2, vocab_size, (args.examples, args.input_len)).astype(np.int32)
  opts = rng.randint(2, vocab_size, (args.examples, args.options, args.option_len)).astype(np.int32)
  opts[:, :, -1] = 1  # EOS closes every option, as a task's targets do
  return enc, opts


def batches(n, size):
  return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def step_weights(state, tied: bool) -> list:
  """The weights one decoder step reads: the decoder's, less the cross-attention key and value
  projections (applied once per input, into the cache), and the output layer (the embedding
  when tied; an untied model's embedding gives a step only its input token's rows)."""
  import jax
  out = []
  for path, x in jax.tree_util.tree_leaves_with_path(state):
    name = jax.tree_util.keystr(path)
    head = "['token_embedder']" in name if tied else "['lm_head']" in name
    cross_kv = any(f"['cross_attention']['{p}']" in name for p in "kv")
    if head or (name.startswith("['decoder']") and not cross_kv):
      out.append(x)
  return out


def t5tune_side(args):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import flax
  from flax import nnx
  import t5tune
  from t5tune.models import info
  from t5tune.infer import decoding
  from t5tune.infer import scoring
  model = t5tune.load_model(args.dir)
  enc, opts = data(args, model.config.vocab_size)
  parts = batches(args.examples, args.batch)
  gen = decoding.DecodeOptions(max_decode_len=args.answer_len)
  graphdef, state = nnx.split(model)
  encode_fn = jax.jit(lambda st, x: nnx.merge(graphdef, st).encode(x))
  weights = step_weights(state, model.config.tie_word_embeddings)
  read_fn = jax.jit(lambda ws: sum(jnp.sum(w) for w in ws))

  def encode():  # the encoder alone, batch by batch
    for s in parts:
      jax.block_until_ready(encode_fn(state, enc[s]))

  def read_step_weights():  # every byte a decoder step must read, streamed once
    jax.block_until_ready(read_fn(weights))

  work = {
      "rank": lambda: np.concatenate([scoring.rank_classify(model, enc[s], opts[s]).best
                                      for s in parts]),
      "generate": lambda: np.concatenate([np.asarray(decoding.decode(model, enc[s], gen).tokens)
                                          for s in parts]),
      "encode": encode,
      "read_step_weights": read_step_weights,
  }
  out = {"versions": f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()}"
                     f" device(s)), flax {flax.__version__}",
         "step_weight_bytes": sum(w.size * w.dtype.itemsize for w in weights),
         "encoder_flops": info.encoder_flops(model.config, args.input_len) * args.examples}
  for name, fn in work.items():
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    median, times = harness.median_seconds(fn, args.repeats)
    if result is not None:
      np.save(os.path.join(args.dir, f"t5tune_{name}.npy"), result)
    out[name] = {"median_s": median, "times_s": times, "first_s": first}
  return out


def torch_side(args, torch):
  import numpy as np
  import transformers
  model = transformers.T5ForConditionalGeneration.from_pretrained(args.dir).eval()
  enc_np, opts_np = data(args, model.config.vocab_size)
  enc, opts = torch.tensor(enc_np, dtype=torch.long), torch.tensor(opts_np, dtype=torch.long)
  parts = batches(args.examples, args.batch)
  k, t = args.options, args.option_len

  def rank_batch(s):
    with torch.no_grad():
      states = model.encoder(input_ids=enc[s]).last_hidden_state
      states = states.repeat_interleave(k, dim=0)  # each example's encoding for its K options
      labels = opts[s].reshape(-1, t)
      logits = model(encoder_outputs=(states,), labels=labels).logits
      logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
      return logp.sum(-1).reshape(-1, k).argmax(-1).numpy()

  def generate_batch(s):
    with torch.no_grad():
      tokens = model.generate(input_ids=enc[s], attention_mask=torch.ones_like(enc[s]),
                              do_sample=False, num_beams=1, max_new_tokens=args.answer_len,
                              min_new_tokens=0)
    return tokens[:, 1:args.answer_len + 1].numpy()

  def encode_batch(s):
    with torch.no_grad():
      model.encoder(input_ids=enc[s], attention_mask=torch.ones_like(enc[s]))

  work = {"rank": lambda: np.concatenate([rank_batch(s) for s in parts]),
          "generate": lambda: np.concatenate([generate_batch(s) for s in parts]),
          "encode": lambda: [encode_batch(s) for s in parts] and None}
  out = {"versions": f"torch {torch.__version__} ({torch.get_num_threads()} threads,"
                     f" flush_denormal={args.flushing}), transformers {transformers.__version__}"}
  for name, fn in work.items():
    result = fn()
    median, times = harness.median_seconds(fn, args.repeats)
    if args.flush and result is not None:
      np.save(os.path.join(args.dir, f"torch_{name}.npy"), result)
    out[name] = {"median_s": median, "times_s": times}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="t5_1_1_small")
  parser.add_argument("--examples", type=int, default=64)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--input_len", type=int, default=96)
  parser.add_argument("--options", type=int, default=4)
  parser.add_argument("--option_len", type=int, default=4)
  parser.add_argument("--answer_len", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--side", choices=("prepare", "t5tune", "torch"))
  parser.add_argument("--flush", type=int, default=1)
  parser.add_argument("--dir")
  args = parser.parse_args()
  if harness.dispatch(args, {"prepare": decode.prepare_side, "t5tune": t5tune_side, "torch": torch_side}):
    return

  import numpy as np
  script = os.path.abspath(__file__)
  keys = ("preset", "examples", "batch", "input_len", "options", "option_len", "answer_len",
          "repeats")
  common = [f"--{k}={getattr(args, k)}" for k in keys]
  with tempfile.TemporaryDirectory(prefix="t5tune_bench_") as tmp:
    common.append(f"--dir={tmp}")
    harness.run_side(script, ["--side=prepare", *common])
    ours = harness.run_side(script, ["--side=t5tune", *common])
    theirs = harness.run_side(script, ["--side=torch", "--flush=1", *common])
    gemm = train_step.ceiling(2048, 5)
    agree = {name: float(np.mean(np.load(os.path.join(tmp, f"t5tune_{name}.npy"))
                                 == np.load(os.path.join(tmp, f"torch_{name}.npy"))))
             for name in ("rank", "generate")}

  def raw(side):
    return " ".join(f"{x:.3f}" for x in side["times_s"])
  print(f"\n## Evaluation throughput: {args.preset}, {args.examples} examples in batches of"
        f" {args.batch}, inputs {args.input_len} tokens; rank: {args.options} options of"
        f" {args.option_len} tokens; generate: {args.answer_len} tokens greedy"
        " (each side in its own process)\n")
  print("\n".join(harness.machine_lines({"t5tune": ours["versions"],
                                         "transformers": theirs["versions"]})))
  print(f"- median of {args.repeats} passes after a warm-up; ratio = t5tune examples/s /"
        " transformers examples/s; agreement = share of equal picks (rank) or tokens (generate)\n")
  print("| work | t5tune examples/s | transformers examples/s | ratio | t5tune raw s |"
        " transformers raw s | t5tune warm-up s | agreement |")
  print("|---|---|---|---|---|---|---|---|")
  for name in ("rank", "generate"):
    o, t = ours[name], theirs[name]
    print(f"| {name} | {args.examples / o['median_s']:.1f} | {args.examples / t['median_s']:.1f} |"
          f" {t['median_s'] / o['median_s']:.2f}x | {raw(o)} | {raw(t)} | {o['first_s']:.1f} |"
          f" {agree[name]:.3f} |")
  print_phases(args, ours, theirs, gemm)


def print_phases(args, ours, theirs, gemm):
  """Generation split into the encoder and the rest (cross-attention cache and the steps)."""
  n = -(-args.examples // args.batch)
  per_batch = lambda side, name: side[name]["median_s"] / n * 1e3  # noqa: E731
  rows = [(name, per_batch(ours, key), per_batch(theirs, key)) for name, key in
          (("encoder", "encode"), ("generate", "generate"))]
  rows.insert(1, (f"the rest: cross-attention keys/values and {args.answer_len} steps",
                  rows[1][1] - rows[0][1], rows[1][2] - rows[0][2]))
  print(f"\n### Where generation's time goes, ms per batch of {args.batch}"
        " (encoder timed alone; the rest = generate - encoder)\n")
  print("| phase | t5tune ms | transformers ms | ratio |")
  print("|---|---|---|---|")
  for name, o, t in rows:
    print(f"| {name} | {o:.1f} | {t:.1f} | {t / o:.2f}x |")
  flops = ours["encoder_flops"] / n
  print(f"\n- encoder: {flops / 1e9:.1f} GFLOP per batch; t5tune"
        f" {flops / rows[0][1] / 1e6:.0f} GFLOP/s, transformers {flops / rows[0][2] / 1e6:.0f}"
        f" GFLOP/s; the machine's float32 GEMM ceiling {gemm['gflops']:.0f} GFLOP/s"
        f" ({gemm['n']}^3; xla {gemm['xla']['gflops']:.0f}, torch {gemm['torch']['gflops']:.0f})")
  read = ours["read_step_weights"]["median_s"] * 1e3
  print(f"- a decoder step reads its layers' weights (less the cross-attention key and value"
        f" projections, applied once into the cache) and the output layer:"
        f" {ours['step_weight_bytes'] / 1e6:.0f} MB, which XLA streams once in {read:.1f} ms;"
        f" {args.answer_len} steps at that floor: {args.answer_len * read:.1f} ms")


if __name__ == "__main__":
  main()
