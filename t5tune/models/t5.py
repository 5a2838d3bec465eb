"""The T5 encoder-decoder in Flax NNX: layers and stacks, the Transformer and its decoding step.

The KV cache `decode_step` reads and writes is `t5tune.models.cache.DecodeCache`
(also reachable as `t5.DecodeCache`).

Axis legend for shape suffixes:
  B batch            L encoder (input) length     T decoder (target) length
  S key length       D d_model                    H heads
  K d_kv (per head)  F d_ff                       V vocabulary
  N relative-position buckets

Building blocks (norm, dense, attention, MLP, position bias) live in
`t5tune.models.layers`. Parameters carry logical axis names;
`t5tune.sharding` maps them to mesh axes. A model built under
`sharding.use_mesh(mesh)` is sharded as it is created.

Numerics follow the original T5: relative position bias computed once per
stack and shared by all its layers (or, with
`T5Config.relative_attention_per_layer` as in umT5, one table per layer), and
for tied embeddings (T5 v1.0) the decoder output scaled by d_model**-0.5
before the shared embedding projects it to the vocabulary
(`T5Config.scale_decoder_outputs`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from t5tune import sharding
from t5tune.models import builder
from t5tune.models import layers
from t5tune.models import masks
from t5tune.models import paths
from t5tune.models import skeleton
from t5tune.models import scan
from t5tune.models.cache import DecodeCache
from t5tune.models.config import T5Config

Array = jax.Array

# Re-exported: callers check `isinstance(module, t5.Dense)` to find LoRA projections.
Dense = layers.Dense


def _add_mlp_block(layer: nnx.Module, config: T5Config, rngs: nnx.Rngs) -> None:
  """The part every layer shares: the MLP with its norm, dropout and (optional) adapter."""
  layer.mlp_norm = layers.RMSNorm(config, rngs=rngs)
  layer.mlp = layers.MLP(config, rngs=rngs)
  layer.dropout = nnx.Dropout(config.dropout_rate)
  if config.adapter_dim:
    layer.adapter = layers.Adapter(config, rngs=rngs)
  layer.has_adapter = bool(config.adapter_dim)


class EncoderLayer(nnx.Module):

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    if config.relative_attention_per_layer:
      self.relpos_bias = layers.RelativePositionBias(config, bidirectional=True, rngs=rngs)
    self.attention_norm = layers.RMSNorm(config, rngs=rngs)
    self.attention = layers.Attention(config, rngs=rngs, role="attention")
    _add_mlp_block(self, config, rngs)

  def __call__(self, x_BLD, bias_BHLL, mask_BHLL, rngs=None):
    det = rngs is None
    h = self.attention_norm(x_BLD)
    x_BLD = x_BLD + self.dropout(self.attention(h, h, bias_BHLL, mask_BHLL, rngs),
                                 deterministic=det, rngs=rngs)
    x_BLD = x_BLD + self.dropout(self.mlp(self.mlp_norm(x_BLD), rngs),
                                 deterministic=det, rngs=rngs)
    if self.has_adapter:
      x_BLD = self.adapter(x_BLD)
    return sharding.with_logical_constraint(x_BLD, ("batch", "length", "act_embed"))


class DecoderLayer(nnx.Module):

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    if config.relative_attention_per_layer:
      self.relpos_bias = layers.RelativePositionBias(config, bidirectional=False, rngs=rngs)
    self.self_attention_norm = layers.RMSNorm(config, rngs=rngs)
    self.self_attention = layers.Attention(config, rngs=rngs, role="self_attention")
    self.cross_attention_norm = layers.RMSNorm(config, rngs=rngs)
    self.cross_attention = layers.Attention(config, rngs=rngs, role="cross_attention")
    _add_mlp_block(self, config, rngs)

  def __call__(self, y_BTD, self_bias_BHTS, self_mask_BHTS, cross_kv, cross_mask_BHTS,
               rngs=None, cache_kv=None, index=None, layer_index=None):
    """One decoder layer; returns (y, (k, v)) where (k, v) is the self-attention memory.

    `cross_kv` is the encoder's (k, v) [B, H, L, K]. Teacher forcing leaves
    `cache_kv` None; incremental decoding passes the layer's cached
    (k, v) [B, H, T_max, K] and the position `index` where y's keys are
    written in place (no copy of the cache). Scanned layers pass the whole
    stacked cache [layers, B, H, T_max, K] and their `layer_index` instead;
    the memory returned is then the updated stack.
    """
    det = rngs is None
    h = self.self_attention_norm(y_BTD)
    k, v = self.self_attention.project_kv(h)
    memory = (k, v)
    if cache_kv is not None and layer_index is None:
      ck, cv = cache_kv
      k = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), index, axis=2)
      v = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), index, axis=2)
      memory = (k, v)
    elif cache_kv is not None:
      # Only the new position is written into the stack, in place.
      at = (layer_index, 0, 0, index, 0)
      ck, cv = (jax.lax.dynamic_update_slice(c, x.astype(c.dtype)[None], at)
                for c, x in zip(cache_kv, (k, v)))
      k, v = ck[layer_index], cv[layer_index]
      memory = (ck, cv)
    y_BTD = y_BTD + self.dropout(
        self.self_attention.attend(h, k, v, self_bias_BHTS, self_mask_BHTS, rngs),
        deterministic=det, rngs=rngs)
    h = self.cross_attention_norm(y_BTD)
    ek, ev = cross_kv
    zero_bias = jnp.zeros((), jnp.float32)  # T5 has no position bias in cross-attention
    y_BTD = y_BTD + self.dropout(
        self.cross_attention.attend(h, ek, ev, zero_bias, cross_mask_BHTS, rngs),
        deterministic=det, rngs=rngs)
    y_BTD = y_BTD + self.dropout(self.mlp(self.mlp_norm(y_BTD), rngs),
                                 deterministic=det, rngs=rngs)
    if self.has_adapter:
      y_BTD = self.adapter(y_BTD)
    return sharding.with_logical_constraint(y_BTD, ("batch", "length", "act_embed")), memory


def _make_layers(cls, config: T5Config, n: int, rngs: nnx.Rngs):
  """A stack's layers: an nnx.List of n modules, or one stacked module with scan_layers."""
  if config.scan_layers:
    return scan.stacked(lambda r: cls(config, rngs=r), n, rngs)
  return nnx.List([cls(config, rngs=rngs) for _ in range(n)])


