"""Train-step speed: t5tune's jitted step vs transformers' PyTorch T5, each side in its own process.

    python benchmarks/train_step.py                  # the main table and the default scaling cells
    python benchmarks/train_step.py --full           # plus t5_1_1_base and batch 32 x 512 (slow on a CPU)
    python benchmarks/train_step.py --main=tiny:8:32:8 --scaling=none --repeats=2   # a smoke run

A cell is MODEL:BATCH:INPUTS:TARGETS[:DROPOUT] (dropout 0 unless given,
e.g. t5_1_1_small:8:512:128:0.1). Both sides train the same architecture
with AdamW (lr 1e-4) in float32 on random tokens, every target position
weighted, with the same dropout rate. t5tune: the trainer's jitted step on one device, state donated.
PyTorch: T5ForConditionalGeneration with torch.optim.AdamW, and
`torch.set_flush_denormal(True)` set at process start, its best practice
on a CPU: Hugging Face initialises the untied lm_head with std 1.0, so many
softmax probabilities and gradients are denormal and unflushed matmuls run
several times slower (XLA flushes them already). The unflushed time is
printed as a footnote for the main cells. Each side is a fresh process
(`benchmarks/harness.py`); times are medians of --repeats steps after two
warm-up steps, and every raw time is printed. Compile time is separate.
"""
import argparse
import contextlib
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)

MAIN = ("bench256:8:128:32", "t5_1_1_small:8:128:32")
SCALING = ("t5_1_1_small:8:128:32", "t5_1_1_small:32:128:32", "t5_1_1_small:8:512:128",
           "t5_1_1_small:8:512:128:0.1")  # the last with dropout 0.1 on both sides
SCALING_FULL = SCALING + (
    "t5_1_1_small:32:512:128", "t5_1_1_base:8:128:32", "t5_1_1_base:32:128:32",
    "t5_1_1_base:8:512:128", "t5_1_1_base:32:512:128")


def parse_cell(cell: str) -> dict:
  """MODEL:BATCH:INPUTS:TARGETS[:DROPOUT] -> the side's arguments (dropout 0 unless given)."""
  model, batch, inputs, targets, *rest = cell.split(":")
  return {"model": model, "batch": int(batch), "inputs": int(inputs), "targets": int(targets),
          "dropout": float(rest[0]) if rest else 0.0}


def model_config(name: str, dropout: float = 0.0):
  from t5tune.models import config as model_config_lib
  if name == "bench256":  # a 256-wide t5_1_1_small: the reference size
    return model_config_lib.preset(
        "t5_1_1_small", d_model=256, num_encoder_layers=4, num_decoder_layers=4,
        num_heads=4, d_kv=64, d_ff=1024, vocab_size=32128, dropout_rate=dropout)
  return model_config_lib.preset(name, dropout_rate=dropout)


@contextlib.contextmanager
def t5tune_step(args):
  """Yields (run, compiled step, model config, compile seconds): the trainer's jitted step on one device."""
  import jax
  from t5tune import sharding
  from t5tune.models import config as model_config_lib
  from t5tune.train import experiment
  from t5tune.train import synthetic
  from t5tune.train import trainer
  cfg = model_config(args.model, args.dropout)
  config = experiment.default_config()
  config.data.iterator_factory = "t5tune.train.synthetic:make_iterator"
  config.data.inputs_length, config.data.targets_length = args.inputs, args.targets
  config.data.batch_size = args.batch
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-4
  config.checkpoint.async_save = False
  config.model.preset = "t5_1_1_small"
  # Overrides against the preset as the trainer builds it (its own dropout
  # default included, which the model's cfg may not share).
  base = model_config_lib.preset("t5_1_1_small").to_dict()
  for k, v in cfg.to_dict().items():
    if v != base[k]:
      config.model.overrides[k] = v
  mesh = sharding.single_device_mesh()
  with tempfile.TemporaryDirectory() as workdir:
    tr = trainer.Trainer(config, workdir, mesh=mesh)
    it = synthetic.SyntheticIterator(
        batch_size=args.batch, inputs_length=args.inputs, targets_length=args.targets,
        vocab_size=cfg.vocab_size, seed=0, mesh=mesh)
    batch = next(it)
    batch["decoder_loss_weights"] = jax.numpy.ones_like(batch["decoder_loss_weights"])
    state, _ = tr.initial_state()
    t0 = time.perf_counter()
    step = tr.compile(state, batch)
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run():
      holder["state"], m = step(holder["state"], batch)
      m["loss"].block_until_ready()
    try:
      yield run, step, cfg, compile_s
    finally:
      tr.checkpointer.close()


