"""Runs the continual-tuning comparison: every remedy of config.py in its own workdir, then one table with intervals.

    python -m experiments.continual.run --workdir=runs/continual [--variants=naive,replay0.3,ewc] [--steps=150]

Each variant is `t5tune continual --config=experiments/continual/config.py:VARIANT`
(rerunning resumes; a finished run is only measured again). Variants whose
first stage is the same training as naive's (every one but lora, whose model
has adapters, and ewc, which needs the first stage's Fisher) start from a copy
of naive's finished first stage: it would be trained bitwise the same again.

Written to the workdir: summary.json (per variant: the matrix, ACC, BWT,
FWT, the mean score on each stage's tasks right after that stage
("new-task"), per-task forgetting, wall seconds, and each difference from
naive with its paired-bootstrap 95% interval over examples, from
t5tune.infer.compare), summary.md (the table) and heatmaps.png (every
variant's accuracy matrix). The multitask run (all tasks in one stage) is
the upper bound; it has only a final row, so only its ACC is compared.
"""
import argparse
import json
import os
import shutil
import time

import numpy as np

from experiments.continual import config as config_lib
from t5tune import atomic
from t5tune.infer import compare
from t5tune.train import continual

VARIANTS = ("naive", "replay0.1", "replay0.3", "l2sp", "ewc", "lora", "distill", "multitask")
BASE = "naive"


def _load(path):
  with open(path) as f:
    return json.load(f)


def sized(variant: str, steps: int):
  """The variant's config; `steps` (if > 0) per sequential stage (the multitask stage: all of them)."""
  config = config_lib.get_config(variant)
  if steps:
    for name in config.order:
      config.stages[name].steps = steps * (len(config_lib.STAGES) if variant == "multitask" else 1)
  return config


def _same_first_stage(a, b) -> bool:
  ra, rb = continual.Continual(a, "/nonexistent"), continual.Continual(b, "/nonexistent")
  return (not rb.need_fisher[0] and a.lora_per_stage == b.lora_per_stage
          and a.order[0] == b.order[0]
          and a.stages[a.order[0]].to_json() == b.stages[b.order[0]].to_json()
          and a.experiment.to_json() == b.experiment.to_json())


def share_first_stage(base_dir: str, workdir: str, name: str) -> None:
  """Copies the base run's finished first stage (and initial evaluation) into `workdir`."""
  src = os.path.join(base_dir, "stages", name)
  dst = os.path.join(workdir, "stages", name)
  if os.path.exists(dst) or not os.path.exists(os.path.join(src, "done.json")):
    return
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  for f in ("initial_eval.json", "initial_per_example.json"):
    with atomic.writing(os.path.join(workdir, f)) as tmp:
      shutil.copyfile(os.path.join(base_dir, f), tmp)
  with atomic.writing_dir(dst) as tmp:
    shutil.copytree(src, tmp, dirs_exist_ok=True)


def example_scores(run: continual.Continual, workdir: str) -> dict:
  """Per-example score vectors over every stage's tasks (concatenated in stage, task order).

  final: after the last stage; diag: after the stage that trained the
  example's own stage; before: after the stage before it; initial: the
  starting model. `stage` gives each example's stage index, `weight` makes
  a weighted mean over all examples equal the mean over stages of the mean
  over each stage's tasks (the matrix cells' definition).
  """
  stages = [_load(os.path.join(workdir, "stages", n, "per_example.json")) for n in run.order]
  initial = _load(os.path.join(workdir, "initial_per_example.json"))
  names = [n for n, _ in config_lib.STAGES]
  groups = [tasks for _, tasks in config_lib.STAGES]
  out = {k: [] for k in ("final", "diag", "before", "initial", "stage", "weight")}
  sequential = list(run.order) == names
  for j, tasks in enumerate(groups):
    for task in tasks:
      n = len(initial[task])
      out["final"] += stages[-1][task]
      out["initial"] += initial[task]
      out["diag"] += stages[j][task] if sequential else [np.nan] * n
      out["before"] += (stages[j - 1][task] if j else initial[task]) if sequential else [np.nan] * n
      out["stage"] += [j] * n
      out["weight"] += [1.0 / (len(groups) * len(tasks) * n)] * n
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def statistics(s: dict, t: int) -> dict:
  """Per-example contributions whose weighted means are ACC, BWT, FWT and new-task score."""
  stage, w = s["stage"], s["weight"] * t
  return {
      "acc": (s["final"], w),
      "bwt": (s["final"] - s["diag"], np.where(stage < t - 1, w, 0.0)),
      "fwt": (s["before"] - s["initial"], np.where(stage >= 1, w, 0.0)),
      "new_task": (s["diag"], w),
  }


