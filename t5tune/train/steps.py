"""The pure train and eval steps, and the shardings they are jitted with.

The train state is a plain dict pytree, so orbax and jax see nothing unusual:

  {"step": int32[], "params": nested dict of arrays (all parameters),
   "opt_state": optax state of the trainable parameters only, "rng": uint32[2],
   "reg": the loss terms' aux trees (only with terms that keep some)}

`train_step(state, batch) -> (state, metrics)` is one pure function; the
trainer jits it once with in/out shardings and donates the state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

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
  """How the task loss is computed: normalisation, z-loss and label smoothing (the config's `train` keys)."""
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


class LossTerm:
  """A term added to the training objective (L2-SP, EWC, distillation: see regularizers.py).

  A term is a plug-in: the train step knows no term by name. It declares

    name       the metric it is logged as (train/<name>), apart from `loss`;
               the values of terms sharing a name add up
    aux        {key: dtype or None}: trees shaped and sharded like the
               trainable parameters that it keeps in `state["reg"][key]`
               (None: the parameter's dtype); terms naming a key share it
    init_aux(trainable, abstract) -> {key: tree}: its aux trees at the start
               of a run, from the starting trainable parameters (`abstract`:
               state["reg"]'s shapes and shardings, e.g. to restore from disk)

  and one or both of

    logits_term(aux, logits_BTV, batch, apply, denominator) -> scalar, added
               to each (micro-)batch's objective; `apply(trainable)` gives the
               logits of other trainable values (the frozen ones merged in,
               no dropout) on the same inputs, `denominator` the task loss's
    params_term(aux, trainable) -> scalar, added once per step (not per
               micro-batch), its gradient added to the task gradient.
  """

  name: str = ""
  aux: Mapping[str, Any] = {}
  logits_term: Callable[..., jax.Array] | None = None
  params_term: Callable[[dict, Any], jax.Array] | None = None

  def init_aux(self, trainable: Any, abstract: dict) -> dict:
    """The term's aux trees at the start of a run (none by default)."""
    return {}


def _add(values: dict, name: str, value: jax.Array) -> None:
  values[name] = values[name] + value if name in values else value


def make_train_step(graphdef: Any, tx: optax.GradientTransformation, mask: Any,
                    schedule: optax.Schedule, *, loss: LossOptions,
                    microbatches: int = 1, dropout: bool = False,
                    terms: Sequence[LossTerm] = ()
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
    terms: `LossTerm`s added to the objective, their aux state in
      state["reg"]; each is logged under its name, while `loss` stays the
      task loss.
  """
  logit_terms = [t for t in terms if t.logits_term is not None]
  param_terms = [t for t in terms if t.params_term is not None]

  def params_objective(trainable, reg):
    total, values = jnp.zeros((), jnp.float32), {}
    for term in param_terms:
      value = term.params_term(reg, trainable)
      total = total + value
      _add(values, term.name, value)
    return total, values

  def train_step(state, batch):
    params = state["params"]
    trainable, frozen = optimizers.split_trainable(params, mask)
    reg = state.get("reg", {})
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    # One normaliser for the whole batch, so micro-batch losses add up exactly.
    denominator = losses.normalizer(batch["decoder_loss_weights"], loss.normalization,
                                    loss.constant)

    def loss_fn(trainable_, mb, rng):
      def apply(other, rng_=None):
        return _logits(graphdef, optimizers.merge_trainable(other, frozen), mb, rng_)
      logits = apply(trainable_, rng if dropout else None)
      value_, stats_ = losses.cross_entropy(
          logits, mb["decoder_target_tokens"], mb["decoder_loss_weights"],
          normalization=loss.normalization, constant=loss.constant,
          z_loss=loss.z_loss, label_smoothing=loss.label_smoothing,
          denominator=denominator)
      total, stats_ = value_, {**stats_, "task_loss": value_}
      for term in logit_terms:
        value = term.logits_term(reg, logits, mb, apply, denominator)
        total = total + value
        _add(stats_, term.name, value)
      return total, stats_

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if microbatches == 1:
      (_, stats), grads = grad_fn(trainable, batch, step_rng)
    else:
      mbs = _microbatches(batch, microbatches)

      def body(carry, xs):
        i, mb = xs
        (v, s), g = grad_fn(trainable, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (v, s, g)), None

      (value, stats), grads = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          grad_fn, trainable, jax.tree.map(lambda x: x[0], mbs), step_rng))
      (_, stats, grads), _ = jax.lax.scan(
          body, (value, stats, grads), (jnp.arange(microbatches), mbs))

    term_values = {t.name: stats[t.name] for t in logit_terms}
    if param_terms:
      (_, values), term_grads = jax.value_and_grad(params_objective, has_aux=True)(
          trainable, reg)
      grads = jax.tree.map(jnp.add, grads, term_grads)
      for name, value in values.items():
        _add(term_values, name, value)
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
    value = stats["task_loss"]  # `loss` is the task loss, whatever the terms add
    tokens = jnp.maximum(stats["weight_sum"], 1.0)
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
        **term_values,
    }
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
  """The sharding of each array of a batch: its batch axis over ('data', 'fsdp')."""
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
