"""T5Config: the frozen description of one T5-family architecture, and its presets."""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from t5tune import errors
from t5tune import ranges

FEED_FORWARD_KINDS = ("relu", "gelu", "gated-gelu", "gated-silu", "gated-relu")
DTYPES = ("float32", "bfloat16", "float16")
# Rematerialisation (the one table): T5Config.remat_policy -> the member of
# `jax.checkpoint_policies` whose residuals are saved ("" saves none: "full"
# recomputes every activation); "none" applies no remat. Names, not the
# policies, so reading a config never imports JAX (`t5tune.models.scan`
# looks them up).
REMAT_POLICIES = {
    "none": None,
    "full": "",
    "dots": "checkpoint_dots",
    "dots_with_no_batch_dims": "checkpoint_dots_with_no_batch_dims",
}
# Parameter paths (joined with "/") of the parameter-efficient tuning modules;
# `--config.optimizer.train_only=peft` trains these alone.
PEFT_PARAMS = r"(lora_a|lora_b|prompt|prefix_k|prefix_v|adapter)"


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture and numerics of a T5 encoder-decoder.

  Field names follow Hugging Face's `T5Config` where one exists, so that a
  `config.json` maps over field by field (see `t5tune.convert.hf`).
  """

  vocab_size: int = 32128  # embedding rows: the vocabulary, padded (T5's 32100 + 28)
  d_model: int = 512  # width of the residual stream (D)
  d_kv: int = 64  # size of each attention head's keys and values
  d_ff: int = 1024  # inner width of the MLP
  num_heads: int = 6  # attention heads (H)
  num_encoder_layers: int = 8  # encoder layers
  num_decoder_layers: int = 8  # decoder layers
  relative_attention_num_buckets: int = 32  # relative-position buckets
  relative_attention_max_distance: int = 128  # distance beyond which positions share the last bucket
  # umT5 / t5x scalable_t5: every layer's self-attention has its own
  # relative-position table instead of one shared by the stack.
  relative_attention_per_layer: bool = False
  # dropout rate in training
  dropout_rate: float = dataclasses.field(default=0.1, metadata=ranges.meta("[0, 1)"))
  # added to the mean square in RMS layer norm
  layer_norm_epsilon: float = dataclasses.field(default=1e-6, metadata=ranges.meta("(0, 1)"))
  # "relu" is T5 v1.0; "gated-gelu" is T5 v1.1 / Flan-T5 / mT5 / ByT5;
  # "gated-silu" is UL2.
  feed_forward_proj: str = "gated-gelu"
  # T5 v1.0 ties the output projection to the input embedding and scales the
  # decoder output by d_model**-0.5 before it.
  tie_word_embeddings: bool = False
  # Scale the decoder output by d_model**-0.5 before the vocabulary projection.
  # None means "as tie_word_embeddings" (true for T5 v1.0, false for v1.1);
  # transformers 5 records it separately as `scale_decoder_outputs`.
  scale_decoder_outputs: bool | None = None
  pad_token_id: int = 0  # padding id (T5: 0)
  eos_token_id: int = 1  # end-of-sequence id (T5: 1)
  decoder_start_token_id: int = 0  # the decoder's first input id (T5: the padding id)
  # Activations dtype; parameters stay in param_dtype. Softmax and layer-norm
  # statistics are always computed in float32.
  dtype: str = "float32"
  param_dtype: str = "float32"  # dtype parameters are stored and updated in
  # Rematerialisation policy of each layer in training (memory for compute).
  remat_policy: str = "none"
  # Scan over layers: each stack's layers are one module whose parameters
  # have a leading `layers` axis, applied with `nnx.scan`, so XLA compiles
  # one layer instead of num_layers copies. The choice for large models
  # (XL/XXL: compile time and memory); the same numbers either way, and
  # checkpoints convert between the two layouts on load.
  scan_layers: bool = False
  # Parameter-efficient tuning (0 = off). Each adds parameters whose names
  # contain `lora_`, `prompt`, `prefix_` or `adapter`; `PEFT_PARAMS` matches them.
  lora_rank: int = 0  # LoRA on the projections matched by lora_targets
  # LoRA update scaled by lora_alpha / lora_rank
  lora_alpha: float = dataclasses.field(default=16.0, metadata=ranges.meta("(0, inf)"))
  lora_targets: str = r"attention\.(q|v)$"  # regex on e.g. "cross_attention.v", "mlp.wi_0"
  prompt_length: int = 0  # prompt tuning: learned embeddings before the encoder input
  prefix_length: int = 0  # prefix tuning: learned keys/values in every attention
  adapter_dim: int = 0  # bottleneck adapters after every MLP block

  def __post_init__(self):
    if self.scale_decoder_outputs is None:
      object.__setattr__(self, "scale_decoder_outputs", bool(self.tie_word_embeddings))
    ranges.check_fields(self, "T5Config.")
    if self.feed_forward_proj not in FEED_FORWARD_KINDS:
      raise ValueError(
          f"T5Config.feed_forward_proj={self.feed_forward_proj!r}: expected one"
          f" of {FEED_FORWARD_KINDS}")
    for key in ("dtype", "param_dtype"):
      if getattr(self, key) not in DTYPES:
        raise ValueError(f"T5Config.{key}={getattr(self, key)!r}: expected one of {DTYPES}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(
          f"T5Config.remat_policy={self.remat_policy!r}: expected one of {tuple(REMAT_POLICIES)}")
    for key in ("lora_rank", "prompt_length", "prefix_length", "adapter_dim"):
      if int(getattr(self, key)) < 0:
        raise ValueError(f"T5Config.{key} must be >= 0, got {getattr(self, key)}")
    try:
      re.compile(self.lora_targets)
    except re.error as e:
      raise ValueError(f"T5Config.lora_targets={self.lora_targets!r} is not a regex: {e}") from None
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads",
                "num_encoder_layers", "num_decoder_layers",
                "relative_attention_num_buckets"):
      if int(getattr(self, key)) <= 0:
        raise ValueError(f"T5Config.{key} must be positive, got {getattr(self, key)}")

    if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
      # The causal (decoder) bucketing keeps num_buckets // 2 exact buckets and
      # spreads the rest logarithmically up to max_distance.
      raise ValueError(
          f"T5Config.relative_attention_max_distance={self.relative_attention_max_distance}"
          f" must exceed relative_attention_num_buckets // 2 ="
          f" {self.relative_attention_num_buckets // 2}")

  @property
  def is_gated(self) -> bool:
    return self.feed_forward_proj.startswith("gated-")

  @property
  def activation(self) -> str:
    return self.feed_forward_proj.removeprefix("gated-")

  def replace(self, **overrides: Any) -> "T5Config":
    """A copy with `overrides` (field: value) applied; an unknown field is refused, naming the closest."""
    return from_dict({**dataclasses.asdict(self), **overrides})

  def to_dict(self) -> dict[str, Any]:
    """The fields as a plain dict (what a model directory's config records)."""
    return dataclasses.asdict(self)


def from_dict(values: Mapping[str, Any]) -> T5Config:
  """Builds a T5Config, rejecting unknown keys with the closest valid one."""
  fields = {f.name for f in dataclasses.fields(T5Config)}
  for key in values:
    if key not in fields:
      raise ValueError(f"Unknown model config key {key!r}.{errors.did_you_mean(key, sorted(fields))}")
  return T5Config(**dict(values))


_V1_0 = dict(feed_forward_proj="relu", tie_word_embeddings=True, d_kv=64)
_V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, d_kv=64)


