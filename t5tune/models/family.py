"""The model-family registry: which config class, module, presets and Hugging Face model types each family has.

A family is one encoder-decoder architecture (T5; T5Gemma) on t5tune's
shared skeleton: the same parameter layout (`paths`), axis rules
(`sharding`), KV cache (`cache.DecodeCache`), builder (`builder`) and the
contract `EncoderDecoder` below, which training, scoring, decoding and
serving rely on. A model directory records its family in config.json
(`model.family`; "t5" when absent, so older directories load). Callers
dispatch here instead of naming `t5`:

    cfg = family.config_from_dict(saved)     # T5Config or T5GemmaConfig
    model = family.build_model(cfg, mesh)    # or abstract_model(cfg, mesh)

The converters of each family's Hugging Face layout live in `t5tune.convert`
(`hf.py` for T5, `hf_t5gemma.py`), found by the family's name.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax

from t5tune import errors
from t5tune.models import builder
from t5tune.models import cache
from t5tune.models import config as t5_config
from t5tune.models import t5
from t5tune.models import t5gemma
from t5tune.models import t5gemma_config

DEFAULT = "t5"  # the family of a config that names none (directories written before families)


class EncoderDecoder(Protocol):
  """What every family's top-level module provides (t5.Transformer, t5gemma.Transformer).

  `config` carries at least `pad_token_id`, `eos_token_id`,
  `decoder_start_token_id`, `vocab_size`, `dropout_rate`, `dtype`,
  `scan_layers`, `num_encoder_layers`, `num_decoder_layers` and the PEFT
  fields (`lora_rank`, `prompt_length`, `prefix_length`, `adapter_dim`).
  """

  config: Any

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None, *,
             dropout_rng=None, rngs=None) -> jax.Array:
    """Encoder output [B, L, D]."""

  def decode(self, enc_BLD, encoder_input_tokens, decoder_input_tokens, *,
             encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None,
             dropout_rng=None, rngs=None, enc_repeats: int = 1) -> jax.Array:
    """Teacher-forced float32 logits [B, T, V]."""

  def __call__(self, encoder_input_tokens, decoder_input_tokens, encoder_segment_ids=None,
               decoder_segment_ids=None, encoder_positions=None, decoder_positions=None,
               dropout_rng=None) -> jax.Array:
    """`decode(encode(...))`: float32 logits [B, T, V]."""

  def init_cache(self, enc_BLD, encoder_input_tokens, max_decode_len: int,
                 encoder_segment_ids=None) -> cache.DecodeCache:
    """The decoding cache: cross-attention keys/values projected once."""

  def decode_step(self, token_B, cache: cache.DecodeCache) -> tuple[jax.Array, cache.DecodeCache]:
    """Logits [B, V] after feeding `token_B` at `cache.index`, and the advanced cache."""


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  config_cls: type
  from_dict: Callable[[Mapping[str, Any]], Any]  # the config, unknown keys refused
  module_cls: type  # a class satisfying EncoderDecoder, built as module_cls(config, rngs=...)
  presets: Mapping[str, Mapping[str, Any]]
  hf_model_types: tuple[str, ...]  # transformers' `model_type`s this family converts


FAMILIES: dict[str, Family] = {
    "t5": Family("t5", t5_config.T5Config, t5_config.from_dict, t5.Transformer,
                 t5_config.PRESETS, ("t5", "mt5", "umt5", "byt5")),
    "t5gemma": Family("t5gemma", t5gemma_config.T5GemmaConfig, t5gemma_config.from_dict,
                      t5gemma.Transformer, t5gemma_config.PRESETS, ("t5gemma",)),
}


def get(name: str) -> Family:
  if name not in FAMILIES:
    raise errors.UsageError(f"unknown model family {name!r}", where="model.family",
                            fix=f"known: {', '.join(FAMILIES)}")
  return FAMILIES[name]


def of(config) -> Family:
  """The family of a config object."""
  for fam in FAMILIES.values():
    if type(config) is fam.config_cls:
      return fam
  raise TypeError(f"{type(config).__name__} is not the config of a registered model family")


def for_model_type(model_type: str | None) -> Family | None:
  """The family that converts transformers' `model_type`, or None."""
  for fam in FAMILIES.values():
    if model_type in fam.hf_model_types:
      return fam
  return None


def config_from_dict(values: Mapping[str, Any]):
  """A config from a saved dict: its `family` key (default "t5") picks the class."""
  values = dict(values)
  return get(values.pop("family", DEFAULT)).from_dict(values)


def config_to_dict(config) -> dict[str, Any]:
  """The config as a dict that records its family (what model directories save)."""
  return {"family": of(config).name, **config.to_dict()}


def preset(name: str, **overrides: Any):
  """A named architecture of any family, e.g. `preset('t5gemma_2b_2b', dtype='bfloat16')`."""
  for fam in FAMILIES.values():
    if name in fam.presets:
      return fam.from_dict({**fam.presets[name], **overrides})
  # An unknown name: T5's message (the one callers wrap with their flag's name).
  return t5_config.preset(name, **overrides)


def build_model(config, mesh: jax.sharding.Mesh | None = None, seed: int = 0):
  """A randomly initialised model of `config`'s family, created sharded on `mesh`."""
  return builder.build_model(of(config).module_cls, config, mesh, seed)


def abstract_model(config, mesh: jax.sharding.Mesh | None = None):
  """The model of `config`'s family with `ShapeDtypeStruct` parameters: nothing is allocated."""
  return builder.abstract_model(of(config).module_cls, config, mesh)
