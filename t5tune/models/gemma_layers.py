"""Gemma 2's building blocks in Flax NNX: (1 + w) RMS norm, rotary positions, grouped-query attention with soft-capping.

Axis legend as in t5.py, plus:
  N key/value heads (grouped-query attention)   G query heads per key/value head (H = N * G)

Projections are `layers.Dense` (LoRA included) and the MLP is `layers.MLP`
(gated, tanh-GELU), built from a `t5gemma_config.StackConfig`. Key/value
kernels name their output axis `kv_joined` (N * K, which may be narrower
than the query's `joined_kv`); `t5tune.sharding` maps both.

Numerics follow transformers' T5Gemma: norm statistics in float32 with the
scale stored as an offset from 1; rotary angles in float32 over the two
halves of each head (not interleaved pairs); scores scaled by
query_pre_attn_scalar**-0.5, then soft-capped (c * tanh(s / c)), then masked.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5tune.models import layers
from t5tune.models.t5gemma_config import StackConfig

Array = jax.Array
_NEG_INF = -1e10  # as layers.Attention: finite, so a fully masked row stays finite


class RMSNorm(nnx.Module):
  """Gemma's RMS norm: x / rms(x) * (1 + scale), the scale starting at zero."""

  def __init__(self, dim: int, config: StackConfig):
    init = nnx.with_partitioning(nnx.initializers.zeros, ("embed",))
    self.scale = nnx.Param(init(jax.random.key(0), (dim,), jnp.dtype(config.param_dtype)))
    self.eps = config.layer_norm_epsilon
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, x_BLD: Array) -> Array:
    x32 = x_BLD.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (y * (1.0 + self.scale[...].astype(jnp.float32))).astype(self.dtype)


def rotate(x_BTNK: Array, pos_BT: Array, theta: float) -> Array:
  """Rotary position embedding of heads x [B, T, N, K] at positions [B or 1, T]."""
  k = x_BTNK.shape[-1]
  inv_freq = 1.0 / (theta ** (jnp.arange(0, k, 2, dtype=jnp.float32) / k))
  angles_BTk = pos_BT.astype(jnp.float32)[..., None] * inv_freq
  angles_BTK = jnp.concatenate([angles_BTk, angles_BTk], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(angles_BTK), jnp.sin(angles_BTK)
  half = k // 2
  rotated = jnp.concatenate([-x_BTNK[..., half:], x_BTNK[..., :half]], axis=-1)
  x32 = x_BTNK.astype(jnp.float32)
  return (x32 * cos + rotated.astype(jnp.float32) * sin).astype(x_BTNK.dtype)


class Attention(nnx.Module):
  """Grouped-query attention: H query heads share N key/value heads in groups of G.

  Self-attention rotates queries and keys by their positions; cross-attention
  (`rotary=False`) projects keys/values from the encoder's width
  (`config.kv_d_model`) and uses no positions.
  """

  def __init__(self, config: StackConfig, *, rngs: nnx.Rngs, role: str, rotary: bool):
    d, kv_d = config.d_model, (config.d_model if rotary else config.kv_d_model)
    self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
    self.head_dim = config.head_dim
    q_inner, kv_inner = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
    kw = dict(rngs=rngs)
    self.q = layers.Dense(d, q_inner, ("embed", "joined_kv"), d ** -0.5, config,
                          role=f"{role}.q", **kw)
    self.k = layers.Dense(kv_d, kv_inner, ("embed", "kv_joined"), kv_d ** -0.5, config,
                          role=f"{role}.k", **kw)
    self.v = layers.Dense(kv_d, kv_inner, ("embed", "kv_joined"), kv_d ** -0.5, config,
                          role=f"{role}.v", **kw)
    self.o = layers.Dense(q_inner, d, ("joined_kv", "embed"), q_inner ** -0.5, config,
                          role=f"{role}.o", **kw)
    self.rotary = rotary
    self.theta = config.rope_theta
    self.scale = config.query_pre_attn_scalar ** -0.5
    self.softcap = config.attn_logit_softcapping
    self.dtype = jnp.dtype(config.dtype)
    self.dropout = nnx.Dropout(config.dropout_rate)

  def project_kv(self, x_BSD: Array, pos_BS: Array | None = None) -> tuple[Array, Array]:
    """Keys and values [B, N, S, K] (keys rotated to `pos_BS` in self-attention): what a cache holds."""
    b, s, _ = x_BSD.shape
    k_BSNK = self.k(x_BSD).reshape(b, s, self.num_kv_heads, self.head_dim)
    v_BSNK = self.v(x_BSD).reshape(b, s, self.num_kv_heads, self.head_dim)
    if self.rotary:
      k_BSNK = rotate(k_BSNK, pos_BS, self.theta)
    return jnp.transpose(k_BSNK, (0, 2, 1, 3)), jnp.transpose(v_BSNK, (0, 2, 1, 3))

  def attend(self, x_BTD: Array, k_BNSK: Array, v_BNSK: Array, mask_BHTS: Array,
             pos_BT: Array | None = None, rngs: nnx.Rngs | None = None) -> Array:
    """Attention of x's queries over keys/values in `project_kv`'s layout; mask [B|1, 1, T, S]."""
    b, t, _ = x_BTD.shape
    n, g = self.num_kv_heads, self.num_heads // self.num_kv_heads
    q_BTHK = self.q(x_BTD).reshape(b, t, self.num_heads, self.head_dim)
    if self.rotary:
      q_BTHK = rotate(q_BTHK, pos_BT, self.theta)
    # Query head h = i * G + j reads key/value head i (transformers' repeat_kv order).
    q_BTNGK = q_BTHK.reshape(b, t, n, g, self.head_dim)
    scores = jnp.einsum("btngk,bnsk->bngts", q_BTNGK, k_BNSK.astype(self.dtype),
                        preferred_element_type=jnp.float32) * self.scale
    if self.softcap:
      scores = self.softcap * jnp.tanh(scores / self.softcap)
    scores = jnp.where(mask_BHTS[:, :, None], scores, _NEG_INF)
    probs = self.dropout(jax.nn.softmax(scores, axis=-1), deterministic=rngs is None, rngs=rngs)
    out_BTNGK = jnp.einsum("bngts,bnsk->btngk", probs.astype(self.dtype),
                           v_BNSK.astype(self.dtype))
    return self.o(out_BTNGK.reshape(b, t, self.num_heads * self.head_dim))
