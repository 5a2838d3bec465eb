"""The flan_mini driver: stage A (span-corruption pretraining), then per held-out cluster P / P+NT / P+IT runs, report.

    python -m experiments.flan_mini.run --config=configs/experiments/flan_mini.py \\
        --workdir=runs/flan_mini_demo

Stage A pretrains a T5 on the world corpus with span corruption (t5tune's
trainer; the model is cached under `flan_mini.pretrain.cache_dir` and reused).
Then, for each cluster of `flan_mini.held_out`, held out one at a time (its
FLAN-excluded neighbour dropped from training too), and each seed of
`flan_mini.seeds`, every run of `flan_mini.runs` is trained from stage A's
model (stage B: instruction tuning with dropout and weight decay, the
checkpoint chosen on held-in validation loss) and scored zero-shot and
few-shot on the held-out cluster (and, if asked, on held-in tasks):

  pretrained            P: stage A's model, not tuned
  no_template           P+NT: the training clusters without instructions
  instructions          P+IT: the training clusters with instructions (FLAN)
  mixed, clusters_N     FLAN's ablations (few-shot templates mixed; fewer clusters)
  instructions_scratch  the control, no stage A (`control_runs`: first cluster only)

Runs are written under WORKDIR/CLUSTER/seedS/RUN/ (eval.json there: not redone).
The report (WORKDIR/results.json, results.md, results.png) gives scores
averaged over templates with 95% intervals and the chance level, paired
differences by example with verdicts (helped / hurt / inconclusive), and
confusion matrices (`report.py`, `stats.py`).

Where the data comes from is a `Backend`: here the registered seqio
mixtures and tasks (`SeqioBackend`); `portable.py` trains and evaluates
runs from scratch from exported numpy files on machines without TensorFlow
or seqio, through the same functions below.
"""
from __future__ import annotations

import collections
import copy
import json
import os
import sys
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from t5tune import atomic


_STYLE = {"instructions": "zero_shot", "no_template": "no_template", "mixed": "mixed",
          "instructions_scratch": "zero_shot"}
CORPUS_VOCABULARY = "corpus"  # flan_mini.vocabulary: the SentencePiece model of the world corpus
PRETRAINED = "pretrained"  # stage A only: evaluated, not instruction-tuned
SCRATCH = "instructions_scratch"  # instructions without stage A: the control
# FLAN excludes a held-out cluster's close neighbour from training too (it
# drops paraphrase when evaluating NLI, and NLI when evaluating paraphrase).
EXCLUDED_NEIGHBOURS = {"nli": ("paraphrase",), "paraphrase": ("nli",)}


def run_clusters(name: str, training: list[str]) -> list[str]:
  """The clusters a run trains on: all training clusters, or the first N of them."""
  if name.startswith("clusters_"):
    n = int(name.split("_")[1])
    if not 1 <= n <= len(training):
      raise ValueError(f"run {name!r}: there are {len(training)} training clusters")
    return training[:n]
  if name == PRETRAINED:
    return []
  return list(training)


def run_style(name: str) -> str | None:
  """The templates a run trains on (None: the pretrained model, not trained further)."""
  if name.startswith("clusters_"):
    return "zero_shot"
  if name == PRETRAINED:
    return None
  if name not in _STYLE:
    raise ValueError(f"config.flan_mini.runs: unknown run {name!r}; known: {PRETRAINED},"
                     f" {', '.join(_STYLE)}, clusters_N")
  return _STYLE[name]


def training_clusters(f) -> list[str]:
  """Every cluster but the held-out ones and their FLAN-excluded neighbours, in cluster_order."""
  from experiments.flan_mini import collection  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(f.held_out) - set(collection.CLUSTERS))
  if unknown:
    raise ValueError(f"config.flan_mini.held_out: {unknown} are not clusters of"
                     f" {collection.CLUSTERS}")
  excluded = set(f.held_out) | {n for c in f.held_out for n in EXCLUDED_NEIGHBOURS.get(c, ())}
  order = list(f.cluster_order) + [c for c in collection.CLUSTERS if c not in f.cluster_order]
  return [c for c in order if c not in excluded]


def _import(spec: str):
  import importlib  # pylint: disable=g-import-not-at-top
  module, sep, name = spec.partition(":")
  if not sep:
    raise ValueError(f"{spec!r}: expected 'package.module:function'")
  return getattr(importlib.import_module(module), name)


