"""The T5Gemma encoder-decoder in Flax NNX: Gemma 2 layers on T5's encoder-decoder skeleton.

The same contract as `t5.Transformer` (`family.EncoderDecoder`): `encode`,
`decode`, `__call__`, `init_cache` and `decode_step` on a
`cache.DecodeCache`, so training, scoring, decoding and serving run on it
unchanged.

Axis legend as in t5.py and gemma_layers.py (N key/value heads).

What differs from T5: each stack has its own token embedding, scaled by
sqrt(width) (the widths may differ; the output head is the decoder's
embedding when tied); rotary positions instead of a relative-position bias;
grouped-query attention with soft-capped scores; each layer's self-attention
is local (a sliding window) or global (`T5GemmaConfig.*_layer_types`); every
sub-layer is normed before and after; the logits are soft-capped.

Parameter paths keep t5tune's layout (`encoder/layers/<i>/attention/q/kernel`,
see `t5tune.models.paths`); `encoder/token_embedder` and
`decoder/token_embedder` are the two embeddings.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from t5tune import sharding
from t5tune.models import builder
from t5tune.models import gemma_layers
from t5tune.models import layers
from t5tune.models import masks
from t5tune.models import paths
from t5tune.models import skeleton
from t5tune.models.cache import DecodeCache
from t5tune.models.t5gemma_config import StackConfig, T5GemmaConfig

Array = jax.Array


def _self_masks(full_BHTS: Array, q_pos_BT: Array, k_pos_BS: Array, cfg: StackConfig,
                *, bidirectional: bool) -> dict[str, Array]:
  """Each layer type's self-attention mask: global as given, local also within the window."""
  near = masks.sliding_window(q_pos_BT, k_pos_BS, cfg.sliding_window, bidirectional=bidirectional)
  return {"full_attention": full_BHTS, "sliding_attention": full_BHTS & near}


class _Layer(nnx.Module):
  """Pre- and post-normed sub-layers: self-attention, (cross-attention,) gated MLP."""

  def __init__(self, cfg: StackConfig, layer_type: str, *, cross: bool, rngs: nnx.Rngs):
    d = cfg.d_model
    role = "self_attention" if cross else "attention"
    self.layer_type = layer_type
    setattr(self, f"pre_{role}_norm", gemma_layers.RMSNorm(d, cfg))
    setattr(self, role, gemma_layers.Attention(cfg, rngs=rngs, role=role, rotary=True))
    setattr(self, f"post_{role}_norm", gemma_layers.RMSNorm(d, cfg))
    self.has_cross = cross
    if cross:
      self.pre_cross_attention_norm = gemma_layers.RMSNorm(d, cfg)
      self.cross_attention = gemma_layers.Attention(cfg, rngs=rngs, role="cross_attention",
                                                    rotary=False)
      self.post_cross_attention_norm = gemma_layers.RMSNorm(d, cfg)
    self.pre_mlp_norm = gemma_layers.RMSNorm(d, cfg)
    self.mlp = layers.MLP(cfg, rngs=rngs)
    self.post_mlp_norm = gemma_layers.RMSNorm(d, cfg)
    self.dropout = nnx.Dropout(cfg.dropout_rate)

  def _residual(self, x, update, post_norm, rngs):
    return x + self.dropout(post_norm(update), deterministic=rngs is None, rngs=rngs)

  def __call__(self, x_BTD, pos_BT, self_masks, rngs=None, cross_kv=None, cross_mask_BHTS=None,
               cache_kv=None, index=None):
    """One layer; returns (x, (k, v)), the self-attention keys/values (the cache, when given).

    `cache_kv` (k, v) [B, N, T_max, K] is written at `index` in place: one
    decoding step. A local layer's cache keeps every position (its mask
    hides those outside the window); a ring of `sliding_window` slots would
    hold less.
    """
    attn = self.self_attention if self.has_cross else self.attention
    pre = self.pre_self_attention_norm if self.has_cross else self.pre_attention_norm
    post = self.post_self_attention_norm if self.has_cross else self.post_attention_norm
    h = pre(x_BTD)
    k, v = attn.project_kv(h, pos_BT)
    if cache_kv is not None:
      k, v = (jax.lax.dynamic_update_slice_in_dim(c, x.astype(c.dtype), index, axis=2)
              for c, x in zip(cache_kv, (k, v)))
    x_BTD = self._residual(x_BTD, attn.attend(h, k, v, self_masks[self.layer_type], pos_BT, rngs),
                           post, rngs)
    if self.has_cross:
      h = self.pre_cross_attention_norm(x_BTD)
      ek, ev = cross_kv
      x_BTD = self._residual(x_BTD, self.cross_attention.attend(h, ek, ev, cross_mask_BHTS,
                                                                rngs=rngs),
                             self.post_cross_attention_norm, rngs)
    x_BTD = self._residual(x_BTD, self.mlp(self.pre_mlp_norm(x_BTD), rngs), self.post_mlp_norm,
                           rngs)
    return sharding.with_logical_constraint(x_BTD, ("batch", "length", "act_embed")), (k, v)


