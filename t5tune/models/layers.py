"""T5's building blocks in Flax NNX: RMS norm, dense (with LoRA), relative position bias, attention, MLP, adapter.

Axis legend for shape suffixes:
  B batch            L encoder (input) length     T decoder (target) length
  S key length       D d_model                    H heads
  K d_kv (per head)  F d_ff                       V vocabulary
  N relative-position buckets

Parameters carry logical axis names (`vocab`, `embed`, `joined_kv`, `mlp`,
`relpos_buckets`, `heads`); `t5tune.sharding` maps them to mesh axes.

Numerics follow the original T5: no 1/sqrt(d_kv) scaling of attention scores
(it is folded into the query initialisation), RMS layer norm without mean
subtraction and with float32 statistics, and T5's bucketing of relative
positions.
"""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from t5tune import sharding
from t5tune import xla_cpu
from t5tune.models.config import T5Config

# Dropout's random bits through jax's unrolled Threefry on the CPU (the same
# bits, ~8x faster than the rolled default; see t5tune/xla_cpu.py).
xla_cpu.unroll_threefry()

_NEG_INF = -1e10  # added to masked scores; finite so fully-masked rows stay finite
_ONE_HOT_MAX = 2 ** 25  # elements of the relative-position one-hot (128 MiB in float32)

Array = jax.Array


def param(rngs: nnx.Rngs, shape, names, stddev: float, dtype) -> nnx.Param:
  """A normally initialised parameter whose axes carry the logical `names`."""
  init = nnx.with_partitioning(nnx.initializers.normal(stddev), names)
  return nnx.Param(init(rngs.params(), shape, jnp.dtype(dtype)))


def dot_last(x: Array, w_IO: Array) -> Array:
  """x [..., I] @ w [I, O] as one 2-D dot over the flattened leading axes.

  XLA's CPU backend runs a 3-D [B, L, D] x [D, F] dot (and above all its
  backward) with transposed layouts and layout copies; flattening to
  [B * L, D] first gives the same numbers ~30% faster on a train step.
  """
  y = jnp.dot(x.reshape(-1, x.shape[-1]), w_IO)
  return y.reshape(x.shape[:-1] + (w_IO.shape[-1],))


class RMSNorm(nnx.Module):
  """T5 layer norm: scale only, no mean subtraction, statistics in float32."""

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    del rngs
    init = nnx.with_partitioning(nnx.initializers.ones, ("embed",))
    self.scale = nnx.Param(init(jax.random.key(0), (config.d_model,),
                                jnp.dtype(config.param_dtype)))
    self.eps = config.layer_norm_epsilon
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, x_BLD: Array) -> Array:
    x32 = x_BLD.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


class Dense(nnx.Module):
  """A bias-free projection with logically named kernel axes, optionally with LoRA.

  With LoRA the output is x @ W + (alpha / r) * (x @ A) @ B, where B starts at
  zero so a freshly wrapped model computes exactly what it did before.
  """

  def __init__(self, d_in: int, d_out: int, names: tuple[str, str], stddev: float,
               config: T5Config, *, rngs: nnx.Rngs, role: str = ""):
    self.kernel = param(rngs, (d_in, d_out), names, stddev, config.param_dtype)
    self.dtype = jnp.dtype(config.dtype)
    self.lora_rank = 0
    if config.lora_rank and role and re.search(config.lora_targets, role):
      r = config.lora_rank
      self.lora_rank = r
      self.lora_scale = config.lora_alpha / r
      self.lora_a = param(rngs, (d_in, r), (names[0], "lora_rank"), d_in ** -0.5,
                           config.param_dtype)
      zeros = nnx.with_partitioning(nnx.initializers.zeros, ("lora_rank", names[1]))
      self.lora_b = nnx.Param(zeros(rngs.params(), (r, d_out), jnp.dtype(config.param_dtype)))

  def __call__(self, x: Array) -> Array:
    x = x.astype(self.dtype)
    y = dot_last(x, self.kernel[...].astype(self.dtype))
    if self.lora_rank:
      low = dot_last(x, self.lora_a[...].astype(self.dtype))
      y = y + self.lora_scale * dot_last(low, self.lora_b[...].astype(self.dtype))
    return y

  def merged_kernel(self) -> Array:
    """The kernel with the LoRA update folded in (for export and fast decoding)."""
    if not self.lora_rank:
      return self.kernel[...]
    return fold_lora(self.kernel[...], self.lora_a[...], self.lora_b[...], self.lora_scale)


