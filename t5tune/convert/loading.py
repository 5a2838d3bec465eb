"""Loading and saving whole models: t5tune checkpoint dirs and Hugging Face T5 dirs.

A t5tune model directory is `config.json` (T5Config fields under "model",
plus "format": "t5tune") and an orbax checkpoint of the parameters in
`params/`. Saves go to a temporary sibling directory renamed into place, so
an interrupted save never leaves a half-written model.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np
from flax import nnx

from t5tune import sharding
from t5tune.convert import hf
from t5tune.models import config as model_config
from t5tune.models import t5

FORMAT = "t5tune"


def is_t5tune_dir(path: str) -> bool:
  cfg_path = os.path.join(path, "config.json")
  if not (os.path.isfile(cfg_path) and os.path.isdir(os.path.join(path, "params"))):
    return False
  with open(cfg_path) as f:
    return json.load(f).get("format") == FORMAT


def read_config(path: str) -> model_config.T5Config:
  """The T5Config of a t5tune or Hugging Face directory."""
  with open(os.path.join(path, "config.json")) as f:
    data = json.load(f)
  if data.get("format") == FORMAT:
    return model_config.from_dict(data["model"])
  return hf.config_from_hf(data, os.path.join(path, "config.json"))


def _assign(model: t5.Transformer, params: dict, source: str) -> None:
  """Copies a nested dict of arrays into the model's parameters, keeping their shardings."""
  state = nnx.state(model, nnx.Param)
  flat_target = dict(nnx.to_flat_state(state))
  flat_new = {tuple(k): v for k, v in _flatten(params)}
  missing = sorted(set(flat_target) - set(flat_new))
  if missing:
    raise hf.ConversionError(f"{source}: missing parameter {'/'.join(map(str, missing[0]))}")
  extra = sorted(set(flat_new) - set(flat_target))
  if extra:
    raise hf.ConversionError(f"{source}: unexpected parameter {'/'.join(map(str, extra[0]))}")
  for key, var in flat_target.items():
    value = flat_new[key]
    if tuple(value.shape) != tuple(var.shape):
      raise hf.ConversionError(f"{source}: parameter {'/'.join(map(str, key))} has shape"
                               f" {tuple(value.shape)}, model expects {tuple(var.shape)}")
    var.value = jax.device_put(np.asarray(value).astype(var.dtype), var.value.sharding)


def _flatten(tree, prefix=()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, prefix + (k,))
  else:
    yield prefix, tree


def load_model(path: str, mesh: jax.sharding.Mesh | None = None,
               **config_overrides: Any) -> t5.Transformer:
  """Loads a t5tune model directory or a Hugging Face T5 directory onto `mesh`.

  `config_overrides` change numerics-only fields, e.g. `dtype='bfloat16'` or
  `dropout_rate=0.0`; architecture fields must match the weights.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such model directory")
  if is_t5tune_dir(path):
    cfg = read_config(path).replace(**config_overrides)
    model = t5.abstract_model(cfg, mesh)
    graphdef, abstract = nnx.split(model, nnx.Param)
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
      restored = ckptr.restore(os.path.abspath(os.path.join(path, "params")), abstract)
    return nnx.merge(graphdef, restored)
  if hf.is_hf_dir(path):
    cfg, tensors = hf.read_hf_dir(path)
    cfg = cfg.replace(**config_overrides)
    params = hf.hf_tensors_to_params(tensors, cfg, source=path)
    model = t5.build_model(cfg, mesh)
    _assign(model, params, path)
    return model
  raise hf.ConversionError(
      f"{path}: neither a t5tune model (config.json with \"format\": \"t5tune\" and params/)"
      " nor a Hugging Face T5 directory (config.json + model.safetensors)")


def params_as_numpy(model: t5.Transformer) -> dict:
  """The model's parameters as a nested dict of host numpy arrays."""
  state = nnx.state(model, nnx.Param)
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state.to_pure_dict())


def save_model(model: t5.Transformer, path: str) -> None:
  """Writes `model` as a t5tune model directory, atomically."""
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-t5tune-", dir=parent)
  try:
    import orbax.checkpoint as ocp
    state = nnx.state(model, nnx.Param)
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(tmp, "params"), state)
      ckptr.wait_until_finished()
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump({"format": FORMAT, "model": model.config.to_dict()}, f, indent=2)
    if os.path.exists(path):
      shutil.rmtree(path)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def hf_to_t5tune(input_dir: str, output_dir: str) -> model_config.T5Config:
  """Converts a HF T5 directory into a t5tune model directory (nothing partial on failure)."""
  cfg, tensors = hf.read_hf_dir(input_dir)
  params = hf.hf_tensors_to_params(tensors, cfg, source=input_dir)  # validates first
  model = t5.build_model(cfg.replace(dropout_rate=cfg.dropout_rate))
  _assign(model, params, input_dir)
  save_model(model, output_dir)
  return cfg


def t5tune_to_hf(input_dir: str, output_dir: str) -> model_config.T5Config:
  """Writes a HF directory that `T5ForConditionalGeneration.from_pretrained` loads."""
  model = load_model(input_dir)
  hf.write_hf_dir(output_dir, model.config, params_as_numpy(model))
  return model.config
