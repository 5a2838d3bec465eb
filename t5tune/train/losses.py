"""Token cross-entropy for the decoder targets, with the normalisers researchers use.

The loss is returned as a *sum* over tokens divided by a normaliser that only
depends on the batch (never on parameters). That makes gradient accumulation
over micro-batches exact: each micro-batch contributes `sum_i / normaliser`
with the normaliser of the whole batch, and the sum of those is the loss of
the whole batch.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

# How the summed token loss is divided:
#   "tokens":    by the number of target tokens (loss weights) in the batch.
#   "sequences": each sequence's mean over its tokens, summed over sequences,
#                divided by the number of sequences that have targets.
#   "constant":  by a fixed factor (t5x / FLAN fine-tuning use
#                loss_normalizing_factor = 233472 = batch 128 * targets 114 * 16,
#                which keeps the gradient scale independent of padding).
NORMALIZATIONS = ("tokens", "sequences", "constant")


def normalizer(loss_weights_BT: jax.Array, normalization: str,
               constant: float = 1.0) -> jax.Array:
  """The denominator of the batch loss; depends on the batch only."""
  weights = loss_weights_BT.astype(jnp.float32)
  if normalization == "tokens":
    return jnp.maximum(jnp.sum(weights), 1.0)
  if normalization == "sequences":
    return jnp.maximum(jnp.sum(jnp.sum(weights, axis=-1) > 0), 1.0)
  if normalization == "constant":
    return jnp.asarray(constant, jnp.float32)
  raise ValueError(
      f"loss normalization {normalization!r}: expected one of {NORMALIZATIONS}"
      " (config key train.loss_normalization)")


def cross_entropy(logits_BTV: jax.Array,
                  targets_BT: jax.Array,
                  loss_weights_BT: jax.Array,
                  *,
                  normalization: str = "tokens",
                  constant: float = 1.0,
                  z_loss: float = 0.0,
                  label_smoothing: float = 0.0,
                  denominator: jax.Array | None = None,
                  ) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  """Weighted token cross-entropy (+ z-loss); returns (loss, summed statistics).

  Args:
    logits_BTV: float logits.
    targets_BT: int target ids.
    loss_weights_BT: 0/1 (or fractional) weight of each target token.
    normalization: one of NORMALIZATIONS.
    constant: the factor for normalization="constant".
    z_loss: coefficient of the log(Z)^2 penalty (PaLM/t5x use 1e-4).
    label_smoothing: mass spread uniformly over the vocabulary.
    denominator: the normaliser to use instead of this batch's own, e.g. the
      one of the whole batch when this is a micro-batch.

  Returns:
    The scalar loss to differentiate, and sums over this (micro-)batch that
    add up across micro-batches: `loss_sum` (cross-entropy, no z-loss),
    `z_loss_sum`, `correct` (weighted count of targets with the top logit), `weight_sum`
    (target tokens).
  """
  logits = logits_BTV.astype(jnp.float32)
  weights = loss_weights_BT.astype(jnp.float32)
  vocab = logits.shape[-1]
  log_z_BT = jax.nn.logsumexp(logits, axis=-1)
  # -log p(target) as log Z - logit[target]: no [B, T, V] log-probabilities
  # (nor their gradient) are materialised; the same float32 value.
  target_logit_BT = jnp.take_along_axis(logits, targets_BT[..., None], axis=-1)[..., 0]
  if label_smoothing:
    # Smoothed targets as in t5x: 1 - eps on the target, eps / (V - 1) on each other id.
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    log_probs_BTV = logits - log_z_BT[..., None]
    target_lp_BT = target_logit_BT - log_z_BT
    token_loss_BT = (-(confidence - low) * target_lp_BT
                     - low * jnp.sum(log_probs_BTV, axis=-1))
    # Minus the entropy of the smoothed targets, so that predicting them
    # exactly costs 0; a constant, without gradient.
    min_entropy = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low))
    token_loss_BT = token_loss_BT - min_entropy
  else:
    token_loss_BT = log_z_BT - target_logit_BT
  z_BT = z_loss * jnp.square(log_z_BT)

  if normalization == "sequences":
    # Each sequence's tokens are weighted by 1/(its number of tokens).
    per_seq_B = jnp.maximum(jnp.sum(weights, axis=-1, keepdims=True), 1.0)
    scaled = weights / per_seq_B
  else:
    scaled = weights
  if denominator is None:
    denominator = normalizer(loss_weights_BT, normalization, constant)
  loss = jnp.sum((token_loss_BT + z_BT) * scaled) / denominator
  # Correct when the target's logit is the largest: a max, cheaper than an
  # argmax over the vocabulary; differs only on exact ties with another id.
  correct_BT = (target_logit_BT >= jnp.max(logits, axis=-1)).astype(jnp.float32)
  stats = {
      "loss_sum": jnp.sum(token_loss_BT * weights),
      "z_loss_sum": jnp.sum(z_BT * weights),
      "correct": jnp.sum(correct_BT * weights),
      "weight_sum": jnp.sum(weights),
  }
  return loss, stats