def t5tune_side(args):
  import jax
  import flax
  from t5tune.models import info
  with t5tune_step(args) as (run, _, cfg, compile_s):
    for _ in range(2):
      run()
    median, times = harness.median_seconds(run, args.repeats)
  return {"median_s": median, "times_s": times, "compile_s": compile_s,
          "flops": info.train_flops(cfg, args.inputs, args.targets) * args.batch,
          "versions": f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()}"
                      f" device(s)), flax {flax.__version__}"}


def torch_step(args, torch):
  """(run, model): one AdamW step of transformers' T5 on random tokens."""
  cfg = model_config(args.model, args.dropout)
  torch.manual_seed(0)
  model = harness.hf_t5(cfg, cfg.dropout_rate)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  enc = torch.randint(2, cfg.vocab_size, (args.batch, args.inputs))
  labels = torch.randint(2, cfg.vocab_size, (args.batch, args.targets))

  def run():
    opt.zero_grad(set_to_none=True)
    model(input_ids=enc, labels=labels).loss.backward()
    opt.step()
  return run, model


def torch_side(args, torch):
  import transformers
  run, _ = torch_step(args, torch)
  for _ in range(2):
    run()
  median, times = harness.median_seconds(run, args.repeats)
  return {"median_s": median, "times_s": times,
          "versions": f"torch {torch.__version__} ({torch.get_num_threads()} threads,"
                      f" flush_denormal={args.flushing}), transformers {transformers.__version__}"}


def gemm_side(args):
  """GFLOP/s of one large float32 matrix multiply (n x n by n x n), by XLA or by PyTorch."""
  import numpy as np
  n = args.gemm_n
  a = np.random.RandomState(0).standard_normal((n, n)).astype(np.float32)
  if args.side == "gemm_torch":
    import torch
    x = torch.from_numpy(a)
    run = lambda: torch.mm(x, x)  # noqa: E731  (synchronous on a CPU)
    versions = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
  else:
    import jax
    x = jax.device_put(a)
    mm = jax.jit(lambda m: m @ m)
    mm(x).block_until_ready()
    run = lambda: mm(x).block_until_ready()  # noqa: E731
    versions = f"jax {jax.__version__} ({jax.default_backend()})"
  for _ in range(2):
    run()
  median, times = harness.median_seconds(run, args.repeats)
  return {"median_s": median, "times_s": times, "gflops": 2 * n ** 3 / median / 1e9,
          "versions": versions}


def ceiling(n: int, repeats: int) -> dict:
  """The machine's float32 GEMM ceiling: the better of XLA and PyTorch, each in its own process."""
  script = os.path.abspath(__file__)
  sides = {side: harness.run_side(script, [f"--side=gemm_{side}", f"--gemm_n={n}",
                                           f"--repeats={max(repeats, 5)}"])
           for side in ("xla", "torch")}
  return {"n": n, **sides, "gflops": max(s["gflops"] for s in sides.values())}


def side_main(args):
  if args.side in ("gemm_xla", "gemm_torch"):
    harness.report(gemm_side(args))
  elif args.side == "torch":
    import torch  # first, so that every thread torch creates inherits the mode
    # set_flush_denormal returns False where the CPU cannot flush (then say so).
    args.flushing = bool(torch.set_flush_denormal(bool(args.flush))) and bool(args.flush)
    harness.report(torch_side(args, torch))
  else:
    harness.report(t5tune_side(args))


def measure(cell: str, repeats: int, unflushed: bool) -> dict:
  c = parse_cell(cell)
  common = [f"--{k}={v}" for k, v in c.items()] + [f"--repeats={repeats}"]
  script = os.path.abspath(__file__)
  out = {"cell": cell, "tokens": c["batch"] * (c["inputs"] + c["targets"]),
         "t5tune": harness.run_side(script, ["--side=t5tune", *common]),
         "torch": harness.run_side(script, ["--side=torch", "--flush=1", *common])}
  if unflushed:
    out["torch_unflushed"] = harness.run_side(script, ["--side=torch", "--flush=0", *common])
  print(f"measured {cell}", file=sys.stderr, flush=True)
  return out


def raw(side: dict) -> str:
  return " ".join(harness.ms(t) for t in side["times_s"])


def print_ceiling(gemm):
  print(f"\n### The machine's float32 GEMM ceiling ({gemm['n']} x {gemm['n']} x {gemm['n']},"
        " each side in its own process)\n")
  print("| side | GFLOP/s | raw ms |")
  print("|---|---|---|")
  for side in ("xla", "torch"):
    g = gemm[side]
    print(f"| {side} ({g['versions']}) | {g['gflops']:.1f} | {raw(g)} |")
  print(f"\nCeiling: {gemm['gflops']:.1f} GFLOP/s (the better side). Model FLOP/s below count"
        " 6 x parameters x tokens plus attention (`t5tune info`), the same for both sides.")


def rate(r, side, gemm):
  """Model GFLOP/s of `side` in row `r` and its share of the GEMM ceiling."""
  gflops = r["t5tune"]["flops"] / r[side]["median_s"] / 1e9
  return f"{gflops:.1f} | {100 * gflops / gemm['gflops']:.0f}%"


