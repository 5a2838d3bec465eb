"""Optimizers and learning-rate schedules built from the `optimizer` / `schedule` config.

Adafactor follows T5's defaults (factored second moments, no momentum, update
clipping at 1.0, parameter-scaled steps); AdamW takes a weight-decay mask.
Parameters frozen by a regex get no gradient and no optimizer state at all:
the optimizer only ever sees the trainable subtree (see `split_trainable`).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from t5tune import errors
from t5tune.models import config as model_config
from t5tune.models import paths

OPTIMIZERS = ("adafactor", "adamw", "sgd")
SCHEDULES = ("constant", "rsqrt", "cosine", "linear")


def make_schedule(cfg: Mapping[str, Any], learning_rate: float,
                  total_steps: int) -> optax.Schedule:
  """Linear warm-up to `learning_rate`, then constant / rsqrt / cosine / linear decay.

  rsqrt is T5's `lr * rsqrt(max(step, warmup))` normalised so that it equals
  `learning_rate` at the end of warm-up.
  """
  name = cfg["name"]
  warmup = int(cfg["warmup_steps"])
  decay_steps = int(cfg["decay_steps"]) or max(total_steps - warmup, 1)
  end = float(cfg["end_learning_rate"])
  if name == "constant":
    decay = optax.constant_schedule(learning_rate)
  elif name == "rsqrt":
    offset = max(warmup, 1)
    def decay(count):
      return learning_rate * jnp.sqrt(offset / (jnp.asarray(count, jnp.float32) + offset))
  elif name == "cosine":
    decay = optax.cosine_decay_schedule(learning_rate, decay_steps,
                                        alpha=end / learning_rate if learning_rate else 0.0)
  elif name == "linear":
    decay = optax.linear_schedule(learning_rate, end, decay_steps)
  else:
    raise ValueError(f"schedule.name={name!r}: expected one of {SCHEDULES}")
  if warmup <= 0:
    return decay
  warm = optax.linear_schedule(0.0, learning_rate, warmup)
  return optax.join_schedules([warm, decay], [warmup])


def trainable_mask(params: Any, freeze: str, train_only: str = "") -> Any:
  """A bool tree: True where the parameter is trained.

  Args:
    params: the parameter tree.
    freeze: regex; parameters whose path matches it (re.search) are frozen.
    train_only: regex; if set, only parameters whose path matches it train.
      The word "peft" means the parameter-efficient tuning parameters (LoRA,
      prompt, prefix, adapters: `model_config.PEFT_PARAMS`).
  """
  if train_only == "peft":
    train_only = model_config.PEFT_PARAMS
  def trainable(name):
    if train_only and not re.search(train_only, name):
      return False
    return not (freeze and re.search(freeze, name))
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: _by_name(path, leaf, trainable, "freeze / train_only"), params)


def _by_name(path, leaf, predicate, what: str) -> bool:
  """`predicate(name)` of a parameter, judged on its per-layer names when its layers are scanned.

  A regex written for unscanned paths (`decoder/layers/7/...`) then means the
  same with scan_layers; one that splits a stacked array (some layers yes,
  some no) cannot be honoured, and is refused rather than silently ignored.
  """
  num = leaf.shape[0] if getattr(leaf, "ndim", 0) else 0
  names = (num and paths.unscanned_names(path, num)) or [paths.name(path)]
  verdicts = {bool(predicate(n)) for n in names}
  if len(verdicts) > 1:
    raise errors.UsageError(
        f"the {what} regexes select some layers of {paths.name(path)} but not others, which"
        " scanned layers (one stacked array) cannot do", where="model.scan_layers",
        fix="set --config.model.overrides.scan_layers=False, or select whole stacks")
  return verdicts.pop()


def split_trainable(params: Any, mask: Any) -> tuple[Any, Any]:
  """Two trees with the same structure: trainable leaves (else None) and frozen ones."""
  trainable = jax.tree.map(lambda p, m: p if m else None, params, mask)
  frozen = jax.tree.map(lambda p, m: None if m else p, params, mask)
  return trainable, frozen


def merge_trainable(trainable: Any, frozen: Any) -> Any:
  return jax.tree.map(lambda t, f: f if t is None else t, trainable, frozen,
                      is_leaf=lambda x: x is None)


def _decay_mask(params: Any, exclude: str) -> Any:
  def decays(path, p):
    if p is None:
      return False
    return _by_name(path, p, lambda name: not (exclude and re.search(exclude, name)),
                    "weight_decay_exclude")
  return jax.tree_util.tree_map_with_path(decays, params,
                                          is_leaf=lambda x: x is None)


def make_optimizer(cfg: Mapping[str, Any], schedule_cfg: Mapping[str, Any],
                   total_steps: int, *, skip_nonfinite: bool = False
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax chain for the `optimizer` config and its learning-rate schedule.

  The chain applies global-norm clipping first (if `grad_clip_norm` > 0),
  then the optimizer; with `skip_nonfinite`, `optax.apply_if_finite` drops
  updates whose gradients are not finite (its state counts them).
  """
  lr = make_schedule(schedule_cfg, float(cfg["learning_rate"]), total_steps)
  name = cfg["name"]
  if name == "adafactor":
    tx = optax.adafactor(
        learning_rate=lr,
        min_dim_size_to_factor=int(cfg["min_dim_size_to_factor"]),
        decay_rate=float(cfg["decay_rate"]),
        multiply_by_parameter_scale=bool(cfg["multiply_by_parameter_scale"]),
        clipping_threshold=(float(cfg["clipping_threshold"])
                            if cfg["clipping_threshold"] else None),
        momentum=float(cfg["momentum"]) if cfg["momentum"] else None,
        weight_decay_rate=(float(cfg["weight_decay"]) if cfg["weight_decay"] else None),
        weight_decay_mask=lambda p: _decay_mask(p, cfg["weight_decay_exclude"]),
        eps=float(cfg["adafactor_eps"]),
        factored=bool(cfg["factored"]))
  elif name == "adamw":
    tx = optax.adamw(
        learning_rate=lr, b1=float(cfg["b1"]), b2=float(cfg["b2"]),
        eps=float(cfg["eps"]), weight_decay=float(cfg["weight_decay"]),
        mask=lambda p: _decay_mask(p, cfg["weight_decay_exclude"]))
  elif name == "sgd":
    tx = optax.sgd(lr, momentum=float(cfg["momentum"]) if cfg["momentum"] else None)
  else:
    raise ValueError(f"optimizer.name={name!r}: expected one of {OPTIMIZERS}")
  parts = []
  if float(cfg["grad_clip_norm"]) > 0:
    parts.append(optax.clip_by_global_norm(float(cfg["grad_clip_norm"])))
  parts.append(tx)
  tx = optax.chain(*parts)
  if skip_nonfinite:
    # A large limit: the trainer reports the count; it never gives up silently.
    tx = optax.apply_if_finite(tx, max_consecutive_errors=1_000_000)
  return tx, lr


def skipped_steps(opt_state: Any) -> jax.Array:
  """The number of updates apply_if_finite has skipped (0 if not wrapped)."""
  if isinstance(opt_state, optax.ApplyIfFiniteState):
    return opt_state.total_notfinite
  return jnp.zeros((), jnp.int32)


def opt_state_shardings(tx: optax.GradientTransformation, abstract_opt_state: Any,
                        abstract_params: Any, param_shardings: Any,
                        replicated: Any) -> Any:
  """Shardings for the optimizer state: a leaf shaped like its parameter shares its sharding.

  Factored Adafactor statistics (row / column vectors) and counters are small
  and replicated.
  """
  def per_param(leaf, param, sharding_):
    if leaf is None or isinstance(leaf, optax.MaskedNode):
      return leaf
    if param is not None and tuple(leaf.shape) == tuple(param.shape):
      return sharding_
    return replicated

  return optax.tree_utils.tree_map_params(
      tx, per_param, abstract_opt_state, abstract_params, param_shardings,
      transform_non_params=lambda leaf: None if leaf is None else replicated,
      is_leaf=lambda x: x is None or isinstance(x, optax.MaskedNode))
