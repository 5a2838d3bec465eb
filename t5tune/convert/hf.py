"""Hugging Face directories <-> t5tune parameters, with safetensors and no torch.

A Hugging Face directory holds `config.json` and either `model.safetensors`
or shards listed in `model.safetensors.index.json`. Nothing is ever unpickled:
`pytorch_model.bin` files are refused with a message saying how to convert them.

`config.json`'s `model_type` picks the model family (`t5tune.models.family`);
each family's names, shapes and config fields come from its converter
(`CONVERTERS`: T5's are here, T5Gemma's in `hf_t5gemma.py`), and the reading,
checking and writing of tensors below serve them all.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import numpy as np
import safetensors.numpy

import types

from t5tune import errors
from t5tune.convert import hf_t5gemma
from t5tune.models import config as model_config
from t5tune.models import family
from t5tune.models import paths

T5_MODEL_TYPES = family.FAMILIES["t5"].hf_model_types
_HF_FF = {"relu": "relu", "gated-gelu": "gated-gelu", "gated-silu": "gated-silu",
          "gelu": "gelu", "gated-relu": "gated-relu"}


def _t5_config_from_hf(hf: Mapping[str, Any], source: str = "config.json",
                      separate_lm_head: bool = False) -> model_config.T5Config:
  """Maps a Hugging Face T5 `config.json` to a T5Config.

  transformers 5 always writes `tie_word_embeddings: true` and records the
  v1.0 output scaling as `scale_decoder_outputs`; it unties the head when the
  checkpoint holds an `lm_head.weight` that differs from `shared.weight`
  (`separate_lm_head`). Older configs (e.g. the published Flan-T5 ones) say
  `tie_word_embeddings: false` for v1.1, which implies no scaling.
  """
  tie = bool(hf.get("tie_word_embeddings", True)) and not separate_lm_head
  scale = bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))
  model_type = hf.get("model_type")
  ff = hf.get("feed_forward_proj", "relu")
  if ff not in _HF_FF:
    raise errors.ConversionError(f"feed_forward_proj={ff!r} is not supported", where=source,
                                 fix=f"expected one of {sorted(_HF_FF)}")
  try:
    return model_config.T5Config(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["d_model"]),
        d_kv=int(hf["d_kv"]),
        d_ff=int(hf["d_ff"]),
        num_heads=int(hf["num_heads"]),
        num_encoder_layers=int(hf["num_layers"]),
        num_decoder_layers=int(hf.get("num_decoder_layers") or hf["num_layers"]),
        relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
        dropout_rate=float(hf.get("dropout_rate", 0.1)),
        layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
        feed_forward_proj=_HF_FF[ff],
        tie_word_embeddings=tie,
        scale_decoder_outputs=scale,
        pad_token_id=int(hf.get("pad_token_id", 0)),
        eos_token_id=int(hf.get("eos_token_id", 1)),
        decoder_start_token_id=int(hf.get("decoder_start_token_id", 0)),
        # umT5 gives every layer its own relative-position table.
        relative_attention_per_layer=model_type == "umt5",
    )
  except KeyError as e:
    raise errors.ConversionError(f"missing required T5 field {e.args[0]!r}", where=source,
                                 fix="restore config.json from the original model") from None


def _t5_config_to_hf(cfg: model_config.T5Config) -> dict[str, Any]:
  return {
      "architectures": ["UMT5ForConditionalGeneration" if cfg.relative_attention_per_layer
                        else "T5ForConditionalGeneration"],
      "model_type": "umt5" if cfg.relative_attention_per_layer else "t5",
      "vocab_size": cfg.vocab_size,
      "d_model": cfg.d_model,
      "d_kv": cfg.d_kv,
      "d_ff": cfg.d_ff,
      "num_heads": cfg.num_heads,
      "num_layers": cfg.num_encoder_layers,
      "num_decoder_layers": cfg.num_decoder_layers,
      "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "dropout_rate": cfg.dropout_rate,
      "layer_norm_epsilon": cfg.layer_norm_epsilon,
      "feed_forward_proj": cfg.feed_forward_proj,
      "dense_act_fn": {"relu": "relu", "gelu": "gelu_new", "silu": "silu"}[cfg.activation],
      "is_gated_act": cfg.is_gated,
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "scale_decoder_outputs": cfg.scale_decoder_outputs,
      "pad_token_id": cfg.pad_token_id,
      "eos_token_id": cfg.eos_token_id,
      "decoder_start_token_id": cfg.decoder_start_token_id,
      "is_encoder_decoder": True,
      "use_cache": True,
  }


def _mlp_names(cfg) -> list[str]:
  return ["wi_0", "wi_1", "wo"] if cfg.is_gated else ["wi", "wo"]


def _t5_name_map(cfg: model_config.T5Config) -> dict[str, tuple[tuple[str | int, ...], bool]]:
  """HF T5 tensor name -> (t5tune parameter path, transpose?).

  torch Linear weights are [out, in]; t5tune kernels are [in, out].
  """
  m: dict[str, tuple[tuple, bool]] = {"shared.weight": (("token_embedder", "embedding"), False)}
  for stack in paths.STACKS:
    m[f"{stack}.final_layer_norm.weight"] = ((stack, "final_norm", "scale"), False)
    if not cfg.relative_attention_per_layer:
      m[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
          (stack, "relpos_bias", "embedding"), False)
    for i in range(paths.num_layers(cfg, stack)):
      pre = f"{stack}.block.{i}.layer"
      base = paths.layer(stack, i)
      if cfg.relative_attention_per_layer:
        m[f"{pre}.0.SelfAttention.relative_attention_bias.weight"] = (
            base + ("relpos_bias", "embedding"), False)
      if stack == "encoder":
        parts = [(0, "SelfAttention", "attention", "attention_norm")]
        mlp_index, mlp_norm = 1, "mlp_norm"
      else:
        parts = [(0, "SelfAttention", "self_attention", "self_attention_norm"),
                 (1, "EncDecAttention", "cross_attention", "cross_attention_norm")]
        mlp_index, mlp_norm = 2, "mlp_norm"
      for idx, hf_name, ours, norm in parts:
        for p in "qkvo":
          m[f"{pre}.{idx}.{hf_name}.{p}.weight"] = (base + (ours, p, "kernel"), True)
        m[f"{pre}.{idx}.layer_norm.weight"] = (base + (norm, "scale"), False)
      for p in _mlp_names(cfg):
        m[f"{pre}.{mlp_index}.DenseReluDense.{p}.weight"] = (base + ("mlp", p, "kernel"), True)
      m[f"{pre}.{mlp_index}.layer_norm.weight"] = (base + (mlp_norm, "scale"), False)
  if not cfg.tie_word_embeddings:
    m["lm_head.weight"] = (("lm_head", "kernel"), True)
  return m


# Names HF writes for the same tensor as `shared.weight`; never needed separately.
_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def _t5_expected_shapes(cfg: model_config.T5Config) -> dict[str, tuple[int, ...]]:
  """HF T5 tensor name -> shape."""
  d, inner, f = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff
  shapes = {}
  for name in _t5_name_map(cfg):
    if name == "shared.weight" or name == "lm_head.weight":
      shapes[name] = (cfg.vocab_size, d)
    elif name.endswith("relative_attention_bias.weight"):
      shapes[name] = (cfg.relative_attention_num_buckets, cfg.num_heads)
    elif "layer_norm" in name:
      shapes[name] = (d,)
    elif re.search(r"\.(q|k|v)\.weight$", name):
      shapes[name] = (inner, d)
    elif name.endswith(".o.weight"):
      shapes[name] = (d, inner)
    elif name.endswith("wo.weight"):
      shapes[name] = (d, f)
    else:
      shapes[name] = (f, d)
  return shapes


# Each family's converter: config both ways, tensor names and shapes, the
# untied head's name and the embedding it is tied to, names that alias others.
CONVERTERS = {
    "t5": types.SimpleNamespace(
        config_from_hf=_t5_config_from_hf, config_to_hf=_t5_config_to_hf, name_map=_t5_name_map,
        expected_shapes=_t5_expected_shapes, ALIASES=_ALIASES, LM_HEAD="lm_head.weight",
        TIED_TO="shared.weight"),
    "t5gemma": hf_t5gemma,
}


def _converter(cfg):
  return CONVERTERS[family.of(cfg).name]


def _converter_for_hf(hf: Mapping[str, Any], source: str):
  model_type = hf.get("model_type")
  fam = family.for_model_type(model_type)
  if fam is None:
    known = tuple(t for f in family.FAMILIES.values() for t in f.hf_model_types)
    raise errors.ConversionError(
        f"model_type={model_type!r} is not a T5 model or another family t5tune converts"
        f" (expected one of {known})", where=source,
        fix="t5tune converts T5, Flan-T5, mT5, ByT5 and T5Gemma checkpoints")
  return CONVERTERS[fam.name]


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json",
                   separate_lm_head: bool = False):
  """The config (T5Config, T5GemmaConfig, ...) of a Hugging Face `config.json`, by its model_type."""
  return _converter_for_hf(hf, source).config_from_hf(hf, source, separate_lm_head)


def config_to_hf(cfg) -> dict[str, Any]:
  """The Hugging Face `config.json` of a t5tune config of any family."""
  return _converter(cfg).config_to_hf(cfg)


def name_map(cfg) -> dict[str, tuple[tuple[str | int, ...], bool]]:
  """HF tensor name -> (t5tune parameter path, transpose?) for `cfg`'s family.

  torch Linear weights are [out, in]; t5tune kernels are [in, out].
  """
  return _converter(cfg).name_map(cfg)


def expected_shapes(cfg) -> dict[str, tuple[int, ...]]:
  """HF tensor name -> shape, for checking a directory before converting it."""
  return _converter(cfg).expected_shapes(cfg)


def hf_tensors_to_params(tensors: Mapping[str, np.ndarray], cfg: model_config.T5Config,
                         source: str = "model.safetensors") -> dict:
  """Nested parameter dict (the layout of `nnx.state(model, nnx.Param).to_pure_dict()`)."""
  shapes = expected_shapes(cfg)
  mapping = name_map(cfg)
  for name, shape in shapes.items():
    if name not in tensors:
      raise errors.ConversionError(
          f"missing tensor {name!r} (expected shape {shape}) for a T5 with the architecture"
          " in config.json", where=source, fix="check that config.json belongs to these weights")
    if tuple(tensors[name].shape) != shape:
      raise errors.ConversionError(
          f"tensor {name!r} has shape {tuple(tensors[name].shape)}, but config.json implies"
          f" {shape}", where=source, fix="check that config.json belongs to these weights")
  conv = _converter(cfg)
  unknown = sorted(set(tensors) - set(mapping) - set(conv.ALIASES) - {conv.LM_HEAD})
  if unknown:
    raise errors.ConversionError(
        f"tensor {unknown[0]!r} is not part of a {family.of(cfg).name} model"
        f" ({len(unknown)} unexpected tensors)",
        where=source, fix="convert a plain ...ForConditionalGeneration checkpoint")
  params: dict = {}
  for name, (path, transpose) in mapping.items():
    value = np.asarray(tensors[name], dtype=np.float32)
    if transpose:
      value = value.T
    node = params
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = np.ascontiguousarray(value)
  return params


def params_to_hf_tensors(params: Mapping, cfg: model_config.T5Config) -> dict[str, np.ndarray]:
  """HF tensors of a nested parameter dict, scanned (stacked layers) or not."""
  params = paths.to_layout(params, scanned=False)
  out = {}
  for name, (path, transpose) in name_map(cfg).items():
    node = params
    for key in path:
      node = node[key]
    value = np.asarray(node, dtype=np.float32)
    out[name] = np.ascontiguousarray(value.T if transpose else value)
  return out


def is_hf_dir(path: str) -> bool:
  return (os.path.isfile(os.path.join(path, "config.json"))
          and (os.path.isfile(os.path.join(path, "model.safetensors"))
               or os.path.isfile(os.path.join(path, "model.safetensors.index.json"))))


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
  """The tensors of one safetensors file; a truncated or foreign file is a ConversionError."""
  try:
    return safetensors.numpy.load_file(path)
  except (safetensors.SafetensorError, OSError, ValueError) as e:
    raise errors.ConversionError(f"not a readable safetensors file ({e})", where=path,
                                 fix="download the file again") from None


def read_hf_dir(path: str) -> tuple[Any, dict[str, np.ndarray]]:
  """Reads config (of the family its model_type names) and tensors of a HF directory (single or sharded safetensors)."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isdir(path):
    raise errors.InputError("no such directory", where=path,
                            fix="give a Hugging Face T5 directory (config.json + model.safetensors)")
  if not os.path.isfile(config_path):
    raise errors.ConversionError("no config.json", where=path,
                                 fix="expected a Hugging Face T5 directory")
  with open(config_path) as f:
    try:
      hf_config = json.load(f)
    except json.JSONDecodeError as e:
      raise errors.ConversionError(f"invalid JSON ({e.msg})", where=f"{config_path}:{e.lineno}",
                                   fix="restore config.json from the original model") from None
  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.isfile(single):
    tensors = dict(_load_safetensors(single))
  elif os.path.isfile(index):
    with open(index) as f:
      try:
        weight_map = json.load(f)["weight_map"]
      except (json.JSONDecodeError, KeyError, TypeError):
        raise errors.ConversionError("not a safetensors index (no JSON 'weight_map')",
                                     where=index, fix="restore it from the original model"
                                     ) from None
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(path, s))]
    if missing:  # checked before reading any, so no time is spent on a model that cannot load
      raise errors.MissingInputError(
          f"{len(missing)} of {len(shards)} shards named by model.safetensors.index.json are"
          f" missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}", where=path,
          fix="download the missing shard(s) into the directory")
    tensors = {}
    for shard in shards:
      tensors.update(_load_safetensors(os.path.join(path, shard)))
  elif any(n.endswith(".bin") for n in os.listdir(path)):
    raise errors.ConversionError(
        "only pickled PyTorch weights (*.bin) found; t5tune never unpickles", where=path,
        fix="re-save with safetensors: `T5ForConditionalGeneration.from_pretrained(dir)"
        ".save_pretrained(dir, safe_serialization=True)`")
  else:
    raise errors.ConversionError("no model.safetensors or model.safetensors.index.json",
                                 where=path, fix="expected a Hugging Face T5 directory")
  conv = _converter_for_hf(hf_config, config_path)
  separate = (conv.LM_HEAD in tensors and conv.TIED_TO in tensors
              and not np.array_equal(tensors[conv.LM_HEAD], tensors[conv.TIED_TO]))
  return config_from_hf(hf_config, config_path, separate_lm_head=separate), tensors
