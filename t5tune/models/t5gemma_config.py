"""T5GemmaConfig: the frozen description of one T5Gemma (Gemma 2 encoder-decoder) architecture, and its presets.

Encoder and decoder may differ in width, depth, heads and MLP (T5Gemma
9b-2b pairs a Gemma 2 9B encoder with a 2B decoder), so those fields come
in `encoder_*` / `decoder_*` pairs; `stack(name)` gives one stack's view
(`StackConfig`), which is what the layers are built from. The attention
numerics (RoPE base, sliding window, query scale, soft-capping) are shared:
every published checkpoint uses the same values in both stacks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

from t5tune import errors
from t5tune import ranges

LAYER_TYPES = ("sliding_attention", "full_attention")
DTYPES = ("float32", "bfloat16", "float16")


def alternating(n: int) -> tuple[str, ...]:
  """Gemma 2's pattern: local (sliding-window) layers first, then global, alternating."""
  return tuple(LAYER_TYPES[i % 2] for i in range(n))


@dataclasses.dataclass(frozen=True)
class StackConfig:
  """One stack's architecture: what an encoder or decoder layer is built from.

  It carries the field names `layers.Dense` and `layers.MLP` read (d_model,
  d_ff, dtype, LoRA settings), so T5's dense, LoRA and gated-MLP code
  serves both families.
  """

  d_model: int
  d_ff: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  layer_types: tuple[str, ...]
  kv_d_model: int  # width the cross-attention keys/values are projected from (the encoder's)
  rope_theta: float
  sliding_window: int
  query_pre_attn_scalar: int
  attn_logit_softcapping: float | None
  layer_norm_epsilon: float
  dropout_rate: float
  dtype: str
  param_dtype: str
  lora_rank: int
  lora_alpha: float
  lora_targets: str
  is_gated: bool = True
  activation: str = "gelu"  # tanh-approximated GELU (transformers' gelu_pytorch_tanh)


