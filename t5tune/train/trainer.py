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
import json
import logging
import os
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from t5tune import progress
from t5tune import sharding
from t5tune.models import paths
from t5tune.models import t5
from t5tune.train import checkpoints
from t5tune.train import experiment
from t5tune.train import divergence
from t5tune.train import hooks
from t5tune.train import optimizers
from t5tune.train import regularizers
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
      mesh=mesh, shuffle=config.data.shuffle and train)


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
               initial_params: Callable[["Trainer"], dict] | None = None,
               penalty: regularizers.Penalty | None = None,
               distill: regularizers.Distill | None = None,
               anchors: Callable[["Trainer", dict], dict] | None = None):
    self.config = config
    self.hooks = list(extra_hooks)
    # Continual tuning (t5tune.train.continual): where a fresh run's parameters
    # come from, and a penalty toward anchors kept in the train state as "reg"
    # (distillation's teacher is the anchor too).
    self._initial_params = initial_params
    self.penalty = penalty if penalty is not None and penalty.active else None
    self.distill = distill if distill is not None and distill.active else None
    self._fresh = None  # fresh_params(), until the train state takes them
    self._anchors = anchors
    self.workdir = os.path.abspath(workdir)
    self.eval_fns = list(eval_fns)
    # A caller's mesh may use a subset of the devices (tests, notebooks).
    mesh_shape = experiment.validate(config, mesh.size if mesh is not None else jax.device_count())
    self.mesh = mesh if mesh is not None else sharding.make_mesh(mesh_shape)
    if config.init_from:
      from t5tune.convert import loading
      self.model_cfg = loading.read_config(config.init_from).replace(
          **experiment.model_overrides(config))
    else:
      self.model_cfg = experiment.resolve_model(config)
    checkpoints.check_resumable(self.workdir, self.model_cfg.to_dict())
    os.makedirs(self.workdir, exist_ok=True)
    if jax.process_index() == 0:
      with open(os.path.join(self.workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)

    abstract = t5.abstract_model(self.model_cfg, self.mesh)
    self.graphdef, abstract_state = nnx.split(abstract, nnx.Param)
    self._abstract_params_nnx = abstract_state
    abstract_params = nnx.to_pure_dict(abstract_state)
    param_shardings = nnx.to_pure_dict(sharding.state_shardings(abstract_state, self.mesh))
    self.mask = optimizers.trainable_mask(abstract_params, config.optimizer.freeze,
                                          config.optimizer.train_only)
    if not any(jax.tree.leaves(self.mask)):
      raise ValueError(
          f"config.optimizer.freeze={config.optimizer.freeze!r} /"
          f" train_only={config.optimizer.train_only!r} freeze every parameter;"
          f" loosen the regexes (paths look like {paths.EXAMPLE!r})")
    self.tx, self.schedule = optimizers.make_optimizer(
        config.optimizer, config.schedule, config.train.steps,
        skip_nonfinite=config.train.nonfinite == "skip")
    self.state_shardings, self.abstract_state = steps_lib.state_shardings(
        self.tx, abstract_params, param_shardings, self.mask, self.mesh)
    if self.penalty is not None or self.distill is not None:
      self._add_reg_state(abstract_params, param_shardings)
    self.loss = steps_lib.LossOptions(
        normalization=config.train.loss_normalization,
        constant=config.train.loss_normalizing_factor,
        z_loss=config.train.z_loss, label_smoothing=config.train.label_smoothing)
    self.train_step = steps_lib.make_train_step(
        self.graphdef, self.tx, self.mask, self.schedule, loss=self.loss,
        microbatches=config.train.microbatches,
        dropout=self.model_cfg.dropout_rate > 0, penalty=self.penalty, distill=self.distill)
    self.eval_step = steps_lib.make_eval_step(self.graphdef, loss=self.loss)

    self.train_iter = train_iter
    self._eval_iter_fn = eval_iter_fn
    self.checkpointer = checkpoints.Checkpointer(
        os.path.join(self.workdir, "checkpoints"), model_config=self.model_cfg.to_dict(),
        keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best,
        best_metric=config.eval.metric if config.eval.every else "",
        best_mode=config.eval.mode, async_save=config.checkpoint.async_save)

  # -- state ------------------------------------------------------------------

  def _add_reg_state(self, abstract_params: dict, param_shardings: dict):
    """state["reg"]: the anchor (and EWC's Fisher) over the trainable parameters."""
    trainable, _ = optimizers.split_trainable(abstract_params, self.mask)
    trainable_sh, _ = optimizers.split_trainable(param_shardings, self.mask)
    keys = ("anchor", "fisher") if self.penalty is not None and self.penalty.ewc else ("anchor",)
    self.state_shardings["reg"] = {k: trainable_sh for k in keys}
    self.abstract_state["reg"] = {
        k: jax.tree.map(lambda a, sh, k=k: jax.ShapeDtypeStruct(
            a.shape, jnp.float32 if k == "fisher" else a.dtype, sharding=sh),
                        trainable, trainable_sh) for k in keys}

  def _params_nnx(self, params: dict) -> nnx.State:
    """The nnx.State form saved under params/ (what load_model reads)."""
    return nnx.state(nnx.merge(self.graphdef, params), nnx.Param)

  def initial_state(self) -> tuple[dict, bool]:
    """(state, resumed): the latest complete checkpoint, else fresh (random or init_from)."""
    latest = self.checkpointer.latest_step()
    if latest is not None:
      with sharding.use_mesh(self.mesh):
        params, rest = self.checkpointer.restore(
            latest, abstract_params=self._abstract_params_nnx,
            abstract_state={k: v for k, v in self.abstract_state.items() if k != "params"},
            iterator=self.train_iter)
      logging.info("resumed from %s", self.checkpointer.step_dir(latest))
      return {**rest, "params": nnx.to_pure_dict(params)}, True
    params = self.fresh_params()
    self._fresh = None  # the train step donates them: never hand them out again
    state = steps_lib.init_state(self.tx, params, self.mask, self.state_shardings,
                                 self.config.seed)
    if "reg" in self.abstract_state:
      # A copy: an anchor that shares the parameters' buffers would be donated
      # twice by the jitted train step (which donates the whole state).
      reg = jax.tree.map(lambda x: x.copy(), self._anchors(self, state["params"]))
      state["reg"] = jax.device_put(reg, self.state_shardings["reg"])
    return state, False

  def fresh_params(self) -> dict:
    """The parameters a run without checkpoints starts from (pure dict).

    Built once until the train state takes them: a caller that evaluates the
    starting model before training (continual tuning) builds it once, not twice.
    """
    if self._fresh is None:
      self._fresh = self._build_fresh_params()
    return self._fresh

  def _build_fresh_params(self) -> dict:
    if self._initial_params is not None:
      return self._initial_params(self)
    if self.config.init_from:
      from t5tune.convert import loading
      model = loading.load_model(self.config.init_from, self.mesh,
                                 **experiment.model_overrides(self.config))
      logging.info("initial parameters from %s", self.config.init_from)
    else:
      model = t5.build_model(self.model_cfg, self.mesh, seed=self.config.seed)
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))

  def save(self, state: dict, *, metrics: dict | None = None, force: bool = False) -> bool:
    rest = {k: v for k, v in state.items() if k != "params"}
    return self.checkpointer.save(
        int(state["step"]), params=self._params_nnx(state["params"]), state=rest,
        iterator=self.train_iter, experiment=self.config.to_dict(),
        metrics=metrics, force=force)

  def compile(self, state: dict, batch: dict):
    """The train step, jitted with the state/batch shardings and state donation, compiled."""
    batch_sh = steps_lib.batch_shardings(batch, self.mesh)
    with sharding.use_mesh(self.mesh), progress.status("compile train step"):
      return jax.jit(
          self.train_step, in_shardings=(self.state_shardings, batch_sh),
          out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
          donate_argnums=0).lower(state, batch).compile()

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
      jitted_eval = jax.jit(self.eval_step, in_shardings=(self.state_shardings["params"], None))
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
          extra_hooks: Sequence[hooks.Hook] = ()) -> TrainResult:
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

  Raises:
    NonFiniteError: a non-finite loss with config.train.nonfinite == "stop".
    ValueError: a config value that cannot work (before anything is compiled).
  """
  return Trainer(config, workdir, train_iter=train_iter, eval_iter_fn=eval_iter_fn,
                 eval_fns=eval_fns, mesh=mesh, extra_hooks=extra_hooks).run()
