"""Loading and saving whole models: t5tune model dirs and Hugging Face T5 dirs.

The t5tune layout is `t5tune.convert.model_dir`'s. Saves go to a temporary
sibling directory renamed into place, so an interrupted save never leaves a
half-written model.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any

import jax
import numpy as np
import safetensors.numpy
from flax import nnx

from t5tune import atomic
from t5tune import errors
from t5tune import progress
from t5tune.convert import hf
from t5tune.convert import model_dir
from t5tune.models import config as model_config
from t5tune.models import family
from t5tune.models import layers
from t5tune.models import paths


def read_config(path: str):
  """The model config (T5Config, T5GemmaConfig: by its recorded family) of a t5tune or Hugging Face directory."""
  data = model_dir.read_document(path)
  if data.get("format") == model_dir.FORMAT:
    return family.config_from_dict(data["model"])
  return hf.config_from_hf(data, os.path.join(path, model_dir.CONFIG_FILE))


def _assign(model: family.EncoderDecoder, params: dict, source: str) -> None:
  """Copies a nested dict of arrays into the model's parameters, keeping their shardings.

  Parameter-efficient tuning parameters (LoRA, prompt, prefix, adapters) that
  the source lacks keep their initial values: that is how a PEFT run starts
  from plain weights. Layers saved scanned load into an unscanned model and
  the other way round (`T5Config.scan_layers`).
  """
  params = paths.to_layout(params, model.config.scan_layers)
  state = nnx.state(model, nnx.Param)
  flat_target = dict(nnx.to_flat_state(state))
  flat_new = {tuple(k): v for k, v in _flatten(params)}
  peft = re.compile(model_config.PEFT_PARAMS)
  missing = sorted(k for k in set(flat_target) - set(flat_new)
                   if not peft.search("/".join(map(str, k))))
  if missing:
    raise errors.ConversionError(f"missing parameter {'/'.join(map(str, missing[0]))}",
                                 where=source, fix="check that the weights match the config")
  extra = sorted(set(flat_new) - set(flat_target))
  if extra:
    raise errors.ConversionError(f"unexpected parameter {'/'.join(map(str, extra[0]))}",
                                 where=source, fix="check that the weights match the config")
  for key, var in flat_target.items():
    value = flat_new.get(key)
    if value is not None and tuple(value.shape) != tuple(var.shape):
      raise errors.ConversionError(
          f"parameter {'/'.join(map(str, key))} has shape {tuple(value.shape)}, the model"
          f" expects {tuple(var.shape)}", where=source,
          fix="check that the weights match the config")
    if key not in flat_new:
      continue
    var.value = jax.device_put(np.asarray(value).astype(var.dtype), var.value.sharding)


def _peft_fields(cfg) -> tuple:
  return (cfg.lora_rank, cfg.lora_targets if cfg.lora_rank else None, cfg.prompt_length,
          cfg.prefix_length, cfg.adapter_dim)


def _flatten(tree, prefix=()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, prefix + (k,))
  else:
    yield prefix, tree


def load_model(path: str, mesh: jax.sharding.Mesh | None = None,
               **config_overrides: Any) -> family.EncoderDecoder:
  """Loads a t5tune model directory or a Hugging Face T5 directory onto `mesh`.

  `config_overrides` change numerics-only fields, e.g. `dtype='bfloat16'` or
  `dropout_rate=0.0`, or the layer layout (`scan_layers`: weights saved either
  way load either way); architecture fields must match the weights.

  Args:
    path: a t5tune model directory, a training checkpoint step
      (`WORKDIR/checkpoints/N`) or a Hugging Face T5 directory (`config.json` and
      `model.safetensors`, or a sharded index).
    mesh: the mesh the parameters are placed on (by the logical-axis rules);
      default one device.
    **config_overrides: `T5Config` fields replacing the saved ones.

  Returns:
    The model (`t5.Transformer`, `t5gemma.Transformer`: an `nnx.Module`): `model(enc_tokens_BL, dec_tokens_BT)`
    gives float32 logits_BTV.

  Raises:
    errors.InputError: `path` is not a directory.
    errors.ConversionError: the directory holds no T5 (no or bad `config.json`,
      another model type, a parameter missing or of the wrong shape).
    errors.CheckpointError: an array file changed after it was written (checksums).
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise errors.InputError("no such model directory", where=path,
                            fix="give a t5tune model dir, a checkpoint step or a Hugging Face T5 dir")
  with progress.status(f"load {path}"):
    return _load_model(path, mesh, config_overrides)


