"""Hugging Face T5Gemma (`model_type: t5gemma`) config and tensor names <-> t5tune's T5Gemma.

The generic reading, checking and writing of tensors is `hf.py`'s; this
module only says what the names, shapes and config fields are.
"""
from __future__ import annotations

from typing import Any, Mapping

from t5tune import errors
from t5tune.models import paths
from t5tune.models import t5gemma_config

MODEL_TYPE = "t5gemma"
# Fields every published checkpoint sets the same in both stacks; t5tune keeps one copy.
_SHARED = ("rope_theta", "sliding_window", "query_pre_attn_scalar", "attn_logit_softcapping",
           "rms_norm_eps")
_HF_STACK = {"d_model": "hidden_size", "d_ff": "intermediate_size",
             "num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
             "head_dim": "head_dim", "layer_types": "layer_types"}


def _rope_theta(module: Mapping[str, Any]) -> float:
  rope = module.get("rope_parameters") or {}
  if rope.get("rope_type", "default") != "default":
    raise errors.ConversionError(f"rope_type={rope['rope_type']!r} is not supported",
                                 where="config.json", fix="t5tune's T5Gemma uses default RoPE")
  return float(rope.get("rope_theta", module.get("rope_theta", 10000.0)))


def _first(token):
  """An id, or the first of a list (instruction-tuned configs list several eos ids)."""
  return int(token[0] if isinstance(token, (list, tuple)) else token)


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json",
                   separate_lm_head: bool = False) -> t5gemma_config.T5GemmaConfig:
  """Maps a transformers T5Gemma `config.json` (encoder and decoder module configs) to a T5GemmaConfig."""
  try:
    stacks = {name: dict(hf[name]) for name in ("encoder", "decoder")}
    values: dict[str, Any] = {}
    for name, module in stacks.items():
      module["rope_theta"] = _rope_theta(module)
      if module.get("attention_bias"):
        raise errors.ConversionError(f"{name}.attention_bias=true is not supported",
                                     where=source, fix="T5Gemma checkpoints have no biases")
      for ours, theirs in _HF_STACK.items():
        values[f"{name}_{ours}"] = module[theirs]
      values[f"num_{name}_layers"] = int(module["num_hidden_layers"])
    for key in _SHARED:
      if stacks["encoder"].get(key) != stacks["decoder"].get(key):
        raise errors.ConversionError(
            f"encoder.{key}={stacks['encoder'].get(key)!r} differs from the decoder's"
            f" {stacks['decoder'].get(key)!r}", where=source,
            fix="t5tune's T5Gemma shares this value between the stacks")
    dec = stacks["decoder"]
    tie = bool(hf.get("tie_word_embeddings", True)) and not separate_lm_head
    return t5gemma_config.T5GemmaConfig(
        vocab_size=int(hf.get("vocab_size", dec["vocab_size"])),
        rope_theta=dec["rope_theta"], sliding_window=int(dec["sliding_window"]),
        query_pre_attn_scalar=int(dec["query_pre_attn_scalar"]),
        attn_logit_softcapping=dec.get("attn_logit_softcapping"),
        final_logit_softcapping=dec.get("final_logit_softcapping"),
        layer_norm_epsilon=float(dec.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=tie,
        pad_token_id=_first(hf.get("pad_token_id", dec.get("pad_token_id", 0))),
        eos_token_id=_first(hf.get("eos_token_id", dec.get("eos_token_id", 1))),
        bos_token_id=_first(dec.get("bos_token_id", 2)),
        # transformers starts T5Gemma's decoder with the decoder's bos id.
        decoder_start_token_id=_first(dec.get("bos_token_id", 2)),
        dropout_rate=float(hf.get("dropout_rate", 0.0)),
        **{k: tuple(v) if k.endswith("layer_types") else int(v) for k, v in values.items()})
  except KeyError as e:
    raise errors.ConversionError(f"missing required T5Gemma field {e.args[0]!r}", where=source,
                                 fix="restore config.json from the original model") from None


def config_to_hf(cfg: t5gemma_config.T5GemmaConfig) -> dict[str, Any]:
  def module(name: str) -> dict[str, Any]:
    s = cfg.stack(name)
    out = {
        "model_type": "t5_gemma_module", "vocab_size": cfg.vocab_size,
        "hidden_size": s.d_model, "intermediate_size": s.d_ff,
        "num_hidden_layers": len(s.layer_types), "num_attention_heads": s.num_heads,
        "num_key_value_heads": s.num_kv_heads, "head_dim": s.head_dim,
        "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": cfg.layer_norm_epsilon,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False, "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "sliding_window": cfg.sliding_window, "layer_types": list(s.layer_types),
        "attn_logit_softcapping": cfg.attn_logit_softcapping,
        "final_logit_softcapping": cfg.final_logit_softcapping,
        "pad_token_id": cfg.pad_token_id, "eos_token_id": cfg.eos_token_id,
        "bos_token_id": cfg.bos_token_id, "tie_word_embeddings": cfg.tie_word_embeddings,
        "is_decoder": name == "decoder",
    }
    if name == "decoder":
      out["cross_attention_hidden_size"] = cfg.encoder_d_model
    return out

  return {
      "architectures": ["T5GemmaForConditionalGeneration"], "model_type": MODEL_TYPE,
      "encoder": module("encoder"), "decoder": module("decoder"),
      "vocab_size": cfg.vocab_size, "tie_word_embeddings": cfg.tie_word_embeddings,
      "dropout_rate": cfg.dropout_rate, "is_encoder_decoder": True,
      "pad_token_id": cfg.pad_token_id, "eos_token_id": cfg.eos_token_id,
      "bos_token_id": cfg.bos_token_id,
  }


# HF name inside a layer -> t5tune path inside it, per stack.
_ATTN = {"encoder": [("self_attn", "attention", "self_attn", "attention")],
         "decoder": [("self_attn", "self_attention", "self_attn", "self_attention"),
                     ("cross_attn", "cross_attention", "cross_attn", "cross_attention")]}
_MLP = {"gate_proj": "wi_0", "up_proj": "wi_1", "down_proj": "wo"}


def name_map(cfg) -> dict[str, tuple[tuple, bool]]:
  """HF tensor name -> (t5tune parameter path, transpose?); torch Linear weights are [out, in]."""
  m: dict[str, tuple[tuple, bool]] = {}
  for stack in paths.STACKS:
    pre = f"model.{stack}"
    m[f"{pre}.embed_tokens.weight"] = ((stack, "token_embedder", "embedding"), False)
    m[f"{pre}.norm.weight"] = ((stack, "final_norm", "scale"), False)
    for i in range(paths.num_layers(cfg, stack)):
      hf_layer, base = f"{pre}.layers.{i}", paths.layer(stack, i)
      for hf_attn, ours, hf_norm, norm in _ATTN[stack]:
        for p in "qkvo":
          m[f"{hf_layer}.{hf_attn}.{p}_proj.weight"] = (base + (ours, p, "kernel"), True)
        for when in ("pre", "post"):
          m[f"{hf_layer}.{when}_{hf_norm}_layernorm.weight"] = (
              base + (f"{when}_{norm}_norm", "scale"), False)
      for theirs, ours in _MLP.items():
        m[f"{hf_layer}.mlp.{theirs}.weight"] = (base + ("mlp", ours, "kernel"), True)
      for when in ("pre", "post"):
        m[f"{hf_layer}.{when}_feedforward_layernorm.weight"] = (
            base + (f"{when}_mlp_norm", "scale"), False)
  if not cfg.tie_word_embeddings:
    m["lm_head.out_proj.weight"] = (("lm_head", "kernel"), True)
  return m


ALIASES = ()  # transformers writes the tied head under no second name
LM_HEAD = "lm_head.out_proj.weight"
TIED_TO = "model.decoder.embed_tokens.weight"


def expected_shapes(cfg) -> dict[str, tuple[int, ...]]:
  """HF tensor name -> shape, for checking a directory before converting it."""
  shapes = {}
  for name in name_map(cfg):
    if name == LM_HEAD:
      shapes[name] = (cfg.vocab_size, cfg.decoder_d_model)
      continue
    stack = name.split(".")[1]
    s = cfg.stack(stack)
    q, kv = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim
    kv_in = s.kv_d_model if ".cross_attn." in name else s.d_model
    leaf = name.rsplit(".", 2)[-2]
    shapes[name] = {
        "embed_tokens": (cfg.vocab_size, s.d_model), "q_proj": (q, s.d_model),
        "k_proj": (kv, kv_in), "v_proj": (kv, kv_in), "o_proj": (s.d_model, q),
        "gate_proj": (s.d_ff, s.d_model), "up_proj": (s.d_ff, s.d_model),
        "down_proj": (s.d_model, s.d_ff)}.get(leaf, (s.d_model,))
  return shapes
