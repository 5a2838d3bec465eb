"""Continual instruction tuning: stages of tasks trained one after another in one workdir, and measured.

    t5tune continual --config=experiments/continual/config.py --workdir=runs/continual

A config (`default_config()` plus `stage(...)` entries) lists stages; each
trains the shared `experiment` settings on its own tasks, starting from the
previous stage's final weights, optionally with replay of earlier tasks
(`replay.py`), an L2-SP or EWC penalty or distillation from the previous
stage's model (`regularizers.py`), or a new LoRA per stage with the earlier
ones frozen. After the starting model and after every stage, every stage's
tasks are evaluated: the accuracy matrix and ACC / BWT / FWT / forgetting
(`transfer.py`).

The workdir:

    continual.json, continual.png   the matrix, its summary, and the heatmap
    initial_eval.json               the starting model on every stage's tasks (FWT's b)
    initial_per_example.json        its score on each example (paired statistics over examples)
    stages/NAME/                    the stage's trainer workdir (checkpoints/, metrics.jsonl, tb/)
    stages/NAME/final/              its final weights (a t5tune model directory)
    stages/NAME/fisher/             EWC's summed diagonal Fisher up to this stage (orbax)
    stages/NAME/adapter.safetensors its LoRA (with lora_per_stage)
    stages/NAME/eval.json           its row of the matrix
    stages/NAME/per_example.json    each example's score after the stage
    stages/NAME/done.json           written last: the stage is complete

Every file is written once, atomically, and checked before work is done, so
a run killed anywhere resumes where it stopped: a finished stage is never
trained again, and an unfinished one resumes from its last checkpoint.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from t5tune import atomic
from t5tune import errors
from t5tune import ranges
from t5tune.data import vocab
from t5tune.models import layers
from t5tune.models import family
from t5tune.train import build
from t5tune.train import experiment
from t5tune.train import lock
from t5tune.train import regularizers
from t5tune.train import replay
from t5tune.train import trainer as trainer_lib
from t5tune.train import transfer


def default_config() -> ml_collections.ConfigDict:
  """The keys of a continual run; add stages with `config.stages.NAME = stage(...)`."""
  c = ml_collections.ConfigDict()
  c.experiment = experiment.default_config()  # shared by every stage
  c.stages = ml_collections.ConfigDict()
  c.order = ()  # stage names, in training order
  c.lora_per_stage = False  # a new LoRA each stage (experiment.model.overrides.lora_rank > 0)
  c.fisher_batches = 4  # batches of a stage's own tasks for its Fisher (when a later stage uses EWC)
  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 16
  c.eval.max_decode_len = 32
  c.eval.num_examples = 0  # per task; 0 = the whole validation split
  c.eval.metric = ""  # the metric read from each task's results; "" = the task's first
  return c


# Allowed ranges of a continual config's numbers and of each stage's (t5tune.ranges), checked
# when a run is set up, before its workdir is written: a negative EWC or L2-SP weight once
# trained with a penalty that rewarded moving away.
RANGES = {"fisher_batches": "[1, inf)", "eval.batch_size": "[1, inf)",
          "eval.max_decode_len": "[1, inf)", "eval.num_examples": "[0, inf)"}
STAGE_RANGES = {"steps": "[1, inf)", "learning_rate": "[0, inf)", "replay_rate": "[0, 1)",
                "replay_cap": "[0, inf)", "l2sp": "[0, inf)", "ewc": "[0, inf)",
                "distill": "[0, inf)", "distill_temperature": "(0, inf)"}


def _check_ranges(config: ml_collections.ConfigDict, order: Sequence[str]) -> None:
  for key, spec in RANGES.items():
    value = config
    for part in key.split("."):
      value = value[part]
    ranges.check(f"config.{key}", value, spec)
  for name in order:
    for key, spec in STAGE_RANGES.items():
      ranges.check(f"config.stages.{name}.{key}", config.stages[name][key], spec)


def stage(tasks: Sequence[str], steps: int, **overrides: Any) -> ml_collections.ConfigDict:
  """One stage: its tasks, its steps, and what differs from the defaults below."""
  s = ml_collections.ConfigDict()
  s.tasks = tuple(tasks)
  s.steps = steps
  s.learning_rate = 0.0  # 0 = experiment.optimizer.learning_rate
  s.replay_rate = 0.0  # fraction of the stage's examples drawn from earlier stages' tasks
  s.replay_cap = 100  # examples per earlier task in the replay buffer (0 = all)
  s.l2sp = 0.0  # weight of the L2 pull toward the stage's starting weights
  s.ewc = 0.0  # weight of the EWC penalty (Fisher of the earlier stages)
  s.distill = 0.0  # weight of the KL to the previous stage's model on the stage's batches
  s.distill_temperature = 1.0  # softmax temperature of that KL
  for key, value in overrides.items():
    if key not in s:
      raise errors.UsageError(f"unknown stage setting {key!r}", where="continual.stage()",
                              fix=f"use one of {sorted(s)}")
    s[key] = value
  return s


def _write_json(path: str, value: Any) -> None:
  atomic.write_json(path, value, indent=2)  # readable: these files are for people too


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def lora_nodes(params: dict, path: tuple = ()):
  """(path, node) of every projection with LoRA in a pure-dict parameter tree."""
  if isinstance(params, dict):
    if "lora_a" in params and "lora_b" in params and "kernel" in params:
      yield path, params
      return
    for key, value in params.items():
      yield from lora_nodes(value, path + (key,))


class Continual:
  """A continual run of `config` in `workdir`: `run()` trains what is missing and measures."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, *,
               mesh: jax.sharding.Mesh | None = None):
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.mesh = mesh
    self.order = list(config.order)
    if not self.order:
      raise errors.UsageError("no stages to train", where="config.order",
                              fix="list the stage names in training order")
    for name in self.order:
      if name not in config.stages:
        raise errors.UsageError(f"stage {name!r} is not in config.stages", where="config.order",
                                fix=f"use one of {sorted(config.stages)}")
      if not config.stages[name].tasks:
        raise errors.UsageError("a stage needs tasks", where=f"config.stages.{name}.tasks",
                                fix="name the stage's tasks or mixtures")
    _check_ranges(config, self.order)
    vocab.check_tasks_fit([t for n in self.order for t in config.stages[n].tasks],
                          build.model_config_of(config.experiment).vocab_size, "config.stages")
    if config.lora_per_stage and not config.experiment.model.overrides.lora_rank:
      raise errors.UsageError("per-stage LoRA needs a LoRA rank", where="config.lora_per_stage",
                              fix="set config.experiment.model.overrides.lora_rank > 0")
    self.need_fisher = [any(config.stages[n].ewc for n in self.order[k + 1:])
                        for k in range(len(self.order))]
    self._evaluator = None
    self._start_weights = None  # the starting weights as numpy, for export()

  # -- paths and per-stage configs -----------------------------------------------

  def stage_dir(self, name: str) -> str:
    """`WORKDIR/stages/NAME`: a stage's checkpoints, final weights and metrics."""
    return os.path.join(self.workdir, "stages", name)

  def stage_config(self, k: int) -> ml_collections.ConfigDict:
    """The experiment config that stage k trains with (its mixture registered)."""
    import importlib
    for module in self.config.experiment.data.modules:
      importlib.import_module(module)
    s = self.config.stages[self.order[k]]
    earlier = [t for n in self.order[:k] for t in self.config.stages[n].tasks]
    cfg = copy.deepcopy(self.config.experiment)
    cfg.data.mixture = replay.register_stage_mixture(
        f"t5tune_continual__{self.order[k]}", list(s.tasks), earlier,
        replay_rate=s.replay_rate, cap=s.replay_cap, seed=self.config.experiment.seed)
    cfg.train.steps = s.steps
    if s.learning_rate:
      cfg.optimizer.learning_rate = s.learning_rate
    if self.config.lora_per_stage and not cfg.optimizer.train_only:
      cfg.optimizer.train_only = "peft"  # the base (with earlier stages folded in) stays frozen
    return cfg

  def make_trainer(self, k: int, **kwargs) -> trainer_lib.Trainer:
    """The trainer of stage `k`: its mixture (with replay), start weights and loss terms."""
    s = self.config.stages[self.order[k]]
    for key, what in (("ewc", "stage to hold on to"), ("distill", "model to distil from")):
      if k == 0 and s[key]:
        raise errors.UsageError(f"the first stage has no earlier {what}",
                                where=f"config.stages.{self.order[0]}.{key}",
                                fix=f"set {key} on later stages only")
    fisher = (lambda abstract: self._restore_tree(self.fisher_path(self.order[k - 1]), abstract))
    terms = regularizers.stage_terms(l2sp=s.l2sp, ewc=s.ewc, fisher=fisher, distill=s.distill,
                                     temperature=s.distill_temperature)
    return trainer_lib.Trainer(
        self.stage_config(k), self.stage_dir(self.order[k]), mesh=self.mesh, terms=terms,
        initial_params=(lambda parts: self._stage_start(k, parts)) if k else None, **kwargs)

  # -- what a stage starts from ---------------------------------------------------

  def final_params(self, name: str, mesh) -> dict:
    """The final parameters of stage `name`, loaded onto `mesh`."""
    from t5tune.convert import loading
    model = loading.load_model(os.path.join(self.stage_dir(name), "final"), mesh)
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))

  def _stage_start(self, k: int, parts: build.StepParts) -> dict:
    params = self.final_params(self.order[k - 1], parts.mesh)
    if self.config.lora_per_stage:
      # Fold the previous stages' LoRA into the frozen kernels; a fresh LoRA
      # (A random with a per-stage seed, B zero) trains in this stage.
      fresh = nnx.to_pure_dict(nnx.state(
          family.build_model(parts.model_cfg, parts.mesh, seed=self.config.experiment.seed + k),
          nnx.Param))
      fresh_nodes = dict(lora_nodes(fresh))
      scale = parts.model_cfg.lora_alpha / parts.model_cfg.lora_rank
      for path, node in lora_nodes(params):
        node["kernel"] = layers.fold_lora(node["kernel"], node["lora_a"], node["lora_b"], scale)
        node["lora_a"] = fresh_nodes[path]["lora_a"]
        node["lora_b"] = jnp.zeros_like(node["lora_b"])
    return params

  # -- EWC's Fisher -----------------------------------------------------------------

  def fisher_path(self, name: str) -> str:
    """Where stage `name`'s diagonal Fisher estimate is saved (for EWC)."""
    return os.path.join(self.stage_dir(name), "fisher")

  def compute_fisher(self, k: int, tr: trainer_lib.Trainer, params: dict) -> Any:
    """Stage k's empirical Fisher on its own tasks' train data, plus the earlier stages' sum."""
    from t5tune.data import pipeline
    cfg = tr.config
    name = f"t5tune_continual__{self.order[k]}__own"
    replay.register_stage_mixture(name, list(self.config.stages[self.order[k]].tasks), [],
                                  replay_rate=0.0, cap=0, seed=cfg.seed)
    it = pipeline.make_iterator(
        name, split="train", feature_lengths={"inputs": cfg.data.inputs_length,
                                              "targets": cfg.data.targets_length},
        batch_size=cfg.data.batch_size, pack=False, seed=cfg.seed + 1, mesh=tr.mesh)
    parts = tr.parts
    # Jitted without a current mesh: one example at a time cannot honour the
    # model's batch-axis constraints, and XLA places the work from the inputs.
    fn = jax.jit(regularizers.make_fisher_fn(parts.graphdef, parts.mask),
                 out_shardings=parts.trainable_shardings)
    total, examples = None, 0
    for _ in range(self.config.fisher_batches):
      batch = next(it)
      part = fn(params, batch)
      total = part if total is None else jax.tree.map(jnp.add, total, part)
      examples += int(np.sum(np.asarray(jax.device_get(batch["decoder_loss_weights"])).sum(-1) > 0))
    fisher = jax.tree.map(lambda x: x / max(examples, 1), total)
    if k > 0 and os.path.isdir(self.fisher_path(self.order[k - 1])):
      earlier = self._restore_tree(self.fisher_path(self.order[k - 1]), fisher)
      fisher = jax.tree.map(jnp.add, fisher, earlier)
    return fisher

  def _restore_tree(self, path: str, like: Any) -> Any:
    import orbax.checkpoint as ocp
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            like)
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(path, abstract)

  # -- evaluation ---------------------------------------------------------------------

  def all_tasks(self) -> list[str]:
    """Every stage's tasks, in stage order."""
    return [t for n in self.order for t in self.config.stages[n].tasks]

  def evaluator(self):
    """The evaluator of every stage's tasks (built once)."""
    if self._evaluator is None:
      from t5tune.infer import decoding
      from t5tune.infer import evaluation
      e = self.config.experiment
      self._evaluator = evaluation.TaskEvaluator(
          self.all_tasks(), batch_size=self.config.eval.batch_size,
          feature_lengths={"inputs": e.data.inputs_length, "targets": e.data.targets_length},
          options=decoding.DecodeOptions(max_decode_len=self.config.eval.max_decode_len),
          num_examples=self.config.eval.num_examples or None, seed=e.seed)
    return self._evaluator

  def evaluate(self, tr: trainer_lib.Trainer, params: dict, step: int) -> dict:
    """{task: {metric: value}} for every stage's tasks."""
    return self.evaluator().evaluate(nnx.merge(tr.graphdef, params), step=step)

  def per_example(self) -> dict[str, list[float]]:
    """{task: each example's score} of the last evaluate(), under the metric `score` reads."""
    ev = self.evaluator()
    return {t: ev.per_example(t, self.config.eval.metric) for t in self.all_tasks()}

  def _evaluate_to(self, tr: trainer_lib.Trainer, params: dict, step: int, eval_path: str,
                   per_example_path: str) -> None:
    # eval.json last: its presence means both files are complete.
    results = self.evaluate(tr, params, step)
    _write_json(per_example_path, self.per_example())
    _write_json(eval_path, results)

  def score(self, results: dict, task: str) -> float:
    """A task's score in `results`: the config's eval metric, else its first metric."""
    metrics = results[task]
    key = self.config.eval.metric if self.config.eval.metric in metrics else next(iter(metrics))
    return float(metrics[key])

  def row(self, results: dict) -> list[float]:
    """Mean score over each stage's tasks."""
    return [float(np.mean([self.score(results, t) for t in self.config.stages[n].tasks]))
            for n in self.order]

  # -- the run ----------------------------------------------------------------------------

  def run(self) -> dict:
    """Trains every stage in order (resuming an unfinished one) and returns the accuracy matrix and its summaries."""
    with lock.hold(self.workdir, "continual", process_index=jax.process_index()):
      os.makedirs(os.path.join(self.workdir, "stages"), exist_ok=True)
      _write_json(os.path.join(self.workdir, "continual_config.json"),
                   json.loads(self.config.to_json_best_effort()))
      for k, name in enumerate(self.order):
        if not os.path.exists(os.path.join(self.stage_dir(name), "done.json")):
          self.run_stage(k)
      return self.measure()

  def run_stage(self, k: int) -> None:
    """Trains and evaluates stage `k`, unless it is finished already."""
    name = self.order[k]
    d = self.stage_dir(name)
    tr = self.make_trainer(k)
    initial = os.path.join(self.workdir, "initial_eval.json")
    if k == 0 and not os.path.exists(initial):
      self._evaluate_to(tr, tr.fresh_params(), 0, initial,
                        os.path.join(self.workdir, "initial_per_example.json"))
    result = tr.run()
    params = result.state["params"]
    if not os.path.isdir(os.path.join(d, "final")):
      from t5tune.convert import loading
      loading.save_model(nnx.merge(tr.graphdef, params), os.path.join(d, "final"))
    if self.config.lora_per_stage and not os.path.exists(os.path.join(d, "adapter.safetensors")):
      self.save_adapter(params, os.path.join(d, "adapter.safetensors"))
    if self.need_fisher[k] and not os.path.isdir(self.fisher_path(name)):
      import orbax.checkpoint as ocp
      with ocp.StandardCheckpointer() as ckptr:  # writes a temporary dir, then renames
        ckptr.save(self.fisher_path(name), self.compute_fisher(k, tr, params))
        ckptr.wait_until_finished()
    if not os.path.exists(os.path.join(d, "eval.json")):
      self._evaluate_to(tr, params, result.step, os.path.join(d, "eval.json"),
                        os.path.join(d, "per_example.json"))
    _write_json(os.path.join(d, "done.json"), {"step": result.step,
                                                "stop_reason": result.stop_reason})
    logging.info("stage %s done at step %d", name, result.step)

  def measure(self) -> dict:
    """continual.json + continual.png from the stages' eval files; returns the summary."""
    initial = _read_json(os.path.join(self.workdir, "initial_eval.json"))
    results = [_read_json(os.path.join(self.stage_dir(n), "eval.json")) for n in self.order]
    R = [self.row(r) for r in results]
    b = self.row(initial)
    summary = transfer.summarize(R, b)
    out = {"stages": self.order, "tasks": {n: list(self.config.stages[n].tasks) for n in self.order},
           "R": R, "initial": b, **summary, "results": results, "initial_results": initial}
    _write_json(os.path.join(self.workdir, "continual.json"), out)
    transfer.heatmap(os.path.join(self.workdir, "continual.png"), self.order, R, b)
    out["table"] = transfer.table(self.order, R, b, summary)
    return out

  # -- per-stage LoRA -----------------------------------------------------------------------

  @staticmethod
  def save_adapter(params: dict, path: str) -> None:
    """Writes the LoRA matrices of `params` to `path` as safetensors."""
    import safetensors.numpy
    tensors = {}
    for p, node in lora_nodes(params):
      for key in ("lora_a", "lora_b"):
        tensors["/".join(map(str, p + (key,)))] = np.asarray(jax.device_get(node[key]))
    with atomic.writing(path, suffix=".safetensors") as tmp:
      safetensors.numpy.save_file(tensors, tmp)

  def export(self, output_dir: str, merge: Sequence[str]) -> None:
    """A Hugging Face T5 directory: the starting weights plus the LoRA of the `merge` stages."""
    import safetensors.numpy
    from t5tune.convert import loading
    unknown = [m for m in merge if m not in self.order]
    if unknown:
      raise errors.UsageError(f"{unknown} are not stages of this run", where="--merge",
                              fix=f"choose from {self.order}")
    if os.path.exists(output_dir):
      raise errors.OutputExistsError(f"{output_dir} exists", where="--export_to",
                                     fix="choose a new directory (nothing is overwritten)")
    # Stage 0's starting weights and model, built as its trainer builds them
    # (nothing written: no trainer, no checkpoint manager).
    cfg = self.stage_config(0)
    mesh, model_cfg = build.resolve(cfg, mesh=self.mesh)
    if self._start_weights is None:  # one build for every export of this run
      self._start_weights = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32),
                                         build.initial_params(cfg, mesh, model_cfg))
    params = copy.deepcopy(self._start_weights)
    scale = model_cfg.lora_alpha / model_cfg.lora_rank
    adapters = {n: safetensors.numpy.load_file(os.path.join(self.stage_dir(n), "adapter.safetensors"))
                for n in self.order if n in merge}
    for p, node in lora_nodes(params):
      key = "/".join(map(str, p))
      for n in self.order:
        if n in adapters:
          node["kernel"] = layers.fold_lora(node["kernel"], adapters[n][key + "/lora_a"],
                                            adapters[n][key + "/lora_b"], scale)
      del node["lora_a"], node["lora_b"]
    loading.write_hf_dir(output_dir, model_cfg.replace(lora_rank=0), params)


def run(config: ml_collections.ConfigDict, workdir: str, **kwargs) -> dict:
  """Trains every unfinished stage of `config` in `workdir`; returns the summary (see measure)."""
  return Continual(config, workdir, **kwargs).run()
