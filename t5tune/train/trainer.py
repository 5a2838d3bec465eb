"""The training loop: build or resume the state, step, log, evaluate, checkpoint, stop.

Python callers (an experiment driver, a notebook) use

    result = trainer.train(config, workdir)

with a ConfigDict from `t5tune.train.experiment.default_config()` (or an
experiment file); the `t5tune train` command line does the same. Pass
`eval_fns` (callables `fn(model, step) -> dict of floats`) to add
generation-based metrics to every periodic evaluation.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from t5tune import atomic
from t5tune import progress
from t5tune import sharding
from t5tune.train import build
from t5tune.train import checkpoints
from t5tune.train import divergence
from t5tune.train import hooks
from t5tune.train import lock
from t5tune.train import steps as steps_lib

EvalFn = Callable[[Any, int], dict]


NonFiniteError = hooks.NonFiniteError  # raised by the loop; kept here for callers


@dataclasses.dataclass
class TrainResult:
  """What `train` returns."""
  state: dict  # the final train state (params as a nested dict)
  step: int
  train_metrics: dict  # the last logged training metrics
  eval_metrics: dict  # the last evaluation (empty if none ran)
  stop_reason: str  # "completed" | "early_stopping" | "preempted"
  compile_seconds: float
  checkpoint_dir: str


# -- small pieces -------------------------------------------------------------

def _import_factory(spec: str) -> Callable:
  module, sep, name = spec.partition(":")
  if not sep:
    raise ValueError(f"config.data.iterator_factory={spec!r}: expected 'package.module:function'")
  fn = getattr(importlib.import_module(module), name, None)
  if fn is None:
    raise ValueError(f"config.data.iterator_factory={spec!r}: {module} has no {name!r}")
  return fn


def make_iterator(config: ml_collections.ConfigDict, mesh, split: str) -> Iterator:
  """The data iterator for `split`: the config's factory, or the seqio pipeline."""
  for module in config.data.modules:
    importlib.import_module(module)
  if config.data.iterator_factory:
    return _import_factory(config.data.iterator_factory)(config, mesh, split)
  from t5tune.data import pipeline  # imports TensorFlow: only when needed
  train = split == "train"
  return pipeline.make_iterator(
      config.data.mixture, split=split,
      feature_lengths={"inputs": config.data.inputs_length,
                       "targets": config.data.targets_length},
      batch_size=config.data.batch_size, pack=config.data.pack, seed=config.seed,
      mesh=mesh, shuffle=config.data.shuffle and train,
      cache_dir=config.data.get("cache_dir", ""))  # absent from configs saved before caches


def check_vocabulary(config: ml_collections.ConfigDict, model_vocab_size: int) -> None:
  """The vocabularies of the tasks the seqio pipeline reads fit the model's embedding.

  Where a run's tasks meet its model: an id past the embedding trains and scores
  against NaN (JAX gathers do not fail), so a larger vocabulary is refused here,
  naming both sizes, before the workdir is written.
  """
  if not config.data.mixture or config.data.iterator_factory:
    return
  for module in config.data.modules:
    importlib.import_module(module)
  from t5tune.data import vocab  # imports seqio: only when the pipeline will
  vocab.check_tasks_fit(
      [config.data.mixture], model_vocab_size, "config.data.mixture",
      fix="give the tasks the model's vocabulary, or a model whose vocab_size holds theirs"
      " (--config.model.overrides.vocab_size)")


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
  out = {}
  def walk(d, prefix):
    for k, v in d.items():
      if isinstance(v, (dict, ml_collections.ConfigDict)):
        walk(v, f"{prefix}{k}.")
      else:
        out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
  walk(config.to_dict(), "")
  return out


def _model_flops(model_cfg, config) -> float:
  """Training FLOPs of one (padded) example, for MFU."""
  from t5tune.models import info
  return float(info.train_flops(model_cfg, config.data.inputs_length,
                                config.data.targets_length))


# -- the loop -------------------------------------------------------------------

