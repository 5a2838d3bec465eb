"""The flan_mini driver: train each configured run, evaluate held-out and held-in, report.

    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py \\
        --workdir=runs/flan_mini_demo

For every run in `config.flan_mini.runs` it trains a model (t5tune's trainer;
TensorBoard logs, metrics.jsonl and checkpoints under WORKDIR/RUN/), then
scores it zero-shot and few-shot on the held-out clusters' tasks, zero-shot
on the held-in tasks and on held-in tasks under unseen instruction wordings.
A run whose WORKDIR/RUN/eval.json exists is not redone. It prints the table,
writes WORKDIR/results.json, WORKDIR/results.md and WORKDIR/results.png,
and says for each ablation whether it moved the way the FLAN papers report.

Where the data comes from is a `Backend`: here the registered seqio
mixtures and tasks (`SeqioBackend`); `portable.py` trains and evaluates the
same runs from exported numpy files on machines without TensorFlow or seqio,
through the same functions below.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags


EVALS = ("held_out_zs", "held_out_fs", "held_in_zs", "held_in_unseen")
EVAL_TITLES = {"held_out_zs": "held-out 0-shot", "held_out_fs": "held-out few-shot",
               "held_in_zs": "held-in 0-shot", "held_in_unseen": "held-in unseen wording"}
_STYLE = {"instructions": "zero_shot", "no_template": "no_template", "mixed": "mixed"}


def run_clusters(name: str, training: list[str]) -> list[str]:
  """The clusters a run trains on: all training clusters, or the first N of them."""
  if name.startswith("clusters_"):
    n = int(name.split("_")[1])
    if not 1 <= n <= len(training):
      raise ValueError(f"run {name!r}: there are {len(training)} training clusters")
    return training[:n]
  return list(training)


def run_style(name: str) -> str:
  if name.startswith("clusters_"):
    return "zero_shot"
  if name not in _STYLE:
    raise ValueError(f"config.flan_mini.runs: unknown run {name!r}; known: instructions,"
                     " no_template, mixed, clusters_N")
  return _STYLE[name]


def training_clusters(f) -> list[str]:
  from experiments.flan_mini import collection  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(f.held_out) - set(collection.CLUSTERS))
  if unknown:
    raise ValueError(f"config.flan_mini.held_out: {unknown} are not clusters of"
                     f" {collection.CLUSTERS}")
  order = list(f.cluster_order) + [c for c in collection.CLUSTERS if c not in f.cluster_order]
  return [c for c in order if c not in f.held_out]


class SeqioBackend:
  """Training mixtures and evaluation sets from the registered seqio tasks (`tasks.py`)."""

  def __init__(self, f):
    from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
    self.f = f
    tasks.register(f.seed, vocabulary=f.vocabulary)

  def train_config(self, config, name: str, clusters: list[str]):
    """The run's t5tune training config: the driver's, on the run's mixture."""
    from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
    t = copy.deepcopy(config.train)
    t.data.mixture = tasks.training_mixture(clusters, run_style(name), self.f.seed,
                                            self.f.vocabulary)
    return t

  def score(self, model, task: str, variant: str) -> dict:
    """Metrics of `model` on one evaluation set (`evaluate.task`)."""
    from experiments.flan_mini import evaluate  # pylint: disable=g-import-not-at-top
    from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
    f = self.f
    return evaluate.task(model, tasks.task_name(task, variant, f.seed, f.vocabulary),
                         max_examples=f.eval_examples, max_inputs=f.eval_inputs_length,
                         max_decode_len=f.eval_decode_length)


def eval_plan(f, held_out: list[str], held_in: list[str]) -> list[tuple[str, list[str], str]]:
  """(evaluation, clusters, task variant) of every evaluation the config asks for."""
  from experiments.flan_mini import collection  # pylint: disable=g-import-not-at-top
  few_shot_k = collection.FEW_SHOT_K
  plan = [("held_out_zs", held_out, "_eval"), ("held_out_fs", held_out, f"_eval_fs{few_shot_k}"),
          ("held_in_zs", held_in, "_eval"), ("held_in_unseen", held_in, "_unseen")]
  if not f.eval_few_shot:
    plan = [p for p in plan if p[0] != "held_out_fs"]
  if not f.eval_held_in:
    plan = [p for p in plan if not p[0].startswith("held_in")]
  return plan


