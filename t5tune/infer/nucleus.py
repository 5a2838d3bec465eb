"""Temperature, top-k and top-p (nucleus) filtering of a step's logits, per row, without a sort.

    filtered_BV = nucleus.filter_logits(logits_BV, temperature_B, top_k_B, top_p_B)

Every row keeps the tokens whose logit is at least a threshold and the rest
become -inf, as transformers' `TopKLogitsWarper` and `TopPLogitsWarper` do
(temperature first, then top-k, then top-p over the probabilities that top-k
left): top-k's threshold is the k-th largest logit, top-p's the smallest
logit that must stay for the kept probability mass to reach top_p (a token is
kept while the mass of the tokens above it is below top_p; the most likely
token is always kept). Ties with a threshold are kept.

Each threshold is found by bisection over the 2^32 float32 values in order
(32 rounds of a compare and a count or sum over the vocabulary) instead of a
sort: XLA's CPU sort of [16, 32128] logits took 79 ms, a sampled step of
t5_1_1_small about 100 ms, against 1.6 ms for the bisection (no maintained
library offers a per-row, variable-k/p threshold search for jax). The
thresholds are exact values of the row, so the kept set is the one a sort
gives; only the mass compared with top_p is summed in another order.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

_SIGN = np.uint32(0x80000000)  # a numpy scalar: importing this module starts no backend


def order_keys(x: jax.Array) -> jax.Array:
  """uint32 keys in the order of the float32 values (-0.0 and 0.0 alike)."""
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32) + 0.0, jnp.uint32)
  return jnp.where(bits >= _SIGN, ~bits, bits | _SIGN)


def largest_key(keys_BV: jax.Array, holds: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """uint32 [B]: per row, the largest key t for which `holds(keys_BV >= t)` is true.

  `holds(mask_BV) -> bool [B]` must be true for the all-true mask (t = 0) and
  may only turn false as t grows (fewer tokens kept).
  """
  b = keys_BV.shape[0]
  lo, hi = jnp.zeros((b,), jnp.uint32), jnp.full((b,), 0xFFFFFFFF, jnp.uint32)

  def halve(_, bounds):
    lo, hi = bounds
    span = hi - lo
    mid = lo + (span >> 1) + (span & 1)  # the upper middle, without overflow
    ok = holds(keys_BV >= mid[:, None])
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  return jax.lax.fori_loop(0, 32, halve, (lo, hi))[0]


def filter_logits(logits_BV: jax.Array, temperature, top_k, top_p) -> jax.Array:
  """Temperature-scaled logits with everything outside each row's top-k / top-p set at -inf.

  `temperature`, `top_k`, `top_p` are scalars or one value per row; a row with
  temperature 0 is left unscaled (it is decoded greedily), top_k 0 and top_p 1
  switch that filter off.
  """
  b, v = logits_BV.shape
  row = lambda x, dtype: jnp.broadcast_to(jnp.asarray(x, dtype), (b,))
  temperature_B, top_k_B, top_p_B = row(temperature, jnp.float32), row(top_k, jnp.int32), row(top_p, jnp.float32)
  logits_BV = logits_BV / jnp.where(temperature_B > 0, temperature_B, 1.0)[:, None]

  def threshold(logits_BV):
    keys_BV = order_keys(logits_BV)
    k_B = jnp.where(top_k_B > 0, jnp.minimum(top_k_B, v), v)
    kth_B = largest_key(keys_BV, lambda kept_BV: jnp.sum(kept_BV, axis=-1) >= k_B)
    logits_BV = jnp.where(keys_BV < kth_B[:, None], -jnp.inf, logits_BV)
    probs_BV = jax.nn.softmax(logits_BV, axis=-1)
    mass = lambda kept_BV: jnp.sum(jnp.where(kept_BV, probs_BV, 0.0), axis=-1) >= top_p_B
    # top_p 1 keeps everything (a float sum of all the mass may fall short of 1.0); the most
    # likely token stays whatever top_p is (top_p -> 0 is greedy).
    cut_B = jnp.where(top_p_B >= 1.0, 0, largest_key(keys_BV, mass))
    cut_B = jnp.minimum(cut_B, jnp.max(keys_BV, axis=-1))
    return jnp.where(keys_BV < cut_B[:, None], -jnp.inf, logits_BV)

  # Skipped when no row filters.
  filtering = jnp.any(top_k_B > 0) | jnp.any(top_p_B < 1.0)
  return jax.lax.cond(filtering, threshold, lambda x: x, logits_BV)