@dataclasses.dataclass(frozen=True)
class T5GemmaConfig:
  """Architecture and numerics of a T5Gemma encoder-decoder.

  Field names follow t5tune's T5Config where the meaning is the same
  (`num_encoder_layers`, `dtype`, `lora_rank`, token ids); the per-stack
  ones follow transformers' T5GemmaModuleConfig with a stack prefix.
  """

  family: ClassVar[str] = "t5gemma"

  vocab_size: int = 256000
  encoder_d_model: int = 2304  # encoder residual width (transformers: encoder.hidden_size)
  decoder_d_model: int = 2304
  encoder_d_ff: int = 9216  # MLP inner width (intermediate_size)
  decoder_d_ff: int = 9216
  encoder_num_heads: int = 8  # query heads
  decoder_num_heads: int = 8
  encoder_num_kv_heads: int = 4  # key/value heads (grouped-query attention)
  decoder_num_kv_heads: int = 4
  encoder_head_dim: int = 256
  decoder_head_dim: int = 256
  num_encoder_layers: int = 26
  num_decoder_layers: int = 26
  # Per layer "sliding_attention" or "full_attention"; empty = alternating, local first.
  encoder_layer_types: tuple[str, ...] = ()
  decoder_layer_types: tuple[str, ...] = ()
  rope_theta: float = dataclasses.field(default=10000.0, metadata=ranges.meta("(0, inf)"))
  sliding_window: int = dataclasses.field(default=4096, metadata=ranges.meta("[1, inf)"))
  # Attention scores are scaled by query_pre_attn_scalar**-0.5 (not head_dim**-0.5).
  query_pre_attn_scalar: int = dataclasses.field(default=256, metadata=ranges.meta("[1, inf)"))
  # tanh soft-capping: scores -> c * tanh(scores / c); None (or 0) = off.
  attn_logit_softcapping: float | None = 50.0
  final_logit_softcapping: float | None = 30.0
  layer_norm_epsilon: float = dataclasses.field(default=1e-6, metadata=ranges.meta("(0, 1)"))
  tie_word_embeddings: bool = True  # the output head is the decoder's embedding
  pad_token_id: int = 0
  eos_token_id: int = 1
  bos_token_id: int = 2
  decoder_start_token_id: int = 2  # transformers starts T5Gemma's decoder with bos
  dropout_rate: float = dataclasses.field(default=0.0, metadata=ranges.meta("[0, 1)"))
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat_policy: str = "none"
  scan_layers: bool = False  # not yet: local/global layers differ, so layers are unrolled
  lora_rank: int = 0
  lora_alpha: float = dataclasses.field(default=16.0, metadata=ranges.meta("(0, inf)"))
  lora_targets: str = r"attention\.(q|v)$"
  # The T5 parameter-efficient modules t5tune has no T5Gemma form of yet; kept
  # so code that reads them from any family's config sees 0.
  prompt_length: int = 0
  prefix_length: int = 0
  adapter_dim: int = 0

  def __post_init__(self):
    for stack in ("encoder", "decoder"):
      key = f"{stack}_layer_types"
      n = getattr(self, f"num_{stack}_layers")
      types = tuple(getattr(self, key)) or alternating(n)
      object.__setattr__(self, key, types)
      if len(types) != n or any(t not in LAYER_TYPES for t in types):
        raise errors.UsageError(
            f"T5GemmaConfig.{key} must name {n} layers, each one of {LAYER_TYPES}",
            where=f"model.{key}", fix="give one entry per layer, or leave it empty")
      heads, kv = getattr(self, f"{stack}_num_heads"), getattr(self, f"{stack}_num_kv_heads")
      if kv <= 0 or heads % kv:
        raise errors.UsageError(
            f"T5GemmaConfig.{stack}_num_heads={heads} is not a multiple of"
            f" {stack}_num_kv_heads={kv}", where=f"model.{stack}_num_kv_heads",
            fix="grouped-query attention shares each key/value head among whole groups")
    ranges.check_fields(self, "T5GemmaConfig.")
    for key in ("dtype", "param_dtype"):
      if getattr(self, key) not in DTYPES:
        raise errors.UsageError(f"T5GemmaConfig.{key}={getattr(self, key)!r}",
                                where=f"model.{key}", fix=f"expected one of {DTYPES}")
    unsupported = {"scan_layers": self.scan_layers, "prompt_length": self.prompt_length,
                   "prefix_length": self.prefix_length, "adapter_dim": self.adapter_dim,
                   "remat_policy": self.remat_policy != "none"}
    for key, value in unsupported.items():
      if value:
        raise errors.UsageError(f"T5GemmaConfig.{key}={getattr(self, key)!r} is not supported yet",
                                where=f"model.{key}", fix="use it with the t5 family, or leave it"
                                " at its default (LoRA works with T5Gemma)")

  # Read by code written against any family (sharding checks, messages).
  @property
  def d_model(self) -> int:
    return self.decoder_d_model

  def stack(self, name: str) -> StackConfig:
    """The architecture of the "encoder" or "decoder" stack."""
    return StackConfig(
        d_model=getattr(self, f"{name}_d_model"), d_ff=getattr(self, f"{name}_d_ff"),
        num_heads=getattr(self, f"{name}_num_heads"),
        num_kv_heads=getattr(self, f"{name}_num_kv_heads"),
        head_dim=getattr(self, f"{name}_head_dim"),
        layer_types=getattr(self, f"{name}_layer_types"),
        kv_d_model=self.encoder_d_model, rope_theta=self.rope_theta,
        sliding_window=self.sliding_window, query_pre_attn_scalar=self.query_pre_attn_scalar,
        attn_logit_softcapping=self.attn_logit_softcapping or None,
        layer_norm_epsilon=self.layer_norm_epsilon, dropout_rate=self.dropout_rate,
        dtype=self.dtype, param_dtype=self.param_dtype, lora_rank=self.lora_rank,
        lora_alpha=self.lora_alpha, lora_targets=self.lora_targets)

  def replace(self, **overrides: Any) -> "T5GemmaConfig":
    """A copy with `overrides` applied; an unknown field is refused, naming the closest."""
    return from_dict({**self.to_dict(), **overrides})

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    for stack in ("encoder", "decoder"):
      out[f"{stack}_layer_types"] = list(out[f"{stack}_layer_types"])
    return out