def fold_lora(kernel: Array, lora_a: Array, lora_b: Array, scale: float) -> Array:
  """`kernel + scale * lora_a @ lora_b`: a LoRA update folded into its kernel.

  The one fold, for export (`Dense.merged_kernel`) and for continual stages
  that freeze the earlier stages' LoRA into the kernels.
  """
  return kernel + scale * (lora_a @ lora_b)


def relative_position_bucket(relative_position: Array, *, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> Array:
  """T5's bucketing of (key position - query position).

  Small distances get a bucket each; larger ones share logarithmically wider
  buckets up to `max_distance`. Bidirectional (encoder) splits the buckets
  between keys before and after the query; causal (decoder) only looks back.
  """
  rel = relative_position
  bucket = jnp.zeros_like(rel)
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (rel > 0).astype(rel.dtype) * num_buckets
    distance = jnp.abs(rel)
  else:
    distance = jnp.maximum(-rel, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # log-spaced buckets for distances in [max_exact, max_distance); computed in
  # float32 and truncated toward zero, as the reference implementation does.
  scaled = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
            / math.log(max_distance / max_exact) * (num_buckets - max_exact))
  large = jnp.minimum(max_exact + scaled.astype(rel.dtype), num_buckets - 1)
  return bucket + jnp.where(is_small, distance, large)


@jax.custom_vjp
def add_row_shared(x_BHTS: Array, shared_1HTS: Array) -> Array:
  """x + shared, where `shared` has one row broadcast over x's batch.

  The same sum as `x + shared`; only the gradient of `shared` differs in how
  it is computed: rows added pairwise (halving the batch each time, slices
  XLA fuses into one pass) instead of XLA's reduce over the leading axis,
  which its CPU backend runs ~25x slower (37 ms vs 1.5 ms on
  [8, 6, 512, 512]; 0.4 s of a 4 s t5_1_1_small step at batch 8 of 512/128
  tokens, once per layer). A dot with a vector of ones was slower again
  (9.1 ms vs 6.2 ms with the producing fusion): its operand is laid out for
  the dot.
  """
  return x_BHTS + shared_1HTS


def _add_row_shared_fwd(x_BHTS, shared_1HTS):
  return x_BHTS + shared_1HTS, jnp.zeros((), shared_1HTS.dtype)  # only its dtype is kept


def _add_row_shared_bwd(like, g_BHTS):
  g = g_BHTS
  while g.shape[0] > 1:
    half = g.shape[0] // 2
    odd = g[2 * half:]
    g = g[:half] + g[half:2 * half]
    if odd.shape[0]:
      g = g.at[0].add(odd[0])
  return g_BHTS, g.astype(like.dtype)


add_row_shared.defvjp(_add_row_shared_fwd, _add_row_shared_bwd)


class RelativePositionBias(nnx.Module):
  """Learned per-head scalar bias for each relative-position bucket."""

  def __init__(self, config: T5Config, *, bidirectional: bool, rngs: nnx.Rngs):
    self.embedding = param(rngs, (config.relative_attention_num_buckets, config.num_heads),
                            ("relpos_buckets", "heads"), 1.0, config.param_dtype)
    self.bidirectional = bidirectional
    self.num_buckets = config.relative_attention_num_buckets
    self.max_distance = config.relative_attention_max_distance

  def __call__(self, q_pos_BT: Array, k_pos_BS: Array) -> Array:
    """Bias [B, H, T, S] for query positions q_pos and key positions k_pos."""
    rel_BTS = k_pos_BS[:, None, :] - q_pos_BT[:, :, None]
    buckets = relative_position_bucket(
        rel_BTS, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
        max_distance=self.max_distance)
    table_HN = self.embedding[...].astype(jnp.float32).T
    if buckets.shape[0] == 1 and buckets.size * self.num_buckets <= _ONE_HOT_MAX:
      # One row of positions (shared by the batch): a dot with the buckets'
      # one-hot rows. Its gradient is a dot too; a gather's is a scatter,
      # whose updates XLA's CPU backend transposes to [T*S, H] in a strided
      # pass over every layer's cotangent (0.19 s of a 3.1 s t5_1_1_small
      # step at batch 8 of 512/128 tokens; the dot path: ~0.01 s).
      one_hot_NX = (jnp.arange(self.num_buckets)[:, None] == buckets.reshape(1, -1))
      bias_HX = jnp.dot(table_HN, one_hot_NX.astype(jnp.float32))
      return bias_HX.reshape((1, table_HN.shape[0]) + buckets.shape[1:])
    return jnp.moveaxis(jnp.take(table_HN, buckets, axis=1), 0, 1)


class Attention(nnx.Module):
  """Multi-head attention without score scaling; q/k/v/o kernels fuse heads and d_kv.

  `role` ("attention", "self_attention" or "cross_attention") names the
  projections for LoRA targeting ("cross_attention.v"). With prefix tuning,
  learned keys and values are put before the real ones; every query may
  attend to them and they carry no position bias.
  """

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs, role: str = "attention"):
    inner = config.num_heads * config.d_kv
    d = config.d_model
    kw = dict(rngs=rngs)
    # T5's initialisation: the query carries the 1/sqrt(d_kv) that the score
    # computation leaves out.
    self.q = Dense(d, inner, ("embed", "joined_kv"), (d * config.d_kv) ** -0.5, config,
                   role=f"{role}.q", **kw)
    self.k = Dense(d, inner, ("embed", "joined_kv"), d ** -0.5, config, role=f"{role}.k", **kw)
    self.v = Dense(d, inner, ("embed", "joined_kv"), d ** -0.5, config, role=f"{role}.v", **kw)
    self.o = Dense(inner, d, ("joined_kv", "embed"), inner ** -0.5, config, role=f"{role}.o", **kw)
    self.num_heads = config.num_heads
    self.d_kv = config.d_kv
    self.dropout = nnx.Dropout(config.dropout_rate)
    self.dtype = jnp.dtype(config.dtype)
    self.prefix_length = config.prefix_length
    if config.prefix_length:
      shape = (config.prefix_length, inner)
      self.prefix_k = param(rngs, shape, ("prompt", "joined_kv"), 1.0, config.param_dtype)
      self.prefix_v = param(rngs, shape, ("prompt", "joined_kv"), 1.0, config.param_dtype)

  def _split(self, x_BLI: Array) -> Array:
    b, l, _ = x_BLI.shape
    return x_BLI.reshape(b, l, self.num_heads, self.d_kv)

  def _heads_first(self, x_BSI: Array) -> Array:
    return jnp.transpose(self._split(x_BSI), (0, 2, 1, 3))

  def project_kv(self, x_BSD: Array) -> tuple[Array, Array]:
    """Keys and values [B, H, S, K] of a key/value sequence (cached in decoding).

    Heads before positions is the layout the score and weighted-sum dots
    consume, so a decoding step reads the cached keys/values without a
    transpose or copy.
    """
    return self._heads_first(self.k(x_BSD)), self._heads_first(self.v(x_BSD))

  def _with_prefix(self, k_BHSK, v_BHSK, bias_BHTS, mask_BHTS):
    b = k_BHSK.shape[0]
    p = self.prefix_length

    def heads_first(prefix_PI, like_BHSK):
      prefix_HPK = jnp.transpose(prefix_PI.reshape(p, self.num_heads, self.d_kv), (1, 0, 2))
      return jnp.broadcast_to(prefix_HPK.astype(like_BHSK.dtype),
                              (b, self.num_heads, p, self.d_kv))

    k_BHSK = jnp.concatenate([heads_first(self.prefix_k[...], k_BHSK), k_BHSK], axis=2)
    v_BHSK = jnp.concatenate([heads_first(self.prefix_v[...], v_BHSK), v_BHSK], axis=2)
    bias_BHTS = jnp.asarray(bias_BHTS)
    if bias_BHTS.ndim == 4:
      bias_BHTS = jnp.pad(bias_BHTS, ((0, 0), (0, 0), (0, 0), (p, 0)))
    if mask_BHTS is not None:
      mask_BHTS = jnp.pad(mask_BHTS, ((0, 0), (0, 0), (0, 0), (p, 0)), constant_values=True)
    return k_BHSK, v_BHSK, bias_BHTS, mask_BHTS

  def attend(self, q_BTD: Array, k_BHSK: Array, v_BHSK: Array, bias_BHTS: Array,
             mask_BHTS: Array | None, rngs: nnx.Rngs | None) -> Array:
    """Attention of the queries of q_BTD over keys/values in `project_kv`'s [B, H, S, K] layout."""
    if self.prefix_length:
      k_BHSK, v_BHSK, bias_BHTS, mask_BHTS = self._with_prefix(k_BHSK, v_BHSK, bias_BHTS,
                                                               mask_BHTS)
    q_BTHK = self._split(self.q(q_BTD))
    scores_BHTS = jnp.einsum("bthk,bhsk->bhts", q_BTHK, k_BHSK.astype(self.dtype),
                             preferred_element_type=jnp.float32)
    bias_BHTS = jnp.asarray(bias_BHTS)
    if (bias_BHTS.ndim == 4 and bias_BHTS.shape[0] == 1 < scores_BHTS.shape[0]
        and bias_BHTS.shape[1:] == scores_BHTS.shape[1:]):
      scores_BHTS = add_row_shared(scores_BHTS, bias_BHTS)  # one bias for every row
    else:
      scores_BHTS = scores_BHTS + bias_BHTS
    if mask_BHTS is not None:
      scores_BHTS = jnp.where(mask_BHTS, scores_BHTS, _NEG_INF)
    probs_BHTS = jax.nn.softmax(scores_BHTS, axis=-1)
    probs_BHTS = self.dropout(probs_BHTS, deterministic=rngs is None, rngs=rngs)
    out_BTHK = jnp.einsum("bhts,bhsk->bthk", probs_BHTS.astype(self.dtype),
                          v_BHSK.astype(self.dtype))
    b, t = out_BTHK.shape[:2]
    return self.o(out_BTHK.reshape(b, t, self.num_heads * self.d_kv))

  def __call__(self, q_BTD: Array, kv_BSD: Array, bias_BHTS: Array,
               mask_BHTS: Array | None, rngs: nnx.Rngs | None = None) -> Array:
    k, v = self.project_kv(kv_BSD)
    return self.attend(q_BTD, k, v, bias_BHTS, mask_BHTS, rngs)


