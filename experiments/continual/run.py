"""Runs the continual-tuning comparison: every remedy of config.py in its own workdir, then one table.

    python -m experiments.continual.run --workdir=runs/continual [--variants=naive,replay0.2,ewc]

Each variant is `t5tune continual --config=experiments/continual/config.py:VARIANT`
(rerunning resumes). The table gives, per variant, the final score on each
stage's tasks, ACC, BWT, FWT and the wall time; the multitask run (all tasks
in one stage) is the upper bound. Reading the matrix of one run: its
continual.json / continual.png.
"""
import argparse
import json
import os
import time

from experiments.continual import config as config_lib
from t5tune.train import continual

VARIANTS = ("naive", "replay0.1", "replay0.3", "l2sp", "ewc", "lora", "multitask")


def final_scores(run: continual.Continual, workdir: str) -> list[float]:
  """The last stage's scores on each of config.STAGES' task groups."""
  results = json.load(open(os.path.join(workdir, "stages", run.order[-1], "eval.json")))
  out = []
  for _, tasks in config_lib.STAGES:
    out.append(sum(run.score(results, t) for t in tasks) / len(tasks))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  args = parser.parse_args()
  rows = []
  for variant in args.variants.split(","):
    workdir = os.path.join(args.workdir, variant)
    config = config_lib.get_config(variant)
    run = continual.Continual(config, workdir)
    t0 = time.perf_counter()
    summary = run.run()
    rows.append((variant, final_scores(run, workdir), summary, time.perf_counter() - t0))
    print(summary["table"], flush=True)
  names = [name for name, _ in config_lib.STAGES]

  def cell(x):
    return "—" if x is None else f"{x:.1f}"
  print("\n| variant | " + " | ".join(f"final on {n}" for n in names)
        + " | ACC | BWT | FWT | wall s |")
  print("|---" * (len(names) + 5) + "|")
  for variant, finals, summary, seconds in rows:
    print(f"| {variant} | " + " | ".join(cell(x) for x in finals)
          + f" | {cell(sum(finals) / len(finals))} | {cell(summary['bwt'])} |"
          f" {cell(summary['fwt'])} | {seconds:.0f} |")


if __name__ == "__main__":
  main()