def from_dict(values: Mapping[str, Any]) -> T5GemmaConfig:
  """Builds a T5GemmaConfig, rejecting unknown keys with the closest valid one."""
  fields = {f.name for f in dataclasses.fields(T5GemmaConfig)}
  for key in values:
    if key not in fields:
      raise errors.UsageError(f"unknown T5Gemma config key {key!r}", where="model",
                              fix=errors.did_you_mean(key, sorted(fields)).strip() or None)
  values = dict(values)
  for stack in ("encoder", "decoder"):
    if f"{stack}_layer_types" in values:
      values[f"{stack}_layer_types"] = tuple(values[f"{stack}_layer_types"])
  return T5GemmaConfig(**values)


def _stack(prefix, d_model, d_ff, heads, kv_heads, head_dim, layers):
  return {f"{prefix}_d_model": d_model, f"{prefix}_d_ff": d_ff, f"{prefix}_num_heads": heads,
          f"{prefix}_num_kv_heads": kv_heads, f"{prefix}_head_dim": head_dim,
          f"num_{prefix}_layers": layers}


def _sized(enc, dec=None, **extra):
  return {**_stack("encoder", *enc), **_stack("decoder", *(dec or enc)), **extra}


# Gemma 2 2B and 9B (query scale 1/sqrt(256)); T5 sizes under the Gemma 2
# recipe, 64-wide heads (their query scale is assumed to be head_dim too).
_GEMMA2_2B = (2304, 9216, 8, 4, 256, 26)
_GEMMA2_9B = (3584, 14336, 16, 8, 256, 42)
# Published architectures. Parameter counts (t5tune info) equal transformers'
# for the same config (tests/models/test_t5gemma.py) and the published
# safetensors totals where known: s-s 312.5M, b-b 591.5M, xl-xl 3.77B,
# 9b-2b 12.29B, 9b-9b 20.33B.
PRESETS: dict[str, dict[str, Any]] = {
    # A model for tests and CPU demos; its vocabulary fits seqio's ByteVocabulary.
    "t5gemma_tiny": _sized((64, 128, 4, 2, 16, 2), (48, 96, 4, 2, 16, 3), vocab_size=384,
                           sliding_window=8, query_pre_attn_scalar=16),
    "t5gemma_s_s": _sized((512, 1024, 8, 8, 64, 8), query_pre_attn_scalar=64),
    "t5gemma_b_b": _sized((768, 2048, 12, 12, 64, 12), query_pre_attn_scalar=64),
    "t5gemma_l_l": _sized((1024, 2816, 16, 16, 64, 24), query_pre_attn_scalar=64),
    "t5gemma_xl_xl": _sized((2048, 5120, 32, 32, 64, 24), query_pre_attn_scalar=64),
    "t5gemma_2b_2b": _sized(_GEMMA2_2B),
    "t5gemma_9b_2b": _sized(_GEMMA2_9B, _GEMMA2_2B),
    "t5gemma_9b_9b": _sized(_GEMMA2_9B),
}


def preset(name: str, **overrides: Any) -> T5GemmaConfig:
  if name not in PRESETS:
    raise errors.UsageError(f"unknown T5Gemma preset {name!r}", where="model.preset",
                            fix=f"known: {', '.join(sorted(PRESETS))}")
  return from_dict({**PRESETS[name], **overrides})