class MLP(nnx.Module):
  """T5 feed-forward: ReLU (v1.0) or gated GELU/SiLU (v1.1, Flan-T5, UL2)."""

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    d, f = config.d_model, config.d_ff
    if config.is_gated:
      self.wi_0 = Dense(d, f, ("embed", "mlp"), d ** -0.5, config, rngs=rngs, role="mlp.wi_0")
      self.wi_1 = Dense(d, f, ("embed", "mlp"), d ** -0.5, config, rngs=rngs, role="mlp.wi_1")
    else:
      self.wi = Dense(d, f, ("embed", "mlp"), d ** -0.5, config, rngs=rngs, role="mlp.wi")
    self.wo = Dense(f, d, ("mlp", "embed"), f ** -0.5, config, rngs=rngs, role="mlp.wo")
    self.is_gated = config.is_gated
    self.activation = config.activation
    self.dropout = nnx.Dropout(config.dropout_rate)

  def _act(self, x: Array) -> Array:
    if self.activation == "relu":
      return jax.nn.relu(x)
    if self.activation == "gelu":
      return jax.nn.gelu(x, approximate=True)  # HF's "gelu_new"
    return jax.nn.silu(x)

  def __call__(self, x_BLD: Array, rngs: nnx.Rngs | None = None) -> Array:
    if self.is_gated:
      h_BLF = self._act(self.wi_0(x_BLD)) * self.wi_1(x_BLD)
    else:
      h_BLF = self._act(self.wi(x_BLD))
    h_BLF = sharding.with_logical_constraint(h_BLF, ("batch", "length", "mlp"))
    h_BLF = self.dropout(h_BLF, deterministic=rngs is None, rngs=rngs)
    return self.wo(h_BLF)


class Adapter(nnx.Module):
  """A bottleneck adapter (down, ReLU, up) added residually after a layer's MLP block.

  The up-projection starts at zero, so adding adapters leaves the output unchanged.
  """

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    d, a = config.d_model, config.adapter_dim
    self.adapter_down = param(rngs, (d, a), ("embed", "adapter"), d ** -0.5, config.param_dtype)
    zeros = nnx.with_partitioning(nnx.initializers.zeros, ("adapter", "embed"))
    self.adapter_up = nnx.Param(zeros(rngs.params(), (a, d), jnp.dtype(config.param_dtype)))
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, x_BLD: Array) -> Array:
    h = jax.nn.relu(dot_last(x_BLD, self.adapter_down[...].astype(self.dtype)))
    return x_BLD + dot_last(h, self.adapter_up[...].astype(self.dtype))