class _Stack(nnx.Module):
  """A stack's embedding (scaled by sqrt(width)), layers, final norm and dropout."""

  def __init__(self, config: T5GemmaConfig, name: str, *, rngs: nnx.Rngs):
    cfg = config.stack(name)
    self.cfg = cfg
    # Unit-variance activations after the sqrt(width) scaling.
    self.token_embedder = nnx.Embed(
        config.vocab_size, cfg.d_model,
        embedding_init=nnx.with_partitioning(nnx.initializers.normal(cfg.d_model ** -0.5),
                                             ("vocab", "embed")),
        dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype), rngs=rngs)
    # `layers` is paths.LAYERS.
    self.layers = nnx.List([_Layer(cfg, t, cross=name == "decoder", rngs=rngs)
                            for t in cfg.layer_types])
    self.final_norm = gemma_layers.RMSNorm(cfg.d_model, cfg)
    self.dropout = nnx.Dropout(cfg.dropout_rate)

  def embed(self, tokens, rngs):
    x = self.token_embedder(tokens.astype(jnp.int32))
    x = x * jnp.asarray(math.sqrt(self.cfg.d_model), x.dtype)
    return self.dropout(x, deterministic=rngs is None, rngs=rngs)

  def finish(self, x, rngs):
    return self.dropout(self.final_norm(x), deterministic=rngs is None, rngs=rngs)