# Segment and position helpers, shared with every family (see t5tune.models.masks).
PROMPT_SEGMENT = masks.PROMPT_SEGMENT
_segment_mask = masks.segment_mask
_positions = masks.positions
_segments = masks.segments


class _Stack(nnx.Module):
  """What the encoder and decoder stacks share: the layers, the shared position table, norm, dropout."""

  def __init__(self, config: T5Config, layer_cls, num_layers: int, *, bidirectional: bool,
               rngs: nnx.Rngs):
    self.per_layer_bias = config.relative_attention_per_layer
    if not self.per_layer_bias:
      self.relpos_bias = layers.RelativePositionBias(config, bidirectional=bidirectional, rngs=rngs)
    # `layers` is paths.LAYERS: parameter paths read encoder|decoder/layers/<i>/...
    # (.../layers/... with a leading layer axis when scanned)
    self.layers = _make_layers(layer_cls, config, num_layers, rngs)
    self.final_norm = layers.RMSNorm(config, rngs=rngs)
    self.dropout = nnx.Dropout(config.dropout_rate)
    self.remat_policy = config.remat_policy
    self.scanned = config.scan_layers
    self.num_layers = num_layers


class Encoder(_Stack):

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    super().__init__(config, EncoderLayer, config.num_encoder_layers, bidirectional=True, rngs=rngs)

  def __call__(self, x_BLD, positions_BL, segments_BL, rngs=None):
    # The shared table's bias is computed once, outside the layers (scanned or not).
    bias_BHLL = None if self.per_layer_bias else self.relpos_bias(positions_BL, positions_BL)
    mask_BHLL = _segment_mask(segments_BL, segments_BL)
    x_BLD = self.dropout(x_BLD, deterministic=rngs is None, rngs=rngs)
    per_layer = self.per_layer_bias

    def call(layer, x, bias, rngs):
      if per_layer:
        bias = layer.relpos_bias(positions_BL, positions_BL)
      return layer(x, bias, mask_BHLL, rngs)

    call = scan.remat(call, self.remat_policy)
    if self.scanned:
      x_BLD = scan.run(lambda layer, x, key, bias: call(layer, x, bias, scan.layer_rngs(key)),
                       self.layers, x_BLD, scan.layer_keys(rngs, self.num_layers), (bias_BHLL,))
    else:
      for layer in self.layers:
        x_BLD = call(layer, x_BLD, bias_BHLL, rngs)
    x_BLD = self.final_norm(x_BLD)
    return self.dropout(x_BLD, deterministic=rngs is None, rngs=rngs)