def _load_model(path: str, mesh: jax.sharding.Mesh | None, config_overrides: dict):
  if model_dir.is_t5tune_dir(path):
    model_dir.verify_checksums(path)
    saved = read_config(path)
    cfg = saved.replace(**config_overrides)
    _, abstract = nnx.split(family.abstract_model(saved, mesh), nnx.Param)
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
      restored = ckptr.restore(os.path.abspath(os.path.join(path, model_dir.PARAMS_DIR)),
                               abstract)
    same_peft = _peft_fields(cfg) == _peft_fields(saved)
    if same_peft and cfg.scan_layers == saved.scan_layers:
      # Same parameters: only numerics (dtype, dropout) may differ, and those
      # live in the module graph of the new config.
      graphdef, _ = nnx.split(family.abstract_model(cfg, mesh), nnx.Param)
      return nnx.merge(graphdef, restored)
    # Another layer layout needs no random initialisation (every parameter is
    # in the file); new PEFT parameters do.
    model = family.abstract_model(cfg, mesh) if same_peft else family.build_model(cfg, mesh)
    _assign(model, restored.to_pure_dict(), path)
    return model
  if hf.is_hf_dir(path):
    cfg, tensors = hf.read_hf_dir(path)
    cfg = cfg.replace(**config_overrides)
    params = hf.hf_tensors_to_params(tensors, cfg, source=path)
    # Without PEFT parameters every parameter comes from the file: place the
    # arrays straight into the abstract model (no random initialisation).
    plain = _peft_fields(cfg) == _peft_fields(type(cfg)())
    model = family.abstract_model(cfg, mesh) if plain else family.build_model(cfg, mesh)
    _assign(model, params, path)
    return model
  raise model_dir.not_a_model_dir(path)


def params_as_numpy(model: family.EncoderDecoder) -> dict:
  """The model's parameters as a nested dict of host numpy arrays."""
  state = nnx.state(model, nnx.Param)
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state.to_pure_dict())


def merged_params(model: family.EncoderDecoder) -> dict:
  """Plain T5 parameters with LoRA folded into the kernels, for export.

  Prompt tuning, prefix tuning and adapters change the architecture and have
  no Hugging Face T5 equivalent, so exporting such a model is refused.
  """
  cfg = model.config
  for field in ("prompt_length", "prefix_length", "adapter_dim"):
    if getattr(cfg, field):
      raise errors.ConversionError(
          f"the model uses {field}={getattr(cfg, field)}, which a Hugging Face T5 cannot"
          " represent", fix="keep it as a t5tune model directory (LoRA alone can be exported)")
  params = params_as_numpy(model)
  for path, module in nnx.iter_graph(model):
    if isinstance(module, layers.Dense) and module.lora_rank:
      node = params
      for key in path:
        node = node[key]
      node["kernel"] = np.asarray(jax.device_get(module.merged_kernel()))
      del node["lora_a"], node["lora_b"]
  return params


_KINDS = {"t5tune": ("a t5tune model directory", model_dir.is_t5tune_dir),
          "hf": ("a Hugging Face T5 directory", hf.is_hf_dir)}


def check_output(path: str, kind: str, overwrite: bool = False) -> None:
  """Refuses an output that cannot or must not be written, before any heavy work.

  An existing `path` is replaced only with `overwrite` and only if it is the
  same kind of thing (`kind`: "t5tune" or "hf"); a directory holding anything
  else is never replaced. A parent that is a file is reported here too.
  """
  path = os.path.abspath(os.fspath(path))
  label, is_kind = _KINDS[kind]
  if os.path.lexists(path):
    if not overwrite:
      raise errors.OutputExistsError(
          "the output exists", where=path,
          fix=f"choose another output, or pass --overwrite (overwrite=True) to replace {label}")
    if not (os.path.isdir(path) and is_kind(path)):
      raise errors.OutputExistsError(
          f"the output exists and is not {label}; refusing to replace it", where=path,
          fix="choose another output (a new or empty path)")
  atomic.check_parent(path)


