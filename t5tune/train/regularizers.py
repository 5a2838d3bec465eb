"""What holds continual tuning to earlier stages: L2-SP, EWC (and its diagonal Fisher), distillation.

    L2-SP (Li et al. 2018):   l2sp / 2 * sum_i (theta_i - anchor_i)^2
    EWC (Kirkpatrick et al. 2017), online form (Schwarz et al. 2018):
                              ewc / 2 * sum_i F_i (theta_i - anchor_i)^2

over the trainable parameters. The anchor is the stage's starting weights
(the previous stage's final ones); F is the sum of the diagonal Fishers
estimated at the end of each earlier stage (online EWC with decay 1, so one
anchor and one Fisher are kept instead of one per stage). The empirical
Fisher of a stage is the mean over its examples of the squared gradient of
the example's summed target log-likelihood, computed one example at a time
(`lax.scan`), so memory stays at one gradient whatever the batch.

Each is a `steps.LossTerm` (`L2SP`, `EWC`, `Distill`; `stage_terms` builds
those of non-zero weight), passed to the trainer as a plug-in: the anchor
and the Fisher are the terms' aux state. The penalties are added once per
step and logged as train/penalty, apart from the task loss.

Distillation (Hinton et al. 2015; in continual learning "Learning without
Forgetting", Li & Hoiem 2017) pulls the model's target-token distributions
toward the previous stage's model, the teacher:

    distill * T^2 * sum_tokens w * KL(softmax(z_teacher / T) || softmax(z / T)) / denominator

over the batch's target positions (w the loss weights, the denominator the
task loss's normaliser). The teacher is the stage's starting weights (the
anchor plus the frozen parameters, which never change), frozen; its logits
are computed inside the train step on the same inputs, never stored. The
T^2 keeps the gradient's scale independent of the temperature. It is
logged as train/distill, apart from the task loss.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from t5tune.train import optimizers
from t5tune.train import steps


def _sum(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return sum((jnp.sum(x) for x in leaves), jnp.zeros((), jnp.float32))


def _diff_sq(trainable: Any, anchor: Any) -> Any:
  return jax.tree.map(lambda p, a: jnp.square(p.astype(jnp.float32) - a.astype(jnp.float32)),
                      trainable, anchor)


class _Anchored(steps.LossTerm):
  """A term holding on to the run's starting trainable parameters (state["reg"]["anchor"])."""

  aux = {"anchor": None}

  def init_aux(self, trainable: Any, abstract: dict) -> dict:
    return {"anchor": trainable}


@dataclasses.dataclass(frozen=True)
class L2SP(_Anchored):
  """l2sp / 2 * sum_i (theta_i - anchor_i)^2, once per step; logged as train/penalty."""
  weight: float
  name = "penalty"

  def params_term(self, aux: dict, trainable: Any) -> jax.Array:
    return 0.5 * self.weight * _sum(_diff_sq(trainable, aux["anchor"]))


@dataclasses.dataclass(frozen=True)
class EWC(_Anchored):
  """ewc / 2 * sum_i F_i (theta_i - anchor_i)^2, once per step; logged as train/penalty.

  `fisher(abstract)` gives the summed Fisher of the earlier stages with the
  shapes and shardings of `abstract` (float32, like the trainable parameters).
  """
  weight: float
  fisher: Callable[[Any], Any]
  name = "penalty"
  aux = {"anchor": None, "fisher": jnp.float32}

  def init_aux(self, trainable: Any, abstract: dict) -> dict:
    return {"anchor": trainable, "fisher": self.fisher(abstract["fisher"])}

  def params_term(self, aux: dict, trainable: Any) -> jax.Array:
    return 0.5 * self.weight * _sum(jax.tree.map(
        jnp.multiply, aux["fisher"], _diff_sq(trainable, aux["anchor"])))


@dataclasses.dataclass(frozen=True)
class Distill(_Anchored):
  """Distillation from the run's starting model (the anchor plus the frozen parameters); train/distill."""
  weight: float
  temperature: float = 1.0
  name = "distill"

  def logits_term(self, aux: dict, logits_BTV: jax.Array, batch: dict, apply: Callable,
                  denominator: jax.Array) -> jax.Array:
    # Teacher logits on the fly, on the same inputs, without dropout or gradient.
    teacher_logits_BTV = jax.lax.stop_gradient(apply(aux["anchor"]))
    return self.weight * kl_to_teacher(logits_BTV, teacher_logits_BTV,
                                       batch["decoder_loss_weights"],
                                       temperature=self.temperature, denominator=denominator)


def stage_terms(*, l2sp: float = 0.0, ewc: float = 0.0, fisher: Callable[[Any], Any] | None = None,
                distill: float = 0.0, temperature: float = 1.0) -> list[steps.LossTerm]:
  """The terms of the given weights; a weight of 0 adds none (the step is then plain fine-tuning)."""
  terms = []
  if l2sp:
    terms.append(L2SP(l2sp))
  if ewc:
    terms.append(EWC(ewc, fisher))
  if distill:
    terms.append(Distill(distill, temperature))
  return terms


def kl_to_teacher(logits_BTV: jax.Array, teacher_logits_BTV: jax.Array,
                  loss_weights_BT: jax.Array, *, temperature: float,
                  denominator: jax.Array) -> jax.Array:
  """T^2 * sum_tokens w * KL(teacher || student) at temperature T, over `denominator`."""
  t = jnp.float32(temperature)
  log_p_BTV = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits_BTV).astype(jnp.float32) / t)
  log_q_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32) / t)
  kl_BT = jnp.sum(jnp.exp(log_p_BTV) * (log_p_BTV - log_q_BTV), axis=-1)
  return t * t * jnp.sum(kl_BT * loss_weights_BT.astype(jnp.float32)) / denominator


def make_fisher_fn(graphdef: Any, mask: Any) -> Callable[[dict, dict], Any]:
  """`fisher_sum(params, batch) -> tree` of summed squared per-example gradients (trainable only).

  Divide the sum over batches by the number of examples (rows with targets).
  """
  def example_loglik(trainable, frozen, example):
    model = nnx.merge(graphdef, optimizers.merge_trainable(trainable, frozen))
    batch = jax.tree.map(lambda x: x[None], example)
    logits = model(batch["encoder_input_tokens"], batch["decoder_input_tokens"])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target = jnp.take_along_axis(logp, batch["decoder_target_tokens"][..., None], axis=-1)[..., 0]
    return jnp.sum(target * batch["decoder_loss_weights"])

  grad_fn = jax.grad(example_loglik)

  def fisher_sum(params, batch):
    trainable, frozen = optimizers.split_trainable(params, mask)
    keys = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
            "decoder_loss_weights")
    examples = {k: batch[k] for k in keys}

    def body(acc, example):
      g = grad_fn(trainable, frozen, example)
      return jax.tree.map(lambda a, x: a + jnp.square(x.astype(jnp.float32)), acc, g), None

    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), trainable)
    total, _ = jax.lax.scan(body, zeros, examples)
    return total

  return fisher_sum