class Decoder(_Stack):

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    super().__init__(config, DecoderLayer, config.num_decoder_layers, bidirectional=False, rngs=rngs)

  def self_bias(self, layer, q_pos_BT, k_pos_BS):
    """The self-attention position bias [B, H, T, S] that `layer` uses."""
    table = layer.relpos_bias if self.per_layer_bias else self.relpos_bias
    return table(q_pos_BT, k_pos_BS)

  def _finish(self, y_BTD, rngs):
    y_BTD = self.final_norm(y_BTD)
    return self.dropout(y_BTD, deterministic=rngs is None, rngs=rngs)

  def __call__(self, y_BTD, positions_BT, segments_BT, enc_BLD, enc_segments_BL, rngs=None,
               enc_repeats: int = 1):
    """`enc_repeats` n: decoder row i reads encoder row i // n (the keys and values are
    projected once per encoder row, then repeated)."""
    t = y_BTD.shape[1]
    if enc_repeats > 1:
      enc_segments_BL = jnp.repeat(enc_segments_BL, enc_repeats, axis=0)
    shared_bias_BHTT = None if self.per_layer_bias else self.relpos_bias(positions_BT, positions_BT)
    causal_TT = jnp.tril(jnp.ones((t, t), dtype=bool))
    self_mask_BHTT = _segment_mask(segments_BT, segments_BT) & causal_TT[None, None]
    cross_mask_BHTL = _segment_mask(segments_BT, enc_segments_BL)
    y_BTD = self.dropout(y_BTD, deterministic=rngs is None, rngs=rngs)

    def call(layer, y, enc, bias_BHTT, rngs):
      if self.per_layer_bias:
        bias_BHTT = self.self_bias(layer, positions_BT, positions_BT)
      cross_kv = layer.cross_attention.project_kv(enc)
      if enc_repeats > 1:
        cross_kv = tuple(jnp.repeat(x, enc_repeats, axis=0) for x in cross_kv)
      return layer(y, bias_BHTT, self_mask_BHTT, cross_kv, cross_mask_BHTL, rngs)[0]

    call = scan.remat(call, self.remat_policy)
    if self.scanned:
      y_BTD = scan.run(
          lambda layer, y, key, enc, bias: call(layer, y, enc, bias, scan.layer_rngs(key)),
          self.layers, y_BTD, scan.layer_keys(rngs, self.num_layers),
          (enc_BLD, shared_bias_BHTT))
    else:
      for layer in self.layers:
        y_BTD = call(layer, y_BTD, enc_BLD, shared_bias_BHTT, rngs)
    return self._finish(y_BTD, rngs)


