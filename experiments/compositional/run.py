"""The compositional driver: stage A, then P / P+NT / P+IT / P+TaskID at each task count, evaluated, reported.

    python -m experiments.compositional.run --config=configs/experiments/compositional.py \\
        --workdir=runs/compositional_demo

Stage A (span corruption on `corpus.py`'s text) is flan_mini's
(`experiments.flan_mini.run.stage_a`, cached under `pretrain.cache_dir`).
Then for each stage-B seed, task count N (`task_counts`; 0 = all 141) and
style (`styles`), a run trains from stage A on the pool of the first N
training tasks (`tasks.training_task`, with span corruption mixed in at
`pretrain.stage_b_rate`) and is scored on the same evaluation sets: the four
held-out clusters, held-in tasks and unseen wordings (greedy decoding and
exact match; yes / no answers by rank classification), all rendered with
instructions. Runs are written under WORKDIR/seedS/RUN/ (eval.json there:
not redone). `report.py` writes WORKDIR/results.{json,md,png}.
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

from t5tune import atomic

from experiments.compositional import collection
from experiments.flan_mini import run as flan_run

PRETRAINED = "pretrained"
SCRATCH = "instructions_scratch"
# Evaluation -> {part: set name of tasks.eval_sets}; every run is scored on them.
EVALS = {
    "held_out": {c: f"held_out/{c}" for c in collection.HELD_OUT},
    "held_in": {"generated": "held_in", "yes/no": "held_in_yesno"},
    "unseen": {"generated": "unseen", "yes/no": "unseen_yesno"},
    # Validation records of the training tasks: settings are chosen on these.
    "held_in_val": {"generated": "held_in_val", "yes/no": "held_in_val_yesno"},
}


def run_name(style: str, n: int) -> str:
  return f"{style}_n{n}"


def task_count(n: int) -> int:
  """The number of training tasks a config's task count means (0: all of them)."""
  total = len(collection.training_tasks())
  if not 0 <= n <= total:
    raise ValueError(f"config.compositional.task_counts: {n} is not in 0..{total}")
  return n or total


def plan(f) -> list[tuple[str, str | None, int]]:
  """(run name, style, task count) of every run; P first, then by task count."""
  out = [(PRETRAINED, None, 0)] if f.pretrained else []
  counts = sorted({task_count(n) for n in f.task_counts})
  for n in counts:
    # Below the largest count only `curve_styles` are trained (the demo's budget).
    styles = f.styles if n == counts[-1] else [s for s in f.styles if s in f.curve_styles]
    out += [(run_name(s, n), s, n) for s in styles]
  if f.scratch:
    n = max(task_count(n) for n in f.task_counts)
    out.append((run_name(SCRATCH, n), "instructions", n))
  return out


def resolve_vocabulary(config):
  """`vocabulary: "corpus"` becomes the path of the corpus's SentencePiece model (trained once)."""
  from experiments.compositional import corpus  # pylint: disable=g-import-not-at-top
  c = copy.deepcopy(config)
  if c.compositional.vocabulary == "corpus":
    with c.unlocked():
      c.compositional.vocabulary = os.path.abspath(corpus.vocabulary(seed=c.compositional.seed))
  return c


def evaluations(style: str | None) -> dict[str, dict[str, str]]:
  """EVALS, and for the TaskID run its own format."""
  evals = dict(EVALS)
  if style == "task_id":
    evals["held_in_id"] = {"generated": "held_in", "yes/no": "held_in_yesno"}
  return evals


def evaluate(model, f, style: str | None, only=None) -> dict:
  """{evaluation: {"tasks": {part: metrics}}} on every set of `evaluations` (or those in `only`)."""
  from experiments.compositional import tasks  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  out = {}
  for ev, parts in evaluations(style).items():
    if only is not None and ev not in only:
      continue
    out[ev] = {"tasks": {}}
    for part, set_name in parts.items():
      name = tasks.eval_task(set_name, f.seed, f.vocabulary,
                             "task_id" if ev == "held_in_id" else "instructions")
      out[ev]["tasks"][part] = evaluate_lib.task(
          model, name, max_inputs=f.eval_inputs_length, max_decode_len=f.eval_decode_length)
  return out