def _sized(base, d_model, d_ff, heads, layers, dec_layers=None, **extra):
  return dict(base, d_model=d_model, d_ff=d_ff, num_heads=heads,
              num_encoder_layers=layers,
              num_decoder_layers=layers if dec_layers is None else dec_layers,
              **extra)


# Published architectures. Parameter counts (t5tune info) match the released
# checkpoints: flan_t5_small 77M, base 248M, large 783M, xl 2.85B, xxl 11.3B.
PRESETS: dict[str, dict[str, Any]] = {
    # A model for tests and CPU demos; its vocabulary fits seqio's ByteVocabulary.
    "tiny": _sized(_V1_1, 64, 128, 4, 2, vocab_size=384, d_kv=16, dropout_rate=0.0),
    "t5_1_0_small": _sized(_V1_0, 512, 2048, 8, 6),
    "t5_1_0_base": _sized(_V1_0, 768, 3072, 12, 12),
    "t5_1_0_large": _sized(_V1_0, 1024, 4096, 16, 24),
    "t5_1_1_small": _sized(_V1_1, 512, 1024, 6, 8),
    "t5_1_1_base": _sized(_V1_1, 768, 2048, 12, 12),
    "t5_1_1_large": _sized(_V1_1, 1024, 2816, 16, 24),
    "t5_1_1_xl": _sized(_V1_1, 2048, 5120, 32, 24),
    "t5_1_1_xxl": _sized(_V1_1, 4096, 10240, 64, 24),
    "byt5_small": _sized(_V1_1, 1472, 3584, 6, 12, dec_layers=4, vocab_size=384),
    "mt5_small": _sized(_V1_1, 512, 1024, 6, 8, vocab_size=250112),
    # UL2 (20B): gated-SiLU MLP, 256-wide heads.
    "ul2": _sized(_V1_1, 4096, 16384, 16, 32, feed_forward_proj="gated-silu",
                  d_kv=256, vocab_size=32128),
}
# Flan-T5 checkpoints share the T5 v1.1 architecture.
for _size in ("small", "base", "large", "xl", "xxl"):
  PRESETS[f"flan_t5_{_size}"] = dict(PRESETS[f"t5_1_1_{_size}"])


def preset(name: str, **overrides: Any) -> T5Config:
  """Returns a named architecture, e.g. `preset('flan_t5_base', dtype='bfloat16')`."""
  if name not in PRESETS:
    raise ValueError(f"Unknown model preset {name!r}.{errors.did_you_mean(name, PRESETS)}"
                     f" Known: {', '.join(sorted(PRESETS))}")
  return from_dict({**PRESETS[name], **overrides})