def versus(base: dict, other: dict) -> dict:
  """Each statistic's difference other - base with its paired-bootstrap 95% interval."""
  out = {}
  for key, (b, w) in base.items():
    o, _ = other[key]
    if np.isnan(o[w > 0]).any() or np.isnan(b[w > 0]).any():
      continue
    # The weights already sum to 1 over each statistic's stages (a mean of means).
    out[key] = compare.paired_difference(o, b, w).to_dict()
  return out


def heatmaps(path: str, rows: dict) -> None:
  """Every variant's accuracy matrix (starting row on top) side by side."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  names = [n for n, _ in config_lib.STAGES]
  fig, axes = plt.subplots(1, len(rows), figsize=(2.4 * len(rows), 3.2), squeeze=False)
  for ax, (variant, (R, b, order)) in zip(axes[0], rows.items()):
    m = [list(b)] + [list(r) for r in R]
    ax.imshow(m, cmap="viridis", vmin=0, vmax=100)
    ax.set_title(variant, fontsize=9)
    cols = names if len(R[0]) == len(names) else list(order)  # multitask: one column, "all"
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=30)
    ax.set_yticks(range(len(m)), ["start"] + list(order), fontsize=7)
    for i, r in enumerate(m):
      for j, x in enumerate(r):
        ax.text(j, i, f"{x:.0f}", ha="center", va="center", fontsize=7,
                color="w" if x < 60 else "k")
  fig.suptitle("score after training stage (rows) on each stage's tasks (columns)", fontsize=9)
  fig.tight_layout()
  with atomic.writing(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=80)
  plt.close(fig)


def _cell(x):
  return "—" if x is None else f"{x:.1f}"


def _diff(d):
  if d is None:
    return "—"
  return f"{d['estimate']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def table(summary: dict) -> str:
  names = [n for n, _ in config_lib.STAGES]
  lines = ["| variant | ACC | Δ ACC vs naive [95%] | BWT | Δ BWT | FWT | Δ FWT | new-task |"
           " Δ new-task | forgetting (" + ", ".join(names[:-1]) + ") | wall s |",
           "|---" * 11 + "|"]
  for variant, v in summary.items():
    d = v.get("vs_naive", {})
    forgetting = ", ".join(_cell(x) for x in v["forgetting"][:-1]) if v["bwt"] is not None else "—"
    lines.append(f"| {variant} | {_cell(v['acc'])} | {_diff(d.get('acc'))} | {_cell(v['bwt'])} |"
                 f" {_diff(d.get('bwt'))} | {_cell(v['fwt'])} | {_diff(d.get('fwt'))} |"
                 f" {_cell(v['new_task'])} | {_diff(d.get('new_task'))} | {forgetting} |"
                 f" {v['seconds']:.0f} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per stage (0: config.py's); multitask trains stages x steps")
  args = parser.parse_args()
  variants = args.variants.split(",")
  if BASE in variants:  # first: the others compare with it and may share its first stage
    variants = [BASE] + [v for v in variants if v != BASE]
  base_config = sized(BASE, args.steps)
  summary, matrices, scores = {}, {}, {}
  for variant in variants:
    workdir = os.path.join(args.workdir, variant)
    config = sized(variant, args.steps)
    run = continual.Continual(config, workdir)
    if variant != BASE and _same_first_stage(base_config, config):
      share_first_stage(os.path.join(args.workdir, BASE), workdir, config.order[0])
    t0 = time.perf_counter()
    result = run.run()
    seconds = time.perf_counter() - t0
    timing = os.path.join(workdir, "wall_seconds.json")
    if not os.path.exists(timing):  # the first (training) run's time, not a re-measurement's
      atomic.write_json(timing, {"seconds": seconds})
    print(result["table"], flush=True)
    s = example_scores(run, workdir)
    t = len(config_lib.STAGES)
    stats = statistics(s, t)
    scores[variant] = stats
    mean = lambda key: (float(np.sum(stats[key][0] * stats[key][1]) / np.sum(stats[key][1]))
                        if not np.isnan(stats[key][0][stats[key][1] > 0]).any() else None)
    summary[variant] = {
        "acc": mean("acc"), "bwt": mean("bwt"), "fwt": mean("fwt"), "new_task": mean("new_task"),
        "forgetting": result["forgetting"] if len(run.order) == t else [None] * t,
        "R": result["R"], "initial": result["initial"],
        "seconds": _load(timing)["seconds"],
    }
    matrices[variant] = (result["R"], result["initial"], run.order)
    if variant != BASE and BASE in scores:
      summary[variant]["vs_naive"] = versus(scores[BASE], stats)
  atomic.write_json(os.path.join(args.workdir, "summary.json"), summary, indent=2)
  text = table(summary)
  atomic.write_text(os.path.join(args.workdir, "summary.md"), text + "\n")
  heatmaps(os.path.join(args.workdir, "heatmaps.png"), matrices)
  print("\n" + text)


if __name__ == "__main__":
  main()