class Transformer(skeleton.EncoderDecoder):
  """The T5Gemma encoder-decoder. `model(enc_tokens, dec_tokens)` returns float32 logits [B, T, V]."""

  def __init__(self, config: T5GemmaConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.encoder = _Stack(config, "encoder", rngs=rngs)
    self.decoder = _Stack(config, "decoder", rngs=rngs)
    if not config.tie_word_embeddings:
      d = config.decoder_d_model
      self.lm_head = layers.Dense(d, config.vocab_size, ("embed", "vocab"), d ** -0.5,
                                  config.stack("decoder"), rngs=rngs, role="lm_head")

  def _logits(self, y_BTD: Array) -> Array:
    cfg = self.config
    if cfg.tie_word_embeddings:
      emb_VD = self.decoder.token_embedder.embedding[...].astype(y_BTD.dtype)
      b, t, d = y_BTD.shape
      logits = jax.lax.dot_general(y_BTD.reshape(b * t, d), emb_VD, (((1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.float32).reshape(b, t, -1)
    else:
      logits = self.lm_head(y_BTD).astype(jnp.float32)
    if cfg.final_logit_softcapping:
      cap = cfg.final_logit_softcapping
      logits = cap * jnp.tanh(logits / cap)
    return sharding.with_logical_constraint(logits, ("batch", "length", "vocab"))

  def encoder_segments(self, encoder_input_tokens, encoder_segment_ids=None) -> Array:
    return masks.segments(encoder_input_tokens, encoder_segment_ids, self.config.pad_token_id)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None,
             *, dropout_rng=None, rngs=None):
    """Encoder output [B, L, D_encoder]."""
    rngs = rngs if rngs is not None else self._rngs(dropout_rng)
    tokens = encoder_input_tokens
    pos = masks.positions(tokens, encoder_positions)
    seg = self.encoder_segments(tokens, encoder_segment_ids)
    self_masks = _self_masks(masks.segment_mask(seg, seg), pos, pos, self.encoder.cfg,
                             bidirectional=True)
    x = self.encoder.embed(tokens, rngs)
    for layer in paths.layer_modules(self.encoder):
      x, _ = layer(x, pos, self_masks, rngs)
    return self.encoder.finish(x, rngs)

  def decode(self, enc_BLD, encoder_input_tokens, decoder_input_tokens, *,
             encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None,
             dropout_rng=None, rngs=None, enc_repeats: int = 1):
    """Teacher-forced decoder logits [B, T, V]; `enc_repeats` as in `t5.Transformer.decode`."""
    rngs = rngs if rngs is not None else self._rngs(dropout_rng)
    dec = decoder_input_tokens
    t = dec.shape[1]
    enc_seg = self.encoder_segments(encoder_input_tokens, encoder_segment_ids)
    if enc_repeats > 1:
      enc_seg = jnp.repeat(enc_seg, enc_repeats, axis=0)
    # Unpacked: every decoder position is segment 1 (loss weights mask the padding).
    dec_seg = (jnp.ones(dec.shape, jnp.int32) if decoder_segment_ids is None
               else decoder_segment_ids.astype(jnp.int32))
    pos = masks.positions(dec, decoder_positions)
    causal_TT = jnp.tril(jnp.ones((t, t), dtype=bool))
    self_masks = _self_masks(masks.segment_mask(dec_seg, dec_seg) & causal_TT[None, None],
                             pos, pos, self.decoder.cfg, bidirectional=False)
    cross_mask = masks.segment_mask(dec_seg, enc_seg)
    y = self.decoder.embed(dec, rngs)
    for layer in paths.layer_modules(self.decoder):
      cross_kv = layer.cross_attention.project_kv(enc_BLD)
      if enc_repeats > 1:
        cross_kv = tuple(jnp.repeat(x, enc_repeats, axis=0) for x in cross_kv)
      y, _ = layer(y, pos, self_masks, rngs, cross_kv, cross_mask)
    return self._logits(self.decoder.finish(y, rngs))

  # -- incremental decoding -------------------------------------------------

  def init_cache(self, enc_BLD: Array, encoder_input_tokens: Array, max_decode_len: int,
                 encoder_segment_ids: Array | None = None) -> DecodeCache:
    """Cross-attention keys/values of every decoder layer, projected once; empty self-attention caches.

    The self-attention caches hold N (key/value) heads, not H: grouped-query
    attention's memory saving.
    """
    cfg = self.config.stack("decoder")
    dt = jnp.dtype(cfg.dtype)
    shape = (enc_BLD.shape[0], cfg.num_kv_heads, max_decode_len, cfg.head_dim)
    cross = [layer.cross_attention.project_kv(enc_BLD)
             for layer in paths.layer_modules(self.decoder)]
    zeros = tuple(jnp.zeros(shape, dt) for _ in cross)
    return DecodeCache(
        self_k=zeros, self_v=zeros, cross_k=tuple(k.astype(dt) for k, _ in cross),
        cross_v=tuple(v.astype(dt) for _, v in cross),
        cross_mask=self.encoder_segments(encoder_input_tokens, encoder_segment_ids) != 0,
        index=jnp.zeros((), jnp.int32))

  def decode_step(self, token_B: Array, cache: DecodeCache) -> tuple[Array, DecodeCache]:
    """Logits [B, V] for the next token after feeding `token_B` at position `cache.index`."""
    i = cache.index
    q_pos = jnp.full((1, 1), i, jnp.int32)
    k_pos = jnp.arange(cache.max_decode_len, dtype=jnp.int32)[None]
    self_masks = _self_masks(masks.causal(q_pos, k_pos), q_pos, k_pos, self.decoder.cfg,
                             bidirectional=False)
    cross_mask = cache.cross_mask[:, None, None, :]
    y = self.decoder.embed(token_B[:, None], None)
    new_k, new_v = [], []
    for n, layer in enumerate(paths.layer_modules(self.decoder)):
      y, (k, v) = layer(y, q_pos, self_masks, None, (cache.cross_k[n], cache.cross_v[n]),
                        cross_mask, cache_kv=(cache.self_k[n], cache.self_v[n]), index=i)
      new_k.append(k)
      new_v.append(v)
    logits = self._logits(self.decoder.finish(y, None))[:, 0]
    return logits, cache.replace(self_k=tuple(new_k), self_v=tuple(new_v), index=i + 1)


def build_model(config: T5GemmaConfig, mesh: jax.sharding.Mesh | None = None,
                seed: int = 0) -> Transformer:
  """A randomly initialised T5Gemma created sharded on `mesh` (`builder.build_model`)."""
  return builder.build_model(Transformer, config, mesh, seed)


def abstract_model(config: T5GemmaConfig, mesh: jax.sharding.Mesh | None = None) -> Transformer:
  return builder.abstract_model(Transformer, config, mesh)
