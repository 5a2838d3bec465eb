"""The one train-step setup: the mesh and model a run resolves to, and the parts its step is built from.

    mesh, model_cfg = build.resolve(config)            # checks the config, reads init_from
    parts = build.step_parts(config, mesh, model_cfg)  # graph, masks, optimizer, shardings, steps
    compiled = parts.compile(parts.abstract_state, batch)

Nothing here writes to disk or allocates parameters. The trainer, `t5tune
info --plan` (plan.py), the benchmarks and continual export all build from
here, so the program that is planned or measured is the one that trains:
the same freeze masks, micro-batches, loss options and loss terms.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from t5tune import errors
from t5tune import sharding
from t5tune.models import config as model_config
from t5tune.models import family
from t5tune.models import paths
from t5tune.train import experiment
from t5tune.train import optimizers
from t5tune.train import steps as steps_lib


def model_config_of(config: ml_collections.ConfigDict) -> model_config.T5Config:
  """The run's T5Config: init_from's own config (its architecture wins), else the preset; overrides on top."""
  if config.init_from:
    from t5tune.convert import loading
    if not os.path.isdir(config.init_from):
      raise errors.InputError(f"no such model directory {config.init_from!r}",
                              where="config.init_from",
                              fix="give a t5tune model dir, a checkpoint step or a Hugging Face"
                              " T5 dir")
    return loading.read_config(config.init_from).replace(**experiment.model_overrides(config))
  return experiment.resolve_model(config)


def resolve(config: ml_collections.ConfigDict, *, mesh: jax.sharding.Mesh | None = None,
            devices: Sequence[jax.Device] | None = None,
            model_cfg: model_config.T5Config | None = None, where: str = "--config"
            ) -> tuple[jax.sharding.Mesh, model_config.T5Config]:
  """(mesh, model config) of `config`, every value checked; nothing is built or written.

  Args:
    config: an experiment config.
    mesh: a mesh to use instead of one built from config.mesh.shape (a
      caller's mesh may use a subset of the devices: tests, notebooks).
    devices: the devices config.mesh.shape spreads over (default: all).
    model_cfg: the architecture, when the caller has it already (a plan of a
      model spec); otherwise the preset's or init_from's.
    where: what an error names as the place to fix.

  Raises:
    errors.UsageError: a value that cannot work, naming its config key.
  """
  devices = list(jax.devices() if devices is None else devices)
  try:
    mesh_shape = experiment.validate(config, mesh.size if mesh is not None else len(devices))
    if model_cfg is None:
      try:
        model_cfg = model_config_of(config)
      except errors.T5tuneError:
        raise
      except ValueError as e:
        raise ValueError(f"config.model: {e}") from None
    experiment.check_divisible(model_cfg, mesh_shape)  # with init_from too
  except ValueError as e:
    if isinstance(e, errors.T5tuneError):
      raise
    raise errors.UsageError(str(e), where=where,
                            fix="`t5tune train --help` describes the config keys") from None
  if mesh is None:
    mesh = sharding.make_mesh(mesh_shape, devices[:math.prod(mesh_shape)])
  return mesh, model_cfg


@dataclasses.dataclass
class StepParts:
  """What a train step is built from, and the step itself (pure: no arrays, no files)."""

  model_cfg: model_config.T5Config
  mesh: jax.sharding.Mesh
  graphdef: Any
  abstract_params: nnx.State  # the nnx.State form (what checkpoints restore into)
  mask: dict  # bool over all parameters, True = trainable
  tx: Any
  schedule: Any
  loss: steps_lib.LossOptions
  terms: tuple
  state_shardings: dict
  abstract_state: dict  # ShapeDtypeStructs carrying the state shardings
  train_step: Callable
  eval_step: Callable

  @property
  def trainable_shardings(self) -> dict:
    return optimizers.split_trainable(self.state_shardings["params"], self.mask)[0]

  def jit_train_step(self, batch: dict):
    """The train step jitted with the state/batch shardings and state donation."""
    batch_sh = steps_lib.batch_shardings(batch, self.mesh)
    return jax.jit(self.train_step, in_shardings=(self.state_shardings, batch_sh),
                   out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
                   donate_argnums=0)

  def lower(self, state: dict, batch: dict):
    """The jitted step lowered for `state` and `batch` (arrays or ShapeDtypeStructs)."""
    with sharding.use_mesh(self.mesh):
      return self.jit_train_step(batch).lower(state, batch)

  def compile(self, state: dict, batch: dict):
    with sharding.use_mesh(self.mesh):
      return self.jit_train_step(batch).lower(state, batch).compile()

  def init_state(self, params: dict, seed: int) -> dict:
    """A fresh train state from `params`, with the terms' aux state (state["reg"]) made from them."""
    state = steps_lib.init_state(self.tx, params, self.mask, self.state_shardings, seed)
    if "reg" in self.abstract_state:
      trainable, _ = optimizers.split_trainable(state["params"], self.mask)
      reg = {}
      for term in self.terms:
        for key, value in term.init_aux(trainable, self.abstract_state["reg"]).items():
          reg.setdefault(key, value)  # terms naming one key share it
      # A copy: an anchor that shares the parameters' buffers would be donated
      # twice by the jitted train step (which donates the whole state).
      reg = jax.tree.map(lambda x: x.copy(), reg)
      state["reg"] = jax.device_put(reg, self.state_shardings["reg"])
    return state


def step_parts(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
               model_cfg: model_config.T5Config,
               terms: Sequence[steps_lib.LossTerm] = ()) -> StepParts:
  """The parts of `config`'s train step on `mesh` (see `resolve` for mesh and model_cfg)."""
  graphdef, abstract_nnx = nnx.split(family.abstract_model(model_cfg, mesh), nnx.Param)
  abstract_params = nnx.to_pure_dict(abstract_nnx)
  param_shardings = nnx.to_pure_dict(sharding.state_shardings(abstract_nnx, mesh))
  for key in ("freeze", "train_only"):
    pattern = config.optimizer.get(key, "")
    if pattern and pattern != "peft":
      try:
        re.compile(pattern)
      except re.error as e:
        raise errors.UsageError(f"config.optimizer.{key}={pattern!r} is not a regex: {e}",
                                where=f"--config.optimizer.{key}",
                                fix="fix the pattern (Python re syntax), e.g. '^encoder/'") from None
  mask = optimizers.trainable_mask(abstract_params, config.optimizer.freeze,
                                   config.optimizer.train_only)
  if not any(jax.tree.leaves(mask)):
    raise errors.UsageError(
        f"config.optimizer.freeze={config.optimizer.freeze!r} /"
        f" train_only={config.optimizer.train_only!r} freeze every parameter",
        where="--config", fix=f"loosen the regexes (paths look like {paths.EXAMPLE!r})")
  tx, schedule = optimizers.make_optimizer(
      config.optimizer, config.schedule, config.train.steps,
      skip_nonfinite=config.train.nonfinite == "skip")
  state_sh, abstract_state = steps_lib.state_shardings(tx, abstract_params, param_shardings,
                                                       mask, mesh)
  terms = tuple(terms)
  aux = {}
  for term in terms:
    for key, dtype in term.aux.items():
      aux.setdefault(key, dtype)
  if aux:  # state["reg"]: the terms' trees, shaped and sharded like the trainable parameters
    trainable, _ = optimizers.split_trainable(abstract_params, mask)
    trainable_sh, _ = optimizers.split_trainable(param_shardings, mask)
    state_sh["reg"] = {k: trainable_sh for k in aux}
    abstract_state["reg"] = {
        k: jax.tree.map(lambda a, sh, d=d: jax.ShapeDtypeStruct(
            a.shape, a.dtype if d is None else jnp.dtype(d), sharding=sh), trainable, trainable_sh)
        for k, d in aux.items()}
  loss = steps_lib.LossOptions(
      normalization=config.train.loss_normalization, constant=config.train.loss_normalizing_factor,
      z_loss=config.train.z_loss, label_smoothing=config.train.label_smoothing)
  train_step = steps_lib.make_train_step(
      graphdef, tx, mask, schedule, loss=loss, microbatches=config.train.microbatches,
      dropout=model_cfg.dropout_rate > 0, terms=terms)
  return StepParts(model_cfg=model_cfg, mesh=mesh, graphdef=graphdef,
                   abstract_params=abstract_nnx, mask=mask, tx=tx, schedule=schedule, loss=loss,
                   terms=terms, state_shardings=state_sh, abstract_state=abstract_state,
                   train_step=train_step,
                   eval_step=steps_lib.make_eval_step(graphdef, loss=loss))


def initial_params(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                   model_cfg: model_config.T5Config) -> dict:
  """The parameters a run without checkpoints starts from: init_from's, else random (pure dict)."""
  if config.init_from:
    from t5tune.convert import loading
    model = loading.load_model(config.init_from, mesh,
                               **experiment.model_overrides(config))
  else:
    model = family.build_model(model_cfg, mesh, seed=config.seed)
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))