def print_tables(main_rows, scaling_rows, gemm):
  sides = {}
  for r in main_rows + scaling_rows:
    sides["t5tune"] = r["t5tune"]["versions"]
    sides["PyTorch"] = r["torch"]["versions"]
  print("\n## Train step: t5tune vs PyTorch T5 (each side in its own process)\n")
  print("\n".join(harness.machine_lines(sides)))
  print("- AdamW, float32, random tokens, all target positions weighted, dropout 0 unless"
        " the cell's fifth field gives a rate (both sides the same); median of the raw"
        " times (ms) after 2 warm-up steps; ratio = PyTorch / t5tune (above 1: t5tune faster)\n")
  if main_rows:
    print("| model:batch:inputs:targets | t5tune ms | PyTorch ms (flushed) | ratio |"
          " t5tune raw ms | PyTorch raw ms | t5tune tokens/s | PyTorch tokens/s |"
          " t5tune GFLOP/s | t5tune % of ceiling | PyTorch GFLOP/s | PyTorch % of ceiling |"
          " t5tune compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in main_rows:
      o, t = r["t5tune"], r["torch"]
      print(f"| {r['cell']} | {harness.ms(o['median_s'])} | {harness.ms(t['median_s'])} |"
            f" {t['median_s'] / o['median_s']:.2f}x | {raw(o)} | {raw(t)} |"
            f" {r['tokens'] / o['median_s']:.0f} | {r['tokens'] / t['median_s']:.0f} |"
            f" {rate(r, 't5tune', gemm)} | {rate(r, 'torch', gemm)} | {o['compile_s']:.1f} |")
    notes = [f"{r['cell']} {harness.ms(r['torch_unflushed']['median_s'])} ms"
             f" (raw {raw(r['torch_unflushed'])})" for r in main_rows if "torch_unflushed" in r]
    if notes:
      print("\nFootnote: PyTorch without `torch.set_flush_denormal(True)` (not its best"
            " practice; denormals from the std-1.0 lm_head init): " + "; ".join(notes) + ".")
  if scaling_rows:
    first = scaling_rows[0]
    print("\n### Scaling (cost relative to the first row, per side)\n")
    print("| model:batch:inputs:targets | tokens | t5tune ms | PyTorch ms (flushed) | ratio |"
          " t5tune cost x | PyTorch cost x | t5tune raw ms | PyTorch raw ms |"
          " t5tune GFLOP/s | t5tune % of ceiling | PyTorch GFLOP/s | PyTorch % of ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in scaling_rows:
      o, t = r["t5tune"], r["torch"]
      print(f"| {r['cell']} | {r['tokens']} | {harness.ms(o['median_s'])} |"
            f" {harness.ms(t['median_s'])} | {t['median_s'] / o['median_s']:.2f}x |"
            f" {o['median_s'] / first['t5tune']['median_s']:.2f} |"
            f" {t['median_s'] / first['torch']['median_s']:.2f} | {raw(o)} | {raw(t)} |"
            f" {rate(r, 't5tune', gemm)} | {rate(r, 'torch', gemm)} |")
  print_ceiling(gemm)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--main", default=",".join(MAIN), help="cells of the main table")
  parser.add_argument("--scaling", default="default",
                      help="'default', 'none', or comma-separated cells")
  parser.add_argument("--full", action="store_true", help="the big scaling cells too")
  # One side, in a child process (set by `measure`).
  parser.add_argument("--side", choices=("t5tune", "torch", "gemm_xla", "gemm_torch"))
  parser.add_argument("--gemm_n", type=int, default=2048, help="size of the ceiling's GEMM")
  parser.add_argument("--flush", type=int, default=1)
  parser.add_argument("--model")
  parser.add_argument("--batch", type=int)
  parser.add_argument("--inputs", type=int)
  parser.add_argument("--targets", type=int)
  parser.add_argument("--dropout", type=float, default=0.0)
  args = parser.parse_args()
  if args.side:
    return side_main(args)
  main_cells = [c for c in args.main.split(",") if c]
  if args.scaling == "none":
    scaling_cells = []
  elif args.scaling == "default":
    scaling_cells = list(SCALING_FULL if args.full else SCALING)
  else:
    scaling_cells = args.scaling.split(",")
  gemm = ceiling(args.gemm_n, args.repeats)
  measured = {}
  for cell in main_cells:
    measured[cell] = measure(cell, args.repeats, unflushed=True)
  for cell in scaling_cells:
    if cell not in measured:
      measured[cell] = measure(cell, args.repeats, unflushed=False)
  print_tables([measured[c] for c in main_cells], [measured[c] for c in scaling_cells], gemm)


if __name__ == "__main__":
  main()