@contextlib.contextmanager
def _writing_dir(path: str, kind: str, overwrite: bool = False):
  """`atomic.writing_dir` of `path` after `check_output` allowed it (a refused output fails first)."""
  check_output(path, kind, overwrite)
  with atomic.writing_dir(path, tag=kind) as tmp:
    yield tmp


def save_model(model: family.EncoderDecoder, path: str, overwrite: bool = False) -> None:
  """Writes `model` as a t5tune model directory, atomically, with checksums of its arrays.

  An existing directory is replaced only with `overwrite=True`, and only if
  it is a t5tune model directory.

  Args:
    model: the model to save (its parameters and `T5Config`).
    path: the directory to write (written beside, then renamed into place).
    overwrite: replace an existing t5tune model directory at `path`.

  Raises:
    errors.OutputExistsError: `path` exists and `overwrite` is false, or it is not
      a t5tune model directory.
    errors.OutputNotWritableError: `path`'s parent cannot be written (e.g. a file).
  """
  import orbax.checkpoint as ocp
  with _writing_dir(path, "t5tune", overwrite) as tmp:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(tmp, model_dir.PARAMS_DIR), nnx.state(model, nnx.Param))
      ckptr.wait_until_finished()
    with open(os.path.join(tmp, model_dir.CONFIG_FILE), "w") as f:
      json.dump(model_dir.config_document(family.config_to_dict(model.config)), f, indent=2)
    model_dir.write_checksums(tmp)


def write_hf_dir(path: str, cfg: model_config.T5Config, params, overwrite: bool = False) -> None:
  """Writes a Hugging Face T5 directory (config.json + model.safetensors), atomically."""
  tensors = hf.params_to_hf_tensors(params, cfg)
  with _writing_dir(path, "hf", overwrite) as tmp:
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(hf.config_to_hf(cfg), f, indent=2)
    safetensors.numpy.save_file(tensors, os.path.join(tmp, "model.safetensors"),
                                metadata={"format": "pt"})


def write_t5tune_dir(path: str, cfg: model_config.T5Config, params: dict, source: str,
                     overwrite: bool = False) -> None:
  """Writes nested parameter arrays (checked against `cfg`) as a t5tune model directory.

  The arrays are placed straight into the abstract model: nothing is randomly
  initialised first (that would cost a compile and a second copy of the weights).
  """
  model = family.abstract_model(cfg)
  _assign(model, params, source)
  save_model(model, path, overwrite)


def _same_place(a: str, b: str) -> bool:
  return os.path.abspath(os.fspath(a)) == os.path.abspath(os.fspath(b))


def check_conversion(input_dir: str, output_dir: str, kind: str, overwrite: bool) -> None:
  """Refuses an output that is the input, exists without `overwrite`, or is another kind of thing.

  Every converter calls this first, before reading its input.
  """
  if _same_place(input_dir, output_dir):
    raise errors.UsageError("the output is the input", where=os.fspath(output_dir),
                            fix="write the converted model to another directory")
  check_output(output_dir, kind, overwrite)


def hf_to_t5tune(input_dir: str, output_dir: str, overwrite: bool = False) -> model_config.T5Config:
  """Converts a HF T5 directory into a t5tune model directory (nothing partial on failure)."""
  check_conversion(input_dir, output_dir, "t5tune", overwrite)
  cfg, tensors = hf.read_hf_dir(input_dir)
  params = hf.hf_tensors_to_params(tensors, cfg, source=input_dir)  # validates first
  write_t5tune_dir(output_dir, cfg, params, input_dir, overwrite)
  return cfg


def t5tune_to_hf(input_dir: str, output_dir: str, overwrite: bool = False) -> model_config.T5Config:
  """Writes a HF directory that `T5ForConditionalGeneration.from_pretrained` loads."""
  check_conversion(input_dir, output_dir, "hf", overwrite)
  model = load_model(input_dir)
  write_hf_dir(output_dir, model.config, merged_params(model), overwrite)
  return model.config
