"""The pure train and eval steps, and the shardings they are jitted with.

The train state is a plain dict pytree, so orbax and jax see nothing unusual:

  {"step": int32[], "params": nested dict of arrays (all parameters),
   "opt_state": optax state of the trainable parameters only, "rng": uint32[2]}

`train_step(state, batch) -> (state, metrics)` is one pure function; the
trainer jits it once with in/out shardings and donates the state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding

from t5tune import sharding
from t5tune.train import losses
from t5tune.train import optimizers

_MODEL_INPUTS = ("encoder_segment_ids", "decoder_segment_ids",
                 "encoder_positions", "decoder_positions")


@dataclasses.dataclass(frozen=True)
class LossOptions:
  normalization: str = "tokens"
  constant: float = 1.0
  z_loss: float = 0.0
  label_smoothing: float = 0.0


def _logits(graphdef, params, batch, dropout_rng):
  model = nnx.merge(graphdef, params)
  extra = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
  return model(batch["encoder_input_tokens"], batch["decoder_input_tokens"],
               dropout_rng=dropout_rng, **extra)


def _microbatches(batch: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
  """[B, ...] -> [n, B/n, ...], example b going to micro-batch b % n.

  Taking every n-th example (rather than contiguous blocks) keeps each
  device's rows on that device: the B/n axis stays sharded over the batch axes.
  """
  def split(x):
    b = x.shape[0]
    y = x.reshape(b // n, n, *x.shape[1:]).swapaxes(0, 1)
    return sharding.with_logical_constraint(y, (None, "batch") + (None,) * (x.ndim - 1))
  return {k: split(v) for k, v in batch.items()}


def make_train_step(graphdef: Any, tx: optax.GradientTransformation, mask: Any,
                    schedule: optax.Schedule, *, loss: LossOptions,
                    microbatches: int = 1, dropout: bool = False,
                    penalty: Callable[[Any, dict], jax.Array] | None = None,
                    distill: Callable[..., jax.Array] | None = None
                    ) -> Callable[[dict, dict], tuple[dict, dict]]:
  """Builds `train_step(state, batch) -> (state, metrics)`.

  Args:
    graphdef: the model's nnx GraphDef (from `nnx.split(model, nnx.Param)`).
    tx: the optimizer, over the trainable parameters (see optimizers.split_trainable).
    mask: bool tree over all parameters, True = trainable.
    schedule: learning rate as a function of the step (for logging).
    loss: loss options.
    microbatches: gradient accumulation over this many micro-batches.
    dropout: whether to pass a dropout key to the model.
    penalty: `penalty(trainable, state["reg"]) -> scalar` added to the
      objective once per step (not per micro-batch), e.g. a
      `regularizers.Penalty`; logged as `penalty`, apart from `loss`.
    distill: `distill(logits, teacher_logits, loss_weights, denominator) ->
      scalar` added to each (micro-)batch's objective, the teacher being the
      parameters `state["reg"]["anchor"]` (trainable part) with the frozen
      ones, e.g. a `regularizers.Distill`; logged as `distill`, apart from `loss`.
  """

  def train_step(state, batch):
    params = state["params"]
    trainable, frozen = optimizers.split_trainable(params, mask)
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    # One normaliser for the whole batch, so micro-batch losses add up exactly.
    denominator = losses.normalizer(batch["decoder_loss_weights"], loss.normalization,
                                    loss.constant)

    # The frozen teacher: the stage's starting weights (frozen ones never change).
    teacher = (optimizers.merge_trainable(state["reg"]["anchor"], frozen)
               if distill is not None else None)

    def loss_fn(trainable_, mb, rng):
      logits = _logits(graphdef, optimizers.merge_trainable(trainable_, frozen), mb,
                       rng if dropout else None)
      value_, stats_ = losses.cross_entropy(
          logits, mb["decoder_target_tokens"], mb["decoder_loss_weights"],
          normalization=loss.normalization, constant=loss.constant,
          z_loss=loss.z_loss, label_smoothing=loss.label_smoothing,
          denominator=denominator)
      if distill is None:
        return value_, stats_
      # Teacher logits on the fly, on the same inputs, without dropout or gradient.
      teacher_logits = jax.lax.stop_gradient(_logits(graphdef, teacher, mb, None))
      kd = distill(logits, teacher_logits, mb["decoder_loss_weights"], denominator)
      return value_ + kd, {**stats_, "task_loss": value_, "distill": kd}

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if microbatches == 1:
      (value, stats), grads = grad_fn(trainable, batch, step_rng)
    else:
      mbs = _microbatches(batch, microbatches)

      def body(carry, xs):
        i, mb = xs
        (v, s), g = grad_fn(trainable, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (v, s, g)), None

      (value, stats), grads = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          grad_fn, trainable, jax.tree.map(lambda x: x[0], mbs), step_rng))
      (value, stats, grads), _ = jax.lax.scan(
          body, (value, stats, grads), (jnp.arange(microbatches), mbs))

    extra = {}
    if penalty is not None:
      pen, pen_grads = jax.value_and_grad(penalty)(trainable, state["reg"])
      grads = jax.tree.map(jnp.add, grads, pen_grads)
      extra = {"penalty": pen}
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], trainable)
    new_trainable = optax.apply_updates(trainable, updates)
    new_state = {
        "step": state["step"] + 1,
        "params": optimizers.merge_trainable(new_trainable, frozen),
        "opt_state": opt_state,
        "rng": state["rng"],
    }
    if "reg" in state:
      new_state["reg"] = state["reg"]
    tokens = jnp.maximum(stats["weight_sum"], 1.0)
    if distill is not None:
      extra["distill"] = stats["distill"]
      value = stats["task_loss"]  # `loss` stays the task loss, as without distillation
    metrics = {
        "loss": value,
        "token_loss": stats["loss_sum"] / tokens,
        "z_loss": stats["z_loss_sum"] / tokens,
        "accuracy": stats["correct"] / tokens,
        "target_tokens": stats["weight_sum"],
        "grad_norm": grad_norm,
        "learning_rate": schedule(state["step"]),
        "finite": jnp.isfinite(value) & jnp.isfinite(grad_norm),
        "skipped_steps": optimizers.skipped_steps(opt_state),
    }
    if "penalty" in extra:
      metrics["penalty"] = extra["penalty"]
    if "distill" in extra:
      metrics["distill"] = extra["distill"]
    return new_state, metrics

  return train_step


def make_eval_step(graphdef: Any, *, loss: LossOptions) -> Callable[[Any, dict], dict]:
  """Builds `eval_step(params, batch) -> summed statistics` (add them over batches)."""

  def eval_step(params, batch):
    logits = _logits(graphdef, params, batch, None)
    _, stats = losses.cross_entropy(
        logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
        normalization=loss.normalization, constant=loss.constant,
        z_loss=loss.z_loss, label_smoothing=loss.label_smoothing)
    return {k: stats[k] for k in ("loss_sum", "correct", "weight_sum")}

  return eval_step


def batch_shardings(batch: Mapping[str, Any], mesh) -> dict[str, NamedSharding]:
  return {k: sharding.batch_sharding(mesh, v.ndim) for k, v in batch.items()}


def state_shardings(tx: optax.GradientTransformation, abstract_params: Any,
                    param_shardings: Any, mask: Any, mesh) -> tuple[dict, dict]:
  """(shardings, abstract state with those shardings) of the train state."""
  rep = sharding.replicated(mesh)
  trainable, _ = optimizers.split_trainable(abstract_params, mask)
  trainable_sh, _ = optimizers.split_trainable(param_shardings, mask)
  abstract_opt = jax.eval_shape(tx.init, trainable)
  opt_sh = optimizers.opt_state_shardings(tx, abstract_opt, trainable, trainable_sh, rep)
  shardings = {"step": rep, "params": param_shardings, "opt_state": opt_sh, "rng": rep}
  abstract = {
      "step": jax.ShapeDtypeStruct((), jnp.int32),
      "params": abstract_params,
      "opt_state": abstract_opt,
      "rng": jax.eval_shape(lambda: jax.random.PRNGKey(0)),
  }
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return shardings, abstract


def init_state(tx: optax.GradientTransformation, params: Any, mask: Any, shardings: dict,
               seed: int) -> dict:
  """A fresh train state (step 0) with `params`, placed on `shardings`."""
  params = jax.device_put(params, shardings["params"])
  trainable, _ = optimizers.split_trainable(params, mask)
  opt_state = jax.jit(tx.init, out_shardings=shardings["opt_state"])(trainable)
  return {
      "step": jax.device_put(jnp.zeros((), jnp.int32), shardings["step"]),
      "params": params,
      "opt_state": opt_state,
      "rng": jax.device_put(jax.random.PRNGKey(seed), shardings["rng"]),
  }