def evaluate_model(model, f, held_out: list[str], held_in: list[str], backend=None) -> dict:
  """{eval: {"tasks": {task: metrics}, "clusters": {cluster: score}, "score": mean}}."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import collection  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  backend = backend or SeqioBackend(f)
  plan = eval_plan(f, held_out, held_in)
  jobs = [(ev, t, variant) for ev, clusters, variant in plan
          for t in collection.cluster_tasks(clusters)]
  out = {ev: {"tasks": {}, "clusters": {}} for ev, _, _ in plan}
  for ev, t, variant in tqdm(jobs, desc="evaluate", unit="task", dynamic_ncols=True):
    metrics = backend.score(model, t, variant)
    metrics["score"] = metrics[metrics_lib.PRIMARY_METRIC[collection.TASKS[t].cluster]]
    out[ev]["tasks"][t] = metrics
  for ev, clusters, _ in plan:
    for c in clusters:
      scores = [out[ev]["tasks"][t]["score"] for t in collection.cluster_tasks([c])]
      out[ev]["clusters"][c] = sum(scores) / len(scores)
    values = list(out[ev]["clusters"].values())
    out[ev]["score"] = sum(values) / len(values)
  return out


def train_and_evaluate(config, name: str, workdir: str, training: list[str],
                       backend=None) -> dict:
  """One run: train (or resume), evaluate, and write RUN/eval.json."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from t5tune.train import trainer  # pylint: disable=g-import-not-at-top
  f = config.flan_mini
  run_dir = os.path.join(workdir, name)
  eval_path = os.path.join(run_dir, "eval.json")
  if os.path.exists(eval_path):
    with open(eval_path) as fh:
      print(f"[{name}] already done: {eval_path}")
      return json.load(fh)
  backend = backend or SeqioBackend(f)
  clusters = run_clusters(name, training)
  t = backend.train_config(config, name, clusters)
  print(f"[{name}] training on {t.data.mixture} ({', '.join(clusters)}) for"
        f" {t.train.steps} steps; logs in {run_dir}", flush=True)
  start = time.time()
  tr = trainer.Trainer(t, run_dir)
  result = tr.run()
  train_s = time.time() - start
  model = nnx.merge(tr.graphdef, result.state["params"])
  start = time.time()
  scores = evaluate_model(model, f, list(f.held_out), training, backend)
  eval_s = time.time() - start
  out = {"run": name, "clusters": clusters, "style": run_style(name),
         "mixture": t.data.mixture, "steps": result.step, "seed": t.seed,
         "collection_seed": f.seed, "train_seconds": train_s, "eval_seconds": eval_s,
         "compile_seconds": result.compile_seconds,
         "final_train_loss": result.train_metrics.get("loss"),
         "step_seconds": result.train_metrics.get("step_seconds"),
         "loss_curve": [list(p) for p in zip(*_loss_curve(run_dir))],
         "checkpoint_dir": result.checkpoint_dir, "devices": str(jax.devices()),
         "device_kind": jax.devices()[0].device_kind,
         "evals": scores}
  with open(eval_path, "w") as fh:
    json.dump(out, fh, indent=1)
  return out


# -- report ---------------------------------------------------------------------

def verdicts(results: dict) -> list[str]:
  """Plain sentences: did each ablation move the way the FLAN papers report?"""
  lines = []
  def score(run, ev="held_out_zs"):
    r = results.get(run)
    return None if r is None or ev not in r["evals"] else r["evals"][ev]["score"]

  ins, base = score("instructions"), score("no_template")
  if ins is not None and base is not None:
    moved = ins > base
    lines.append(
        f"Instructions vs no template (held-out 0-shot): {ins:.1f} vs {base:.1f} -> "
        + ("instructions helped held-out clusters, as FLAN reports." if moved else
           "instructions did NOT help held-out clusters here (FLAN reports they do)."))
  counts = [(int(r.split("_")[1]), score(r)) for r in results if r.startswith("clusters_")]
  if counts and ins is not None:
    counts.append((len(results["instructions"]["clusters"]), ins))
    counts.sort()
    seq = [s for _, s in counts]
    monotone = all(b >= a for a, b in zip(seq, seq[1:]))
    more = seq[-1] > seq[0]
    desc = ", ".join(f"{n}: {s:.1f}" for n, s in counts)
    lines.append(
        f"Number of training clusters (held-out 0-shot; {desc}) -> "
        + ("more clusters helped" if more else "more clusters did NOT help")
        + (" at every step" if monotone and more else "" if more else "")
        + (", though not at every step" if more and not monotone else "")
        + (", as FLAN reports." if more else " (FLAN reports they do)."))
  mixed = score("mixed")
  if mixed is not None and ins is not None:
    hurt = mixed < ins - 1.0
    lines.append(
        f"Mixed 0-shot + few-shot templates vs 0-shot only (held-out 0-shot): {mixed:.1f}"
        f" vs {ins:.1f} -> " + (
            "mixing few-shot templates HURT zero-shot here (FLAN 2022 reports it does not)."
            if hurt else "mixing few-shot templates did not hurt zero-shot, as FLAN 2022"
            " reports (within 1 point or better)."))
    mfs, ifs = score("mixed", "held_out_fs"), score("instructions", "held_out_fs")
    if mfs is not None and ifs is not None:
      lines.append(f"  (held-out few-shot: mixed {mfs:.1f} vs 0-shot only {ifs:.1f})")
  return lines