def stage_a_dir(config, f=None) -> str:
  """Where stage A's model goes: runs/ cache keyed by everything that shapes it.

  `f`: the experiment's own config block (default `config.flan_mini`; the
  compositional experiment passes `config.compositional`).
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  f, t = (f or config.flan_mini), config.train
  # Where the cache lives is not part of what shapes the model.
  pretrain = {k: v for k, v in f.pretrain.to_dict().items() if k != "cache_dir"}
  key = json.dumps([pretrain, t.model.to_dict(), f.vocabulary, f.seed, t.seed,
                    t.data.batch_size], sort_keys=True, default=str)
  digest = hashlib.sha256(key.encode()).hexdigest()[:10]
  return os.path.abspath(os.path.join(f.pretrain.cache_dir, f"{config.setting}-{digest}"))


def stage_a(config, workdir: str, f=None) -> str | None:
  """Span-corruption pretraining on the world corpus (t5tune's trainer); returns the model dir.

  The model is written under `flan_mini.pretrain.cache_dir` and reused by
  later commands with the same settings (it is this project's own output,
  never downloaded).
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from t5tune.convert import loading  # pylint: disable=g-import-not-at-top
  from t5tune.convert import model_dir  # pylint: disable=g-import-not-at-top
  from t5tune.train import trainer  # pylint: disable=g-import-not-at-top
  f = f or config.flan_mini
  p = f.pretrain
  if not p.steps:
    return None
  path = stage_a_dir(config, f)
  if model_dir.is_t5tune_dir(path):
    print(f"[stage A] reusing {path}", flush=True)
    return path
  try:
    task_fn = _import(p.task_fn)
  except (ImportError, AttributeError) as e:
    from t5tune import errors  # pylint: disable=g-import-not-at-top
    raise errors.UsageError(f"stage A's corpus task {p.task_fn!r} cannot be imported ({e})",
                            where="config.<experiment>.pretrain.task_fn",
                            fix="point it at a function(seed=, vocabulary=) returning a seqio"
                            " task name, or set pretrain.steps=0 to skip stage A") from None
  task = task_fn(seed=f.seed, vocabulary=f.vocabulary)
  t = copy.deepcopy(config.train)
  t.data.mixture = task
  t.data.inputs_length, t.data.targets_length = p.inputs_length, p.targets_length
  t.train.steps, t.schedule.warmup_steps = p.steps, min(p.steps // 10, 100)
  t.optimizer.learning_rate, t.optimizer.weight_decay = p.learning_rate, 0.0
  t.model.overrides.dropout_rate = 0.0
  t.eval.every = 0
  t.init_from = ""
  run_dir = os.path.join(workdir, "stage_a")
  print(f"[stage A] span corruption on {task} for {p.steps} steps; logs in {run_dir}", flush=True)
  start = time.time()
  tr = trainer.Trainer(t, run_dir)
  result = tr.run()
  loading.save_model(nnx.merge(tr.graphdef, result.state["params"]), path)
  atomic.write_json(os.path.join(run_dir, "stage_a.json"),
                    {"task": task, "steps": result.step, "seconds": time.time() - start,
                     "final_train_loss": result.train_metrics.get("loss"), "model": path})
  print(f"[stage A] done in {time.time() - start:.0f} s: {path}", flush=True)
  return path


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
    rate = self.f.pretrain.stage_b_rate
    if rate and self.f.pretrain.steps and name != SCRATCH:
      t.data.mixture = self._with_span_corruption(t.data.mixture, rate)
    return t

  def _with_span_corruption(self, mixture: str, rate: float) -> str:
    return with_span_corruption(mixture, self.f, rate)

  def score(self, model, task: str, variant: str) -> dict:
    """Metrics of `model` on one evaluation set (`evaluate.task`)."""
    from experiments.flan_mini import evaluate  # pylint: disable=g-import-not-at-top
    from experiments.flan_mini import tasks  # pylint: disable=g-import-not-at-top
    f = self.f
    return evaluate.task(model, tasks.task_name(task, variant, f.seed, f.vocabulary),
                         max_examples=f.eval_examples, max_inputs=f.eval_inputs_length,
                         max_decode_len=f.eval_decode_length)


def with_span_corruption(mixture: str, f, rate: float) -> str:
  """`mixture` with stage A's span corruption (`f.pretrain.task_fn`) mixed in at `rate` (ExT5-style)."""
  import seqio  # pylint: disable=g-import-not-at-top
  task = _import(f.pretrain.task_fn)(seed=f.seed, vocabulary=f.vocabulary)
  name = f"{mixture}_span{int(round(rate * 1000)):03d}"
  if name not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(name, [(mixture, 1.0 - rate), (task, rate)])
  return name


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


def template_average(metrics: dict) -> float:
  """The mean over templates of each template's mean score (FLAN averages templates)."""
  by_template = collections.defaultdict(list)
  for t, v in zip(metrics.get("templates") or ["-"] * len(metrics["per_example"]),
                  metrics["per_example"]):
    by_template[t].append(v)
  return sum(sum(v) / len(v) for v in by_template.values()) / len(by_template)


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
    metrics["score_all_examples"] = metrics[metrics_lib.PRIMARY_METRIC[collection.TASKS[t].cluster]]
    metrics["score"] = template_average(metrics)
    out[ev]["tasks"][t] = metrics
  for ev, clusters, _ in plan:
    for c in clusters:
      scores = [out[ev]["tasks"][t]["score"] for t in collection.cluster_tasks([c])]
      out[ev]["clusters"][c] = sum(scores) / len(scores)
    values = list(out[ev]["clusters"].values())
    out[ev]["score"] = sum(values) / len(values)
  return out


def best_checkpoint(run_dir: str, metric: str, mode: str) -> str | None:
  """The kept checkpoint with the best held-in validation `metric` (metrics.jsonl), if any."""
  path = os.path.join(run_dir, "metrics.jsonl")
  evals = []
  if os.path.exists(path):
    with open(path) as fh:
      for line in fh:
        m = json.loads(line)
        if metric in m:
          evals.append((m[metric], m["step"]))
  for value, step in sorted(evals, reverse=(mode == "max")):
    step_dir = os.path.join(run_dir, "checkpoints", str(step))
    if os.path.isdir(os.path.join(step_dir, "params")):
      return step_dir
  return None


def train_and_evaluate(config, name: str, workdir: str, training: list[str],
                       backend=None, init_from: str | None = None) -> dict:
  """One run: train (or resume) from `init_from` (stage A), evaluate, write RUN/eval.json.

  `pretrained` is stage A's model evaluated as it is; `instructions_scratch`
  ignores `init_from`. With `config.train.eval.every`, the model evaluated
  is the checkpoint with the best held-in validation loss (the held-out
  clusters are never used to choose).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from t5tune.convert import loading  # pylint: disable=g-import-not-at-top
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
  out = {"run": name, "clusters": clusters, "style": run_style(name), "seed": config.train.seed,
         "collection_seed": f.seed, "init_from": "" if name == SCRATCH else (init_from or "")}
  start = time.time()
  if name == PRETRAINED:
    if not init_from:
      raise ValueError("run 'pretrained' needs stage A: set config.flan_mini.pretrain.steps > 0")
    model, chosen = loading.load_model(init_from), init_from
    out.update(steps=0, final_train_loss=None, mixture=None, loss_curve=[])
  else:
    t = backend.train_config(config, name, clusters)
    if out["init_from"]:
      t.init_from = out["init_from"]
    print(f"[{name}] training on {t.data.mixture} ({', '.join(clusters)}) for"
          f" {t.train.steps} steps" + (f" from {t.init_from}" if t.init_from else "")
          + f"; logs in {run_dir}", flush=True)
    tr = trainer.Trainer(t, run_dir)
    result = tr.run()  # waits for the last save and closes the checkpointer
    chosen = (best_checkpoint(run_dir, t.eval.metric, t.eval.mode) if t.eval.every else None)
    model = (loading.load_model(chosen) if chosen
             else nnx.merge(tr.graphdef, result.state["params"]))
    out.update(mixture=t.data.mixture, steps=result.step,
               compile_seconds=result.compile_seconds,
               final_train_loss=result.train_metrics.get("loss"),
               step_seconds=result.train_metrics.get("step_seconds"),
               loss_curve=[list(p) for p in zip(*loss_curve(run_dir))],
               checkpoint_dir=result.checkpoint_dir)
    chosen = chosen or f"final step {result.step}"
  out["train_seconds"] = time.time() - start
  start = time.time()
  out["evals"] = evaluate_model(model, f, list(f.held_out), training, backend)
  out.update(eval_seconds=time.time() - start, evaluated_model=chosen,
             devices=str(jax.devices()), device_kind=jax.devices()[0].device_kind)
  os.makedirs(run_dir, exist_ok=True)
  atomic.write_text(eval_path, json.dumps(out, indent=1))
  return out


# -- report ---------------------------------------------------------------------

def loss_curve(run_dir: str):
  """(steps, train losses) of a run's metrics.jsonl."""
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


def group(held_out: list[str], runs: dict[str, Any]) -> dict:
  """A report group: one held-out setting, its runs ({name: eval or [eval per seed]})."""
  from experiments.flan_mini import collection  # pylint: disable=g-import-not-at-top
  return {"held_out": list(held_out),
          "tasks": {c: collection.cluster_tasks([c]) for c in held_out},
          "runs": {n: (r if isinstance(r, list) else [r]) for n, r in runs.items()}}


def report(config, groups: dict[str, dict], workdir: str, **extra) -> dict:
  """Writes WORKDIR/results.json, results.md (tables, verdicts) and results.png; prints them."""
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.flan_mini import report as report_lib  # pylint: disable=g-import-not-at-top
  summary = report_lib.summarize(groups)
  verdicts = report_lib.flan_effect(summary)
  out = {"setting": config.setting, "groups": groups, "statistics": summary,
         "verdicts": verdicts, "command": " ".join(sys.argv), "devices": str(jax.devices()),
         **extra, "config": config.to_dict()}
  atomic.write_text(os.path.join(workdir, "results.json"), json.dumps(out, indent=1, default=str))
  curves = {f"{label}/{n}" + (f"/s{r.get('seed')}" if len(seeds) > 1 else ""):
            tuple(zip(*r["loss_curve"])) if r.get("loss_curve") else ((), ())
            for label, g in groups.items() for n, seeds in g["runs"].items() for r in seeds}
  try:
    png = report_lib.plot(summary, curves, os.path.join(workdir, "results.png"))
  except ImportError as e:  # a machine without matplotlib still gets the numbers
    png = f"not drawn ({e})"
  timing = [f"- `{label}/{n}` seed {r.get('seed')}: train {r['train_seconds']:.0f} s,"
            f" eval {r['eval_seconds']:.0f} s, final train loss {r['final_train_loss']:.3f}"
            for label, g in groups.items() for n, seeds in g["runs"].items() for r in seeds
            if r.get("final_train_loss") is not None]
  text = "\n".join(
      [f"flan_mini ({config.setting}): scores are rank-classification accuracy, exact match or"
       " ROUGE-L (x100), averaged over templates; [95% interval]; differences paired by example",
       report_lib.tables(summary), ""] + verdicts + [""] + timing)
  atomic.write_text(os.path.join(workdir, "results.md"), text + "\n")
  print()
  print(text)
  print()
  print(f"results: {os.path.join(workdir, 'results.json')}")
  print(f"plot: {png}")
  print(f"TensorBoard: tensorboard --logdir {workdir}")
  return out


def check_runs(f, training: list[str]) -> None:
  """Fails on a bad run name before any training."""
  for name in list(f.runs) + list(f.control_runs):
    run_clusters(name, training), run_style(name)
  if PRETRAINED in f.runs and not f.pretrain.steps:
    raise ValueError("config.flan_mini.runs has 'pretrained' but pretrain.steps is 0")


def held_out_config(config, cluster: str, seed: int):
  """The config of one held-out setting: `cluster` held out, stage B trained with `seed`."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.flan_mini.held_out = (cluster,)
    c.train.seed = seed
  return c


def resolve_vocabulary(config):
  """`flan_mini.vocabulary: "corpus"` becomes the path of the corpus-trained SentencePiece model.

  The model is trained once from the world corpus and cached by content
  (`corpus.vocabulary`), so every run of an experiment uses the same pieces.
  """
  if config.flan_mini.vocabulary != CORPUS_VOCABULARY:
    return config
  from experiments.flan_mini import corpus  # pylint: disable=g-import-not-at-top
  c = copy.deepcopy(config)
  with c.unlocked():
    c.flan_mini.vocabulary = os.path.abspath(corpus.vocabulary(seed=c.flan_mini.seed))
  return c


def run_all(config, workdir: str, backend=None) -> dict[str, dict]:
  """Stage A once; then per held-out cluster (one at a time) and seed, every run. Report groups."""
  config = resolve_vocabulary(config)
  f = config.flan_mini
  backend = backend or SeqioBackend(f)
  pretrained = stage_a(config, workdir)
  groups = {}
  for i, cluster in enumerate(f.held_out):
    runs = collections.defaultdict(list)
    names = list(f.runs) + (list(f.control_runs) if i == 0 else [])
    for name in names:
      # P is not trained further: one evaluation, whatever the stage-B seed.
      seeds = f.seeds[:1] if name == PRETRAINED else f.seeds
      for seed in seeds:
        c = held_out_config(config, cluster, seed)
        training = training_clusters(c.flan_mini)
        check_runs(c.flan_mini, training)
        runs[name].append(train_and_evaluate(
            c, name, os.path.join(workdir, cluster, f"seed{seed}"), training, backend,
            init_from=pretrained))
    groups[cluster] = group([cluster], runs)
  return groups


def main(argv):
  del argv
  config = resolve_vocabulary(_CONFIG.value)
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  groups = run_all(config, workdir)
  report(config, groups, workdir, wall_seconds=time.time() - start)


if __name__ == "__main__":
  # TensorFlow (TFDS) reads this once, on import: no C++ banner or CUDA probe
  # errors in the demo's output (`TF_CPP_MIN_LOG_LEVEL=0` shows them).
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  # Flags only when run as a program: the modules import each other.
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "configs/experiments/flan_mini.py", "The flan_mini experiment config.")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/flan_mini", "Where runs and results go.")
  logging.set_verbosity(logging.WARNING)
  app.run(main)