def train_and_evaluate(config, name: str, style: str | None, n: int, run_dir: str,
                       init_from: str | None) -> dict:
  """One run: train from `init_from` (None: from scratch) on the first n tasks in `style`, evaluate."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from t5tune.convert import loading  # pylint: disable=g-import-not-at-top
  from t5tune.train import trainer  # pylint: disable=g-import-not-at-top
  from experiments.compositional import tasks  # pylint: disable=g-import-not-at-top
  f = config.compositional
  eval_path = os.path.join(run_dir, "eval.json")
  if os.path.exists(eval_path):
    return _completed(name, style, run_dir, init_from, f)
  out = {"run": name, "style": style, "tasks": n, "seed": config.train.seed,
         "init_from": init_from or ""}
  start = time.time()
  if style is None:
    model = loading.load_model(init_from)
    out.update(steps=0, final_train_loss=None, loss_curve=[])
  else:
    t = copy.deepcopy(config.train)
    t.data.mixture = tasks.training_task(style, n, f.seed, f.vocabulary, f.train_records)
    if f.pretrain.stage_b_rate and init_from:
      t.data.mixture = flan_run.with_span_corruption(t.data.mixture, f, f.pretrain.stage_b_rate)
    t.init_from = init_from or ""
    print(f"[{name}] {t.train.steps} steps on {t.data.mixture}"
          + (f" from {init_from}" if init_from else " from scratch"), flush=True)
    tr = trainer.Trainer(t, run_dir)
    result = tr.run()
    model = nnx.merge(tr.graphdef, result.state["params"])
    out.update(steps=result.step, mixture=t.data.mixture,
               final_train_loss=result.train_metrics.get("loss"),
               compile_seconds=result.compile_seconds,
               loss_curve=[list(p) for p in zip(*flan_run.loss_curve(run_dir))])
  out["train_seconds"] = time.time() - start
  start = time.time()
  out["evals"] = evaluate(model, f, style)
  out["eval_seconds"] = time.time() - start
  os.makedirs(run_dir, exist_ok=True)
  atomic.write_text(eval_path, json.dumps(out, indent=1))
  print(f"[{name}] train {out['train_seconds']:.0f} s, eval {out['eval_seconds']:.0f} s", flush=True)
  return out


def _completed(name: str, style: str | None, run_dir: str, init_from: str | None, f) -> dict:
  """A run done before: its eval.json, with evaluations added since then scored on its final model."""
  from t5tune.convert import loading  # pylint: disable=g-import-not-at-top
  from t5tune.convert import model_dir  # pylint: disable=g-import-not-at-top
  eval_path = os.path.join(run_dir, "eval.json")
  with open(eval_path) as fh:
    out = json.load(fh)
  missing = [ev for ev in evaluations(style) if ev not in out["evals"]]
  if not missing:
    print(f"[{name}] already done: {eval_path}", flush=True)
    return out
  model_path, step = init_from, None
  if style is not None:  # the run's last finalised checkpoint
    model_path, step = model_dir.resolve_step(os.path.join(run_dir, "checkpoints"))
  if not model_path or step == 0:
    print(f"[{name}] done, but no checkpoint to score {missing} on: {eval_path}", flush=True)
    return out
  start = time.time()
  out["evals"].update(evaluate(loading.load_model(model_path), f, style, only=missing))
  atomic.write_text(eval_path, json.dumps(out, indent=1))
  print(f"[{name}] added {missing} from {model_path} in {time.time() - start:.0f} s", flush=True)
  return out


def run_all(config, workdir: str) -> dict[str, list[dict]]:
  """Stage A once, then every run of `plan` per seed: {run name: [eval per seed]}."""
  config = resolve_vocabulary(config)
  f = config.compositional
  pretrained = flan_run.stage_a(config, workdir, f)
  runs = {}
  for name, style, n in plan(f):
    if name == PRETRAINED and not pretrained:
      raise ValueError("P needs stage A: set config.compositional.pretrain.steps > 0")
    seeds = f.seeds[:1] if style is None else f.seeds
    for seed in seeds:
      c = copy.deepcopy(config)
      c.train.seed = seed
      init = None if name.startswith(SCRATCH) else pretrained
      runs.setdefault(name, []).append(train_and_evaluate(
          c, name, style, n, os.path.join(workdir, f"seed{seed}", name), init))
  return runs


def cpu_model() -> str:
  """The CPU's model name, as the benchmarks print it (benchmarks/harness.py)."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  return harness.cpu_model()


def main(argv):
  del argv
  from experiments.compositional import report  # pylint: disable=g-import-not-at-top
  config = resolve_vocabulary(_CONFIG.value)
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  print(f"CPU: {cpu_model()} ({os.cpu_count()} cores)", flush=True)
  runs = run_all(config, workdir)
  report.write(config, runs, workdir, wall_seconds=time.time() - start,
               command=" ".join(sys.argv), cpu=cpu_model())


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "configs/experiments/compositional.py", "The compositional experiment config.")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/compositional", "Where runs and results go.")
  logging.set_verbosity(logging.WARNING)
  app.run(main)
