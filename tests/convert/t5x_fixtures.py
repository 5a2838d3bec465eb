"""Builds T5X checkpoints in the test, in each on-disk format and parameter layout t5x writes,
and the Hugging Face PyTorch model holding the same arrays (the numerical reference).

The layouts follow t5x's networks (t5x/examples/t5 and t5x/examples/scalable_t5);
the formats follow t5x/checkpoints.py (msgpack with inline arrays, msgpack with
TensorStore zarr arrays beside it, Orbax `state/`). The reference mapping from
t5x names to PyTorch names is the one transformers' T5X converters use
(kernels transposed, 3-D scalable_t5 kernels flattened, rel_embedding transposed).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

D, H, K, F, V, N = 32, 4, 8, 64, 128, 32  # d_model, heads, d_kv, d_ff, vocab, buckets


@dataclasses.dataclass(frozen=True)
class Spec:
  gated: bool = True
  tied: bool = False
  scanned: bool = False
  per_layer: bool = False  # scalable_t5 / umT5: a relpos table in every layer
  three_d: bool = False  # scalable_t5's (D, H, K) attention kernels
  n_enc: int = 2
  n_dec: int = 3


_ENC = ("pre_attention_layer_norm", "attention", "pre_mlp_layer_norm")
_DEC = ("pre_self_attention_layer_norm", "self_attention", "pre_cross_attention_layer_norm",
        "encoder_decoder_attention", "pre_mlp_layer_norm")


def _layer(rng, spec: Spec, stack: str) -> dict:
  out = {}
  for part in (_ENC if stack == "encoder" else _DEC):
    if part.endswith("norm"):
      out[part] = {"scale": (1.0 + 0.2 * rng.standard_normal(D)).astype(np.float32)}
      continue
    proj = {}
    for name in ("query", "key", "value"):
      w = (rng.standard_normal((D, H * K)) * D ** -0.5).astype(np.float32)
      proj[name] = {"kernel": w.reshape(D, H, K) if spec.three_d else w}
    w = (rng.standard_normal((H * K, D)) * (H * K) ** -0.5).astype(np.float32)
    proj["out"] = {"kernel": w.reshape(H, K, D) if spec.three_d else w}
    out[part] = proj
  wi = ("wi_0", "wi_1") if spec.gated else ("wi",)
  mlp = {n: {"kernel": (rng.standard_normal((D, F)) * D ** -0.5).astype(np.float32)} for n in wi}
  mlp["wo"] = {"kernel": (rng.standard_normal((F, D)) * F ** -0.5).astype(np.float32)}
  out["mlp"] = mlp
  if spec.per_layer:
    out["relpos_bias"] = {"rel_embedding": rng.standard_normal((H, N)).astype(np.float32)}
  return out


def _stack(layers: list[dict], axis: int) -> dict:
  if isinstance(layers[0], dict):
    return {k: _stack([l[k] for l in layers], axis) for k in layers[0]}
  return np.stack(layers, axis=axis)


def build_target(spec: Spec, seed: int = 0) -> tuple[dict, dict]:
  """(nested t5x target, unscanned per-layer view {stack: [layer dicts]})."""
  rng = np.random.default_rng(seed)
  target = {"token_embedder": {"embedding": rng.standard_normal((V, D)).astype(np.float32)}}
  layers = {}
  for stack, n in (("encoder", spec.n_enc), ("decoder", spec.n_dec)):
    layers[stack] = [_layer(rng, spec, stack) for _ in range(n)]
    node = {f"{stack}_norm": {"scale": (1.0 + 0.2 * rng.standard_normal(D)).astype(np.float32)}}
    if spec.scanned:
      node[stack] = _stack(layers[stack], axis=1)  # t5x's default param_scan_axis
    else:
      node.update({f"layers_{i}": l for i, l in enumerate(layers[stack])})
    if not spec.per_layer:
      node["relpos_bias"] = {"rel_embedding": rng.standard_normal((H, N)).astype(np.float32)}
    target[stack] = node
  if not spec.tied:
    target["decoder"]["logits_dense"] = {
        "kernel": (rng.standard_normal((D, V)) * D ** -0.5).astype(np.float32)}
  return target, layers


def _adafactor_state(target: dict) -> dict:
  """t5x Adafactor param_states: factored v_row/v_col for matrices, v for vectors."""
  if isinstance(target, dict):
    return {k: _adafactor_state(v) for k, v in target.items()}
  if target.ndim >= 2:
    return {"v_row": np.ones(target.shape[:-1], np.float32),
            "v_col": np.ones(target.shape[-1:], np.float32), "v": np.zeros((1,), np.float32)}
  return {"v_row": np.zeros((1,), np.float32), "v_col": np.zeros((1,), np.float32),
          "v": np.ones(target.shape, np.float32)}


def _flat(tree, prefix=""):
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      yield from _flat(v, name)
    else:
      yield name, v


def write(step_dir: str, target: dict, fmt: str, step: int = 100) -> str:
  """Writes a t5x step directory in format "msgpack", "tensorstore" or "orbax"."""
  os.makedirs(step_dir, exist_ok=True)
  state = {"step": np.asarray(step, np.int64), "param_states": _adafactor_state(target)}
  if fmt == "orbax":
    import orbax.checkpoint as ocp
    with ocp.PyTreeCheckpointer() as ckptr:
      ckptr.save(os.path.join(step_dir, "state"), {"target": target, "state": state})
    return step_dir
  from flax import serialization
  if fmt == "tensorstore":
    import tensorstore as ts
    specs = {}
    for name, value in _flat(target):
      if value.ndim < 2:  # t5x keeps small unpartitioned arrays inline
        continue
      rel = f"target/{name}".replace("/", ".")
      spec = {"driver": "zarr", "dtype": "float32",
              "kvstore": {"driver": "file", "path": rel},
              "metadata": {"compressor": {"id": "gzip"}, "shape": list(value.shape),
                           "chunks": [max(1, s // 2) for s in value.shape]}}
      full = {**spec, "kvstore": {"driver": "file", "path": os.path.join(step_dir, rel)}}
      ts.open(full, create=True, open=True).result().write(value).result()
      specs[name] = spec
    target = _replace(target, specs)
  with open(os.path.join(step_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(
        {"version": 3, "optimizer": {"target": target, "state": state}}))
  return step_dir


def _replace(tree, specs, prefix=""):
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else k
    out[k] = _replace(v, specs, name) if isinstance(v, dict) else specs.get(name, v)
  return out


# -- the reference ------------------------------------------------------------


def _attn_2d(p: dict) -> dict:
  q, k, v, o = (np.asarray(p[n]["kernel"]) for n in ("query", "key", "value", "out"))
  if q.ndim == 3:
    q, k, v = (x.reshape(x.shape[0], -1) for x in (q, k, v))
    o = o.reshape(-1, o.shape[-1])
  return {"q": q.T, "k": k.T, "v": v.T, "o": o.T}


def hf_state_dict(spec: Spec, target: dict, layers: dict) -> dict[str, np.ndarray]:
  """t5x arrays under transformers' PyTorch T5/UMT5 names (the T5X converters' mapping)."""
  sd = {"shared.weight": target["token_embedder"]["embedding"]}
  for stack in ("encoder", "decoder"):
    sd[f"{stack}.final_layer_norm.weight"] = target[stack][f"{stack}_norm"]["scale"]
    if not spec.per_layer:
      sd[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
          target[stack]["relpos_bias"]["rel_embedding"].T)
    for i, layer in enumerate(layers[stack]):
      pre = f"{stack}.block.{i}.layer"
      if stack == "encoder":
        parts = [("0", "SelfAttention", "attention", "pre_attention_layer_norm")]
        mlp_index, mlp_norm = "1", "pre_mlp_layer_norm"
      else:
        parts = [("0", "SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
                 ("1", "EncDecAttention", "encoder_decoder_attention",
                  "pre_cross_attention_layer_norm")]
        mlp_index, mlp_norm = "2", "pre_mlp_layer_norm"
      for idx, hf_name, t5x_name, norm in parts:
        for p, w in _attn_2d(layer[t5x_name]).items():
          sd[f"{pre}.{idx}.{hf_name}.{p}.weight"] = w
        sd[f"{pre}.{idx}.layer_norm.weight"] = layer[norm]["scale"]
      for name, p in layer["mlp"].items():
        sd[f"{pre}.{mlp_index}.DenseReluDense.{name}.weight"] = p["kernel"].T
      sd[f"{pre}.{mlp_index}.layer_norm.weight"] = layer[mlp_norm]["scale"]
      if spec.per_layer:
        sd[f"{pre}.0.SelfAttention.relative_attention_bias.weight"] = (
            layer["relpos_bias"]["rel_embedding"].T)
  return sd


def hf_model(spec: Spec, target: dict, layers: dict):
  """transformers' PyTorch T5 (or UMT5 for per-layer tables) holding the t5x arrays."""
  import torch
  import transformers
  kind = "UMT5" if spec.per_layer else "T5"
  config = getattr(transformers, f"{kind}Config")(
      vocab_size=V, d_model=D, d_kv=K, d_ff=F, num_heads=H, num_layers=spec.n_enc,
      num_decoder_layers=spec.n_dec, relative_attention_num_buckets=N,
      relative_attention_max_distance=128, dropout_rate=0.0, layer_norm_epsilon=1e-6,
      feed_forward_proj="gated-gelu" if spec.gated else "relu", pad_token_id=0,
      eos_token_id=1, decoder_start_token_id=0)
  model = getattr(transformers, f"{kind}ForConditionalGeneration")(config).eval()
  sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
        hf_state_dict(spec, target, layers).items()}
  missing, unexpected = model.load_state_dict(sd, strict=False)
  assert not unexpected, unexpected
  assert set(missing) <= {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                          "lm_head.weight"}, missing
  if not spec.tied:
    head = np.ascontiguousarray(target["decoder"]["logits_dense"]["kernel"].T)
    model.lm_head.weight = torch.nn.Parameter(torch.from_numpy(head))
    # transformers 5 ties every T5 and scales the decoder output of tied ones.
    model.config.tie_word_embeddings = False
    model.config.scale_decoder_outputs = False
  return model


def hf_logits(model, enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
  import torch
  with torch.no_grad():
    return model(input_ids=torch.from_numpy(enc.astype(np.int64)),
                 decoder_input_ids=torch.from_numpy(dec.astype(np.int64)),
                 use_cache=False).logits.numpy()