class Transformer(skeleton.EncoderDecoder):
  """The T5 encoder-decoder. `model(enc_tokens, dec_tokens)` returns float32 logits [B, T, V]."""

  def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
    self.config = config
    self.token_embedder = nnx.Embed(
        config.vocab_size, config.d_model,
        embedding_init=nnx.with_partitioning(nnx.initializers.normal(1.0), ("vocab", "embed")),
        dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)
    self.encoder = Encoder(config, rngs=rngs)
    self.decoder = Decoder(config, rngs=rngs)
    if not config.tie_word_embeddings:
      self.lm_head = layers.Dense(config.d_model, config.vocab_size, ("embed", "vocab"),
                                  config.d_model ** -0.5, config, rngs=rngs, role="lm_head")
    if config.prompt_length:
      # Prompt tuning: learned input embeddings, unit-variance like the vocabulary's.
      self.prompt = layers.param(rngs, (config.prompt_length, config.d_model),
                                 ("prompt", "embed"), 1.0, config.param_dtype)

  def _embed(self, tokens):
    return self.token_embedder(tokens.astype(jnp.int32))

  def _logits(self, y_BTD: Array) -> Array:
    cfg = self.config
    if cfg.scale_decoder_outputs:
      y_BTD = y_BTD * (cfg.d_model ** -0.5)
    if cfg.tie_word_embeddings:
      emb_VD = self.token_embedder.embedding[...].astype(jnp.dtype(cfg.dtype))
      b, t, d = y_BTD.shape
      # As a 2-D dot for the CPU's sake (see layers.dot_last).
      logits = jax.lax.dot_general(y_BTD.reshape(b * t, d), emb_VD, (((1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.float32).reshape(b, t, -1)
    else:
      logits = self.lm_head(y_BTD).astype(jnp.float32)
    return sharding.with_logical_constraint(logits, ("batch", "length", "vocab"))

  def encoder_segments(self, encoder_input_tokens, encoder_segment_ids=None) -> Array:
    """Segment ids of the encoder output, prompt-tuning positions (if any) first."""
    seg = _segments(encoder_input_tokens, encoder_segment_ids, self.config.pad_token_id)
    p = self.config.prompt_length
    if p:
      prompt = jnp.full((seg.shape[0], p), PROMPT_SEGMENT, jnp.int32)
      seg = jnp.concatenate([prompt, seg], axis=1)
    return seg

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None,
             *, dropout_rng=None, rngs=None):
    """Encoder output [B, L, D] ([B, prompt_length + L, D] with prompt tuning)."""
    rngs = rngs if rngs is not None else self._rngs(dropout_rng)
    tokens = encoder_input_tokens
    x = self._embed(tokens)
    pos = _positions(tokens, encoder_positions)
    p = self.config.prompt_length
    if p:
      b = x.shape[0]
      x = jnp.concatenate([jnp.broadcast_to(self.prompt[...].astype(x.dtype), (b, p, x.shape[2])),
                           x], axis=1)
      # The prompt sits just before position 0 of every (packed) example.
      prompt_pos = jnp.broadcast_to(jnp.arange(-p, 0, dtype=jnp.int32), (pos.shape[0], p))
      pos = jnp.concatenate([prompt_pos, pos], axis=1)
    return self.encoder(x, pos, self.encoder_segments(tokens, encoder_segment_ids), rngs)

  def decode(self, enc_BLD, encoder_input_tokens, decoder_input_tokens, *,
             encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None,
             dropout_rng=None, rngs=None, enc_repeats: int = 1):
    """Teacher-forced decoder logits [B, T, V] given the encoder output.

    `enc_repeats` n > 1: the encoder output and tokens have B / n rows and
    decoder row i reads encoder row i // n, e.g. the n answer options of one
    question. The cross-attention keys and values are then projected once
    per question, not once per option (rank classification over 4 options:
    a quarter of that work).
    """
    rngs = rngs if rngs is not None else self._rngs(dropout_rng)
    dec = decoder_input_tokens
    enc_seg = self.encoder_segments(encoder_input_tokens, encoder_segment_ids)
    if decoder_segment_ids is None:
      # Unpacked: every decoder position (including the start token, which is
      # the pad id) belongs to segment 1; loss weights mask the padding.
      dec_seg = jnp.ones(dec.shape, jnp.int32)
    else:
      dec_seg = decoder_segment_ids.astype(jnp.int32)
    y = self.decoder(self._embed(dec), _positions(dec, decoder_positions), dec_seg,
                     enc_BLD, enc_seg, rngs, enc_repeats=enc_repeats)
    return self._logits(y)

  # -- incremental decoding -------------------------------------------------

  def init_cache(self, enc_BLD: Array, encoder_input_tokens: Array, max_decode_len: int,
                 encoder_segment_ids: Array | None = None) -> DecodeCache:
    """Projects the encoder output to every layer's cross-attention keys/values once."""
    cfg = self.config
    b = enc_BLD.shape[0]
    dt = jnp.dtype(cfg.dtype)
    cross_mask = self.encoder_segments(encoder_input_tokens, encoder_segment_ids) != 0
    shape = (b, cfg.num_heads, max_decode_len, cfg.d_kv)
    if cfg.scan_layers:
      ks, vs = scan.map_layers(lambda layer, enc: layer.cross_attention.project_kv(enc),
                               self.decoder.layers, enc_BLD)
      zeros = jnp.zeros((cfg.num_decoder_layers,) + shape, dt)
      return DecodeCache(self_k=zeros, self_v=zeros, cross_k=ks.astype(dt),
                         cross_v=vs.astype(dt), cross_mask=cross_mask,
                         index=jnp.zeros((), jnp.int32), stacked=True)
    ks, vs = [], []
    for layer in paths.layer_modules(self.decoder):
      k, v = layer.cross_attention.project_kv(enc_BLD)
      ks.append(k)
      vs.append(v)
    zeros = tuple(jnp.zeros(shape, dt) for _ in ks)
    return DecodeCache(
        self_k=zeros, self_v=zeros,
        cross_k=tuple(k.astype(dt) for k in ks), cross_v=tuple(v.astype(dt) for v in vs),
        cross_mask=cross_mask, index=jnp.zeros((), jnp.int32))

  def decode_step(self, token_B: Array, cache: DecodeCache) -> tuple[Array, DecodeCache]:
    """Logits [B, V] for the next token after feeding `token_B` at position `cache.index`."""
    t_max = cache.max_decode_len
    i = cache.index
    y_B1D = self._embed(token_B[:, None])
    q_pos = jnp.full((1, 1), i, jnp.int32)  # the same for every row: bias [1, H, 1, T_max]
    k_pos = jnp.arange(t_max, dtype=jnp.int32)[None]
    shared_bias = None if self.decoder.per_layer_bias else self.decoder.relpos_bias(q_pos, k_pos)
    self_mask = (jnp.arange(t_max) <= i)[None, None, None, :]
    cross_mask = cache.cross_mask[:, None, None, :]
    if cache.stacked:
      def step(layer, carry, cross_kv):
        y, ck, cv, n = carry
        bias = self.decoder.self_bias(layer, q_pos, k_pos) if shared_bias is None else shared_bias
        y, (ck, cv) = layer(y, bias, self_mask, cross_kv, cross_mask, None,
                            cache_kv=(ck, cv), index=i, layer_index=n)
        return y, ck, cv, n + 1

      y_B1D, new_k, new_v, _ = scan.run(
          step, self.decoder.layers, (y_B1D, cache.self_k, cache.self_v, jnp.zeros((), jnp.int32)),
          (cache.cross_k, cache.cross_v))
      logits = self._logits(self.decoder._finish(y_B1D, None))[:, 0]
      return logits, cache.replace(self_k=new_k, self_v=new_v, index=i + 1)
    new_k, new_v = [], []
    for n, layer in enumerate(paths.layer_modules(self.decoder)):
      self_bias = (self.decoder.self_bias(layer, q_pos, k_pos) if self.decoder.per_layer_bias
                   else shared_bias)
      y_B1D, (k, v) = layer(y_B1D, self_bias, self_mask, (cache.cross_k[n], cache.cross_v[n]),
                            cross_mask, None, cache_kv=(cache.self_k[n], cache.self_v[n]),
                            index=i)
      new_k.append(k)
      new_v.append(v)
    logits = self._logits(self.decoder._finish(y_B1D, None))[:, 0]
    cache = cache.replace(self_k=tuple(new_k), self_v=tuple(new_v), index=i + 1)
    return logits, cache


def build_model(config: T5Config, mesh: jax.sharding.Mesh | None = None,
                seed: int = 0) -> Transformer:
  """A randomly initialised T5 whose parameters are created sharded on `mesh` (`builder.build_model`)."""
  return builder.build_model(Transformer, config, mesh, seed)


def abstract_model(config: T5Config, mesh: jax.sharding.Mesh | None = None) -> Transformer:
  """The T5 with `ShapeDtypeStruct` parameters (with shardings): nothing is allocated."""
  return builder.abstract_model(Transformer, config, mesh)