class Trainer:
  """Holds everything built from a config; `run()` trains. See `train`."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, *,
               train_iter: Iterator | None = None,
               eval_iter_fn: Callable[[], Iterator] | None = None,
               eval_fns: Sequence[EvalFn] = (),
               mesh: jax.sharding.Mesh | None = None,
               extra_hooks: Sequence[hooks.Hook] = (),
               terms: Sequence[steps_lib.LossTerm] = (),
               initial_params: Callable[[build.StepParts], dict] | None = None):
    self.config = config
    self.hooks = list(extra_hooks)
    self.workdir = os.path.abspath(workdir)
    self.eval_fns = list(eval_fns)
    # Everything is checked and built before the workdir is touched.
    self.mesh, self.model_cfg = build.resolve(config, mesh=mesh)
    checkpoints.check_resumable(self.workdir, self.model_cfg.to_dict())
    if train_iter is None or (eval_iter_fn is None and config.eval.every):  # the pipeline's tasks
      check_vocabulary(config, self.model_cfg.vocab_size)
    self.parts = build.step_parts(config, self.mesh, self.model_cfg, terms)
    self.graphdef = self.parts.graphdef
    self._initial_params = initial_params  # where a fresh run's parameters come from
    self._fresh = None  # fresh_params(), until the train state takes them
    # One writer per workdir, from before the first write until run() ends.
    self._lock = lock.acquire(self.workdir, "train", process_index=jax.process_index())
    os.makedirs(self.workdir, exist_ok=True)
    if jax.process_index() == 0:
      atomic.write_json(os.path.join(self.workdir, "config.json"), config.to_dict(), indent=2,
                        default=str)

    self.train_iter = train_iter
    self._eval_iter_fn = eval_iter_fn
    self.checkpointer = checkpoints.Checkpointer(
        os.path.join(self.workdir, "checkpoints"), model_config=self.model_cfg.to_dict(),
        keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best,
        best_metric=config.eval.metric if config.eval.every else "",
        best_mode=config.eval.mode, async_save=config.checkpoint.async_save)

  # -- state ------------------------------------------------------------------

  def _params_nnx(self, params: dict) -> nnx.State:
    """The nnx.State form saved under params/ (what load_model reads)."""
    return nnx.state(nnx.merge(self.graphdef, params), nnx.Param)

  def initial_state(self) -> tuple[dict, bool]:
    """(state, resumed): the latest complete checkpoint, else fresh (random or init_from)."""
    latest = self.checkpointer.latest_step()
    if latest is not None:
      with sharding.use_mesh(self.mesh):
        params, rest = self.checkpointer.restore(
            latest, abstract_params=self.parts.abstract_params,
            abstract_state={k: v for k, v in self.parts.abstract_state.items() if k != "params"},
            iterator=self.train_iter)
      logging.info("resumed from %s", self.checkpointer.step_dir(latest))
      return {**rest, "params": nnx.to_pure_dict(params)}, True
    params = self.fresh_params()
    self._fresh = None  # the train step donates them: never hand them out again
    return self.parts.init_state(params, self.config.seed), False

  def fresh_params(self) -> dict:
    """The parameters a run without checkpoints starts from (pure dict).

    Built once until the train state takes them: a caller that evaluates the
    starting model before training (continual tuning) builds it once, not twice.
    """
    if self._fresh is None:
      if self._initial_params is not None:
        self._fresh = self._initial_params(self.parts)
      else:
        self._fresh = build.initial_params(self.config, self.mesh, self.model_cfg)
        if self.config.init_from:
          logging.info("initial parameters from %s", self.config.init_from)
    return self._fresh

  def save(self, state: dict, *, metrics: dict | None = None, force: bool = False) -> bool:
    """Saves a checkpoint of `state` (parameters, optimizer state, data iterator); returns whether one was written."""
    rest = {k: v for k, v in state.items() if k != "params"}
    return self.checkpointer.save(
        int(state["step"]), params=self._params_nnx(state["params"]), state=rest,
        iterator=self.train_iter, experiment=self.config.to_dict(),
        metrics=metrics, force=force)

  def compile(self, state: dict, batch: dict):
    """The train step, jitted with the state/batch shardings and state donation, compiled."""
    with progress.status("compile train step"):
      return self.parts.compile(state, batch)

  # -- evaluation ---------------------------------------------------------------

  def evaluate(self, params: dict, step: int, jitted_eval) -> dict:
    """Validation loss / accuracy over `eval.batches` batches, plus the eval_fns hooks."""
    out = {}
    if self._eval_iter_fn is not None or self.config.data.mixture or self.config.data.iterator_factory:
      it = (self._eval_iter_fn() if self._eval_iter_fn is not None
            else make_iterator(self.config, self.mesh, self.config.data.eval_split))
      totals = None
      for _ in range(self.config.eval.batches):
        try:
          batch = next(it)
        except StopIteration:
          break
        stats = jitted_eval(params, batch)
        totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
      if totals is not None:
        totals = jax.device_get(totals)
        tokens = max(float(totals["weight_sum"]), 1.0)
        out.update({"eval/loss": float(totals["loss_sum"]) / tokens,
                    "eval/accuracy": float(totals["correct"]) / tokens,
                    "eval/target_tokens": float(totals["weight_sum"])})
    if self.eval_fns:
      model = nnx.merge(self.graphdef, params)
      for fn in self.eval_fns:
        out.update({f"eval/{k}" if "/" not in k else k: float(v)
                    for k, v in fn(model, step).items()})
    return out

  # -- the loop -----------------------------------------------------------------

  def run(self) -> TrainResult:
    """Trains to `config.train.steps` (resuming from the latest checkpoint), calling the hooks; returns the result."""
    if self.train_iter is None:
      self.train_iter = make_iterator(self.config, self.mesh, "train")
    logger = hooks.Logger(self.workdir)
    logger.hparams(_flat(self.config))
    preemption = hooks.Preemption()
    try:
      return self._loop(logger, preemption)
    finally:
      preemption.close()
      self.checkpointer.close()
      logger.close()
      self._lock.release()

  def _nonfinite(self, step: int, host: dict):
    self.checkpointer.wait()
    good = self.checkpointer.latest_step()
    where = (f"the last good checkpoint is step {good} in {self.checkpointer.directory}"
             if good is not None else "no checkpoint was written yet")
    raise NonFiniteError(
        f"non-finite loss or gradients at step {step} (loss={float(host['loss'])},"
        f" grad_norm={float(host['grad_norm'])}); training stopped and {where}."
        " Lower the learning rate, enable clipping (config.optimizer.grad_clip_norm),"
        " or skip such updates with --config.train.nonfinite=skip")

  def _standard_hooks(self, loop: hooks.LoopState, logger: hooks.Logger,
                      window: hooks.MetricsWindow) -> list[hooks.Hook]:
    """Progress bar, train logging, evaluation (+ early stopping), saving: in that order."""
    config = self.config
    with sharding.use_mesh(self.mesh):
      jitted_eval = jax.jit(self.parts.eval_step,
                            in_shardings=(self.parts.state_shardings["params"], None))
    bar = hooks.ProgressBar(loop.total, loop.step)
    stopping = hooks.EarlyStopping(config.eval.metric, config.eval.mode, config.eval.patience)
    return [
        bar,
        hooks.LogTrain(config.train.log_every, window, logger, bar),
        divergence.Divergence(),  # before saving: a diverged state is not checkpointed
        hooks.Evaluate(config.eval.every, lambda p, s: self.evaluate(p, s, jitted_eval),
                       logger, window, actions=(stopping,)),
        hooks.Save(config.checkpoint.every, self.save, window, self.checkpointer.all_steps),
    ]

  def _loop(self, logger: hooks.Logger, preemption: hooks.Preemption) -> TrainResult:
    config = self.config
    state, _ = self.initial_state()
    loop = hooks.LoopState(state=state, step=int(state["step"]), total=config.train.steps)
    logger.start_at(loop.step)  # rows of steps after the restored one are logged again

    # Compile once, with the shardings of the first batch.
    first_batch = next(self.train_iter) if loop.step < loop.total else None
    compile_s = 0.0
    if first_batch is not None:
      t0 = time.perf_counter()
      train_fn = self.compile(state, first_batch)
      compile_s = time.perf_counter() - t0
      logging.info("train step compiled in %.1f s", compile_s)
      logger.scalars(loop.step, {"compile_seconds": compile_s})

    peak = config.train.peak_flops_per_device * jax.device_count()
    window = hooks.MetricsWindow(
        tokens_per_step=config.data.batch_size * (config.data.inputs_length
                                                  + config.data.targets_length),
        flops_per_step=(_model_flops(self.model_cfg, config) * config.data.batch_size
                        if peak else 0.0),
        peak_flops=peak, nonfinite=config.train.nonfinite, on_nonfinite=self._nonfinite)
    parts = self._standard_hooks(loop, logger, window) + self.hooks
    try:
      while loop.step < loop.total:
        if preemption.reached(loop.step):
          loop.stop_reason = "preempted"
          break
        batch = first_batch if first_batch is not None else next(self.train_iter)
        first_batch = None
        loop.state, metrics = train_fn(loop.state, batch)
        loop.step += 1
        window.dispatched(loop.step, metrics)
        window.resolve(all_steps=any(h.due(loop.step, loop.total) for h in parts))
        for hook in parts:
          hook.after_step(loop)
        if loop.stop_reason != "completed":
          break
      window.resolve(all_steps=True)
      for hook in parts:
        hook.at_end(loop)
    finally:
      parts[0].close()  # the progress bar, also when a step raised
    self.checkpointer.wait()
    return TrainResult(state=loop.state, step=loop.step, train_metrics=loop.train_metrics,
                       eval_metrics=loop.eval_metrics, stop_reason=loop.stop_reason,
                       compile_seconds=compile_s, checkpoint_dir=self.checkpointer.directory)


def train(config: ml_collections.ConfigDict, workdir: str, *,
          train_iter: Iterator | None = None,
          eval_iter_fn: Callable[[], Iterator] | None = None,
          eval_fns: Sequence[EvalFn] = (),
          mesh: jax.sharding.Mesh | None = None,
          extra_hooks: Sequence[hooks.Hook] = (),
          terms: Sequence[steps_lib.LossTerm] = ()) -> TrainResult:
  """Trains (or resumes training) as `config` says, writing everything under `workdir`.

  Args:
    config: an experiment ConfigDict (see t5tune.train.experiment).
    workdir: holds config.json, metrics.jsonl, tb/ and checkpoints/<step>/;
      if it has checkpoints, training resumes from the latest complete one.
    train_iter: batches to train on instead of the config's data (must have
      save(dir) / restore(dir) for exact resume).
    eval_iter_fn: returns a fresh iterator of validation batches.
    eval_fns: `fn(model, step) -> dict` run at every evaluation (e.g. decoding
      metrics); their values are logged as eval/<name>.
    mesh: a mesh to use instead of one built from config.mesh.shape.
    extra_hooks: `hooks.Hook`s called after the standard ones (log, evaluate,
      save) at every step and at the end.
    terms: `steps.LossTerm`s added to the training objective (e.g.
      regularizers.L2SP), each logged as train/<name>.

  Raises:
    NonFiniteError: a non-finite loss with config.train.nonfinite == "stop".
    errors.UsageError: a config value that cannot work (a ValueError; raised
      before anything is compiled or written).
  """
  return Trainer(config, workdir, train_iter=train_iter, eval_iter_fn=eval_iter_fn,
                 eval_fns=eval_fns, mesh=mesh, extra_hooks=extra_hooks, terms=terms).run()
