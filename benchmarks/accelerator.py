"""One table on a GPU or TPU host: train-step MFU and decode speed against transformers on the same device.

    bash benchmarks/accelerator.sh              # on the accelerator host (see that script)
    python benchmarks/accelerator.py --train=tiny:8:32:16 --decode=tiny --repeats=2   # a smoke run

Train rows: the trainer's own jitted step (`benchmarks/train_step.py`'s
t5tune side: AdamW, the step donated, random tokens, every target weighted)
on one device, bf16 activations, for MODEL:BATCH:INPUTS:TARGETS cells;
MFU = the model's matmul FLOPs per step (`t5tune.models.info.train_flops`)
over the median step time and the device's dense bf16 peak (--peak_tflops,
default from `t5tune.targets` by device kind). Decode rows:
`benchmarks/decode.py` with both sides on the accelerator (transformers'
PyTorch T5 on CUDA where torch sees a GPU), bf16, every row decoding exactly
the token budget. Each side runs in its own process; raw times are printed.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (benchmarks/harness.py, beside this script)

TRAIN = ("t5_1_1_base:32:512:128", "t5_1_1_large:16:512:128")
DECODE = ("t5_1_1_base",)


def peak_for(kind: str) -> float | None:
  from t5tune import targets
  for chip in targets.CHIPS.values():
    if chip.device_kind and chip.device_kind.lower() in kind.lower():
      return chip.peak_tflops
  return None


def train_side(args):
  """One cell of the train step on the first device, bf16 activations."""
  import jax
  import train_step  # benchmarks/train_step.py: the same step as its CPU table
  cell = train_step.parse_cell(args.cell)
  step_args = argparse.Namespace(**cell)
  real = train_step.model_config

  def bf16_config(name, dropout=0.0):
    return real(name, dropout).replace(dtype="bfloat16")
  train_step.model_config = bf16_config
  try:
    with train_step.t5tune_step(step_args) as (run, _, cfg, compile_s):
      for _ in range(2):
        run()
      median, times = harness.median_seconds(run, args.repeats)
  finally:
    train_step.model_config = real
  from t5tune.models import info
  flops = float(info.train_flops(cfg, cell["inputs"], cell["targets"])) * cell["batch"]
  kind = jax.devices()[0].device_kind
  peak = args.peak_tflops or peak_for(kind)
  return {"cell": args.cell, "device": kind, "backend": jax.default_backend(),
          "median_s": median, "times_s": times, "compile_s": compile_s,
          "tflops": flops / median / 1e12, "mfu": flops / median / (peak * 1e12) if peak else None,
          "peak_tflops": peak, "jax": jax.__version__}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train", default=",".join(TRAIN))
  parser.add_argument("--decode", default=",".join(DECODE), help="presets ('' for none)")
  parser.add_argument("--decode_batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--peak_tflops", type=float, default=None)
  parser.add_argument("--side", choices=("train",))
  parser.add_argument("--cell")
  args = parser.parse_args()
  if args.side == "train":
    harness.report(train_side(args))
    return
  print("\n".join(harness.machine_lines({})), flush=True)
  rows = []
  for cell in filter(None, args.train.split(",")):
    r = harness.run_side(__file__, ["--side=train", f"--cell={cell}", f"--repeats={args.repeats}"]
                         + ([f"--peak_tflops={args.peak_tflops}"] if args.peak_tflops else []))
    rows.append(r)
    print(f"train {cell} on {r['device']} ({r['backend']}, jax {r['jax']}): median"
          f" {r['median_s'] * 1e3:.1f} ms, {r['tflops']:.1f} TFLOP/s"
          + (f", MFU {r['mfu']:.1%} of {r['peak_tflops']:g}" if r["mfu"] is not None else "")
          + f"; raw {[round(t * 1e3, 1) for t in r['times_s']]} ms; compile {r['compile_s']:.1f} s",
          flush=True)
  for preset in filter(None, args.decode.split(",")):
    cmd = [sys.executable, os.path.join(HERE, "decode.py"), f"--preset={preset}",
           f"--batch={args.decode_batch}", "--dtype=bfloat16", f"--repeats={args.repeats}"]
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
  print("RESULTS " + json.dumps(rows))


if __name__ == "__main__":
  main()