def table(results: dict, held_out: list[str]) -> str:
  evs = [e for e in EVALS if any(e in r["evals"] for r in results.values())]
  head = ["run", "clusters"] + [EVAL_TITLES[e] for e in evs] + [f"0-shot {c}" for c in held_out]
  rows = []
  for name, r in results.items():
    row = [name, str(len(r["clusters"]))]
    row += [f"{r['evals'][e]['score']:.1f}" if e in r["evals"] else "-" for e in evs]
    row += [f"{r['evals']['held_out_zs']['clusters'][c]:.1f}" for c in held_out]
    rows.append(row)
  widths = [max(len(x) for x in col) for col in zip(head, *rows)]
  fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
  return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [fmt(r) for r in rows])


def _loss_curve(run_dir: str):
  path = os.path.join(run_dir, "metrics.jsonl")
  steps, losses = [], []
  if os.path.exists(path):
    with open(path) as fh:
      for line in fh:
        m = json.loads(line)
        if "train/loss" in m:
          steps.append(m["step"])
          losses.append(m["train/loss"])
  return steps, losses


def plot(results: dict, workdir: str, path: str) -> str:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  fig, (ax_bar, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.5))
  names = list(results)
  evs = [e for e in EVALS if any(e in r["evals"] for r in results.values())]
  width = 0.8 / max(1, len(evs))
  x = np.arange(len(names))
  for i, ev in enumerate(evs):
    vals = [results[n]["evals"][ev]["score"] if ev in results[n]["evals"] else 0 for n in names]
    ax_bar.bar(x + i * width, vals, width, label=EVAL_TITLES[ev])
  ax_bar.set_xticks(x + width * (len(evs) - 1) / 2, names, rotation=20)
  ax_bar.set_ylabel("score (accuracy / exact match / ROUGE-L)")
  ax_bar.set_title("flan_mini: held-out clusters and held-in tasks")
  ax_bar.legend(fontsize=8)
  for n in names:
    curve = results[n].get("loss_curve")
    steps, losses = (list(zip(*curve)) if curve else _loss_curve(os.path.join(workdir, n)))
    if steps:
      ax_loss.plot(steps, losses, label=n)
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("train loss")
  ax_loss.set_yscale("log")
  ax_loss.set_title("training loss")
  ax_loss.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def report(config, results: dict, training: list[str], workdir: str, **extra) -> dict:
  """Writes WORKDIR/results.json, results.md (table and verdicts) and results.png; prints them."""
  import jax  # pylint: disable=g-import-not-at-top
  f = config.flan_mini
  summary = {
      "setting": config.setting, "held_out": list(f.held_out), "training_clusters": training,
      "runs": results, "verdicts": verdicts(results), "command": " ".join(sys.argv),
      "devices": str(jax.devices()), **extra, "config": config.to_dict()}
  with open(os.path.join(workdir, "results.json"), "w") as fh:
    json.dump(summary, fh, indent=1, default=str)
  try:
    png = plot(results, workdir, os.path.join(workdir, "results.png"))
  except ImportError as e:  # a machine without matplotlib still gets the numbers
    png = f"not drawn ({e})"
  text = "\n".join(
      [f"flan_mini ({config.setting}): held-out clusters {', '.join(f.held_out)};"
       " scores are rank-classification accuracy, exact match or ROUGE-L (x100)",
       table(results, list(f.held_out)), ""] + summary["verdicts"] + [""]
      + [f"- `{n}`: train {r['train_seconds']:.0f} s, eval {r['eval_seconds']:.0f} s,"
         f" final train loss {r['final_train_loss']:.3f}" for n, r in results.items()
         if r.get("final_train_loss") is not None])
  with open(os.path.join(workdir, "results.md"), "w") as fh:
    fh.write(text + "\n")
  print()
  print(text)
  print()
  print(f"results: {os.path.join(workdir, 'results.json')}")
  print(f"plot: {png}")
  print(f"TensorBoard: tensorboard --logdir {workdir}")
  return summary


def check_runs(f, training: list[str]) -> None:
  """Fails on a bad run name before any training."""
  for name in f.runs:
    run_clusters(name, training), run_style(name)


def main(argv):
  del argv
  config = _CONFIG.value
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  f = config.flan_mini
  backend = SeqioBackend(f)
  training = training_clusters(f)
  check_runs(f, training)
  start = time.time()
  results = {}
  for name in f.runs:
    results[name] = train_and_evaluate(config, name, workdir, training, backend)
  report(config, results, training, workdir, wall_seconds=time.time() - start)


if __name__ == "__main__":
  # Flags only when run as a program: the modules import each other.
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "configs/experiments/flan_mini.py", "The flan_mini experiment config.")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/flan_mini", "Where runs and results go.")
  logging.set_verbosity(logging.WARNING)
  app.run(main)
