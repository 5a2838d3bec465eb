"""T5X checkpoints -> t5tune model directories: layouts, config inference, name mapping.

Two parameter layouts of the T5 family are understood:

* `t5x/examples/t5` (T5 v1.0/v1.1, Flan-T5, mT5, ByT5): `encoder/layers_N/...`,
  2-D attention kernels (d_model, heads*d_kv), one relative-position table per
  stack at `encoder/relpos_bias/rel_embedding` (heads, buckets).
* `t5x/examples/scalable_t5` (and umT5): 3-D attention kernels (d_model, heads,
  d_kv) / (heads, d_kv, d_model) and a relative-position table in every layer;
  with `scan_layers` (the default) every layer parameter is stacked on axis
  `param_scan_axis` (1 unless config.gin says otherwise) under
  `encoder/encoder/...`.

Kernels are (in, out) in both t5x and t5tune, so they are reshaped, never
transposed; relative-position tables are (heads, buckets) in t5x and
(buckets, heads) here. The optimizer state (Adafactor `v_row`/`v_col`/`v`)
is not imported: t5tune's optax Adafactor factors and names its statistics
differently, so a run continues from the t5x parameters with fresh
statistics (Adafactor rebuilds them within a few hundred steps).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

import numpy as np

from t5tune import errors
from t5tune.convert import t5x_files
from t5tune.models import config as model_config
from t5tune.models import paths

# Layer-relative t5x names -> t5tune names, per stack.
_SUBLAYERS = {
    "encoder": {"pre_attention_layer_norm": "attention_norm", "attention": "attention",
                "pre_mlp_layer_norm": "mlp_norm", "mlp": "mlp", "relpos_bias": "relpos_bias"},
    "decoder": {"pre_self_attention_layer_norm": "self_attention_norm",
                "self_attention": "self_attention",
                "pre_cross_attention_layer_norm": "cross_attention_norm",
                "encoder_decoder_attention": "cross_attention",
                "pre_mlp_layer_norm": "mlp_norm", "mlp": "mlp", "relpos_bias": "relpos_bias"},
}
_PROJECTIONS = {"query": "q", "key": "k", "value": "v", "out": "o"}
_FINAL_NORM = {"encoder": "encoder_norm", "decoder": "decoder_norm"}
# t5x `mlp_activations` -> T5Config.feed_forward_proj
_ACTIVATIONS = {("relu",): "relu", ("gelu",): "gelu", ("gelu", "linear"): "gated-gelu",
                ("silu", "linear"): "gated-silu", ("swish", "linear"): "gated-silu",
                ("relu", "linear"): "gated-relu"}
# Both t5x T5 networks hard-code RelativePositionBiases(num_buckets=32, max_distance=128).
T5X_MAX_DISTANCE = 128


@dataclasses.dataclass
class Layout:
  """Where the layer parameters of a checkpoint are, as detected from its names."""

  scanned: bool
  per_layer_relpos: bool
  num_layers: dict[str, int]


def _err(what, where, fix=None):
  return errors.ConversionError(what, where=where, fix=fix)


# -- gin --------------------------------------------------------------------


def read_gin(path: str) -> dict[str, Any]:
  """Literal `T5Config.*` and `RelativePositionBiases.*` bindings of a t5x config.gin.

  gin's own parser reads the file without importing t5x (references to t5x
  configurables stay unresolved, and only literals are kept); `%MACRO` values
  are resolved from the file's own macro bindings.
  """
  from gin import config_parser

  class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_name, evaluate):
      return ("@", scoped_name)

    def macro(self, scoped_name):
      return ("%", scoped_name)

  if not os.path.isfile(path):
    raise errors.InputError("no such gin file", where=path)
  with open(path) as f:
    text = f.read()
  macros, bindings = {}, {}
  try:
    for stmt in config_parser.ConfigParser(text, _Delegate()):
      if not isinstance(stmt, config_parser.BindingStatement):
        continue
      if not stmt.arg_name:  # `NAME = value` defines a macro
        macros[stmt.selector] = stmt.value
      else:
        cls = stmt.selector.rsplit(".", 1)[-1]
        if cls in ("T5Config", "RelativePositionBiases"):
          bindings[f"{cls}.{stmt.arg_name}"] = stmt.value
  except SyntaxError as e:
    raise errors.InputError(f"gin syntax error: {e.msg}", where=f"{path}:{e.lineno}") from None
  resolved = {}
  for key, value in bindings.items():
    for _ in range(8):  # macros may refer to macros
      if isinstance(value, tuple) and len(value) == 2 and value[0] == "%":
        value = macros.get(value[1], value)
      else:
        break
    if not (isinstance(value, tuple) and len(value) == 2 and value[0] in "%@"):
      resolved[key] = value
  return resolved


# -- layout -----------------------------------------------------------------


def detect_layout(target: Mapping[str, np.ndarray], scan_axis: int, source: str) -> Layout:
  if "token_embedder/embedding" not in target:
    raise _err("no token_embedder/embedding: not a T5 encoder-decoder from t5x's T5 networks",
               source, "t5tune imports t5x/examples/t5 and scalable_t5 (umT5) checkpoints")
  scanned = any(k.startswith("encoder/encoder/") for k in target)
  counts = {}
  for stack in paths.STACKS:
    if scanned:
      key = f"{stack}/{stack}/mlp/wo/kernel"
      if key not in target:
        raise _err(f"scanned layout without {key}", source)
      counts[stack] = int(target[key].shape[scan_axis])
    else:
      found = {int(m.group(1)) for k in target
               if (m := re.match(rf"{stack}/layers_(\d+)/", k))}
      if not found:
        raise _err(f"no {stack} layers ({stack}/layers_N/... or {stack}/{stack}/...)", source)
      if found != set(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - found)
        raise _err(f"{stack}/layers_{missing[0]} is missing", source)
      counts[stack] = len(found)
  per_layer = any(re.match(r"(encoder|decoder)/(layers_\d+|encoder|decoder)/relpos_bias/", k)
                  for k in target)
  return Layout(scanned=scanned, per_layer_relpos=per_layer, num_layers=counts)


def _layer_arrays(target, layout: Layout, stack: str, i: int, scan_axis: int) -> dict:
  """Layer-relative name -> array of layer i of a stack (unstacked from the scan axis)."""
  prefix = f"{stack}/{stack}/" if layout.scanned else f"{stack}/layers_{i}/"
  out = {}
  for key, value in target.items():
    if key.startswith(prefix):
      out[key[len(prefix):]] = np.take(value, i, axis=scan_axis) if layout.scanned else value
  return out


def _kernel_2d(name: str, value: np.ndarray) -> np.ndarray:
  """scalable_t5's (D, H, K) / (H, K, D) attention kernels as t5tune's (D, H*K) / (H*K, D)."""
  if value.ndim == 3:
    if name.startswith("out/"):
      return value.reshape(value.shape[0] * value.shape[1], value.shape[2])
    return value.reshape(value.shape[0], value.shape[1] * value.shape[2])
  return value


def to_params(target: Mapping[str, np.ndarray], layout: Layout, scan_axis: int,
              tied: bool, source: str) -> dict:
  """The nested t5tune parameter dict (the layout of `nnx.state(model, nnx.Param)`)."""
  params: dict = {"token_embedder": {"embedding": target["token_embedder/embedding"]}}
  used = {"token_embedder/embedding"}
  for stack in paths.STACKS:
    layers = {}
    for i in range(layout.num_layers[stack]):
      layer: dict = {}
      for name, value in _layer_arrays(target, layout, stack, i, scan_axis).items():
        parts = name.split("/")
        ours = _SUBLAYERS[stack].get(parts[0])
        if ours is None:
          raise _err(f"unexpected parameter {stack} layer {i}: {name}", source)
        if parts[0] == "relpos_bias":
          layer.setdefault(ours, {})["embedding"] = value.T
        elif parts[-1] == "kernel" and parts[0] in ("attention", "self_attention",
                                                    "encoder_decoder_attention"):
          proj = _PROJECTIONS.get(parts[1])
          if proj is None:
            raise _err(f"unexpected attention parameter {stack} layer {i}: {name}", source)
          layer.setdefault(ours, {})[proj] = {"kernel": _kernel_2d("/".join(parts[1:]), value)}
        elif parts[0] == "mlp":
          layer.setdefault("mlp", {})[parts[1]] = {"kernel": value}
        else:  # layer norms
          layer[ours] = {"scale": value}
      layers[i] = layer
    used |= {k for k in target if k.startswith(f"{stack}/layers_")
             or k.startswith(f"{stack}/{stack}/")}
    norm = f"{stack}/{_FINAL_NORM[stack]}/scale"
    if norm not in target:
      raise _err(f"missing {norm}", source)
    params[stack] = {paths.LAYERS: layers, "final_norm": {"scale": target[norm]}}
    used.add(norm)
    if not layout.per_layer_relpos:
      rel = f"{stack}/relpos_bias/rel_embedding"
      if rel not in target:
        raise _err(f"missing {rel}", source)
      params[stack]["relpos_bias"] = {"embedding": target[rel].T}
      used.add(rel)
  if not tied:
    params["lm_head"] = {"kernel": target["decoder/logits_dense/kernel"]}
    used.add("decoder/logits_dense/kernel")
  unknown = sorted(set(target) - used)
  if unknown:
    raise _err(f"parameter {unknown[0]} is not part of a T5 ({len(unknown)} unexpected)", source)
  return params


# -- config -----------------------------------------------------------------


def infer_config(target, layout: Layout, scan_axis: int, gin: Mapping[str, Any],
                 base: model_config.T5Config | None, overrides: Mapping[str, Any],
                 source: str) -> model_config.T5Config:
  """A T5Config from the array shapes, then config.gin, then a preset/flags.

  Shape-determined fields always come from the arrays; a preset or gin value
  that disagrees is an error naming both. What shapes cannot say
  (the activation) must come from gin, the preset or a flag.
  """
  vocab, d_model = target["token_embedder/embedding"].shape
  layer0 = {s: _layer_arrays(target, layout, s, 0, scan_axis) for s in paths.STACKS}
  rel = (layer0["encoder"].get("relpos_bias/rel_embedding") if layout.per_layer_relpos
         else target.get("encoder/relpos_bias/rel_embedding"))
  if rel is None:
    raise _err("no relative-position table (encoder/relpos_bias/rel_embedding)", source)
  heads, buckets = rel.shape
  query = layer0["encoder"].get("attention/query/kernel")
  if query is None:
    raise _err("no encoder attention/query/kernel in layer 0", source)
  inner = int(np.prod(query.shape[1:]))
  if inner % heads:
    raise _err(f"query kernel width {inner} is not a multiple of {heads} heads", source)
  gated = "mlp/wi_0/kernel" in layer0["encoder"]
  wo = layer0["encoder"].get("mlp/wo/kernel")
  if wo is None:
    raise _err("no encoder mlp/wo/kernel in layer 0", source)
  tied = "decoder/logits_dense/kernel" not in target
  shapes = dict(vocab_size=int(vocab), d_model=int(d_model), num_heads=int(heads),
                d_kv=inner // heads, d_ff=int(wo.shape[0]),
                num_encoder_layers=layout.num_layers["encoder"],
                num_decoder_layers=layout.num_layers["decoder"],
                relative_attention_num_buckets=int(buckets), tie_word_embeddings=tied,
                relative_attention_per_layer=layout.per_layer_relpos)
  gin_shapes = {"emb_dim": "d_model", "num_heads": "num_heads", "head_dim": "d_kv",
                "mlp_dim": "d_ff", "num_encoder_layers": "num_encoder_layers",
                "num_decoder_layers": "num_decoder_layers", "vocab_size": "vocab_size",
                "logits_via_embedding": "tie_word_embeddings"}
  for gin_key, field in gin_shapes.items():
    value = gin.get(f"T5Config.{gin_key}")
    if value is not None and value != shapes[field]:
      raise _err(f"config.gin says T5Config.{gin_key}={value!r} but the checkpoint has"
                 f" {field}={shapes[field]!r}", source, "pass the config.gin of this run")
  values: dict[str, Any] = {}
  if base is not None:
    values.update(base.to_dict())
    values.pop("scale_decoder_outputs")  # follows tie_word_embeddings, as in t5x
    for field, value in shapes.items():
      if field in values and values[field] != value:
        raise _err(f"--config gives {field}={values[field]!r} but the checkpoint has {value!r}",
                   source, "pick the preset of this checkpoint's size or pass --config=config.gin")
  values.update(shapes)
  acts = gin.get("T5Config.mlp_activations")
  if acts is not None:
    kind = _ACTIVATIONS.get(tuple(acts))
    if kind is None:
      raise _err(f"config.gin mlp_activations={tuple(acts)!r} is not supported"
                 f" (known: {sorted(_ACTIVATIONS.values())})", source)
    values["feed_forward_proj"] = kind
  for gin_key, field in (("T5Config.dtype", "dtype"), ("T5Config.dropout_rate", "dropout_rate"),
                         ("RelativePositionBiases.max_distance",
                          "relative_attention_max_distance")):
    if gin.get(gin_key) is not None:
      values[field] = gin[gin_key]
  values.update({k: v for k, v in overrides.items() if v is not None})
  values.setdefault("relative_attention_max_distance", T5X_MAX_DISTANCE)
  if "feed_forward_proj" not in values:
    raise _err("the MLP activation cannot be inferred from the arrays"
               f" ({'gated' if gated else 'not gated'} MLP)", source,
               "pass --config=<preset> or --config=<run>/config.gin, or --feed_forward_proj="
               + ("gated-gelu (T5 v1.1/Flan-T5/mT5) or gated-silu (UL2)" if gated
                  else "relu (T5 v1.0)"))
  if values["feed_forward_proj"].startswith("gated-") != gated:
    raise _err(f"feed_forward_proj={values['feed_forward_proj']!r} but the checkpoint's MLP is"
               f" {'gated (wi_0/wi_1)' if gated else 'not gated (wi)'}", source)
  if isinstance(values.get("dtype"), str):
    values["dtype"] = values["dtype"].replace("jnp.", "")
  try:
    return model_config.from_dict(values)
  except ValueError as e:
    raise _err(str(e), source) from None


# -- conversion -------------------------------------------------------------


@dataclasses.dataclass
class Imported:
  config: model_config.T5Config
  params: dict
  format: str
  layout: Layout
  step: int | None
  dropped_state: list[str]
  gin_path: str | None


def _resolve_spec(spec: str | None, step_dir: str):
  """(gin path, base config) for --config, auto-finding the run's config.gin."""
  if spec and (spec.endswith(".gin") or os.path.isfile(spec)):
    return spec, None
  if spec:
    try:
      return None, model_config.preset(spec)
    except ValueError as e:
      raise errors.UsageError(str(e), where="--config") from None
  # t5x writes the operative config.gin into the model directory, the parent
  # of checkpoint_N: use it when the user did not name one.
  step_dir = step_dir if os.path.isdir(step_dir) else os.path.dirname(step_dir)
  for candidate in (os.path.join(step_dir, "config.gin"),
                    os.path.join(os.path.dirname(os.path.abspath(step_dir)), "config.gin")):
    if os.path.isfile(candidate):
      return candidate, None
  return None, None


def import_checkpoint(path: str, config: str | None = None,
                      **overrides: Any) -> Imported:
  """Reads a T5X step and returns its T5Config and t5tune parameters (host numpy)."""
  gin_path, base = _resolve_spec(config, path)
  gin = read_gin(gin_path) if gin_path else {}
  scan_axis = int(gin.get("T5Config.param_scan_axis", 1))
  ckpt = t5x_files.read(path)
  target = ckpt.target
  layout = detect_layout(target, scan_axis, path)
  cfg = infer_config(target, layout, scan_axis, gin, base, overrides, path)
  params = to_params(target, layout, scan_axis, cfg.tie_word_embeddings, path)
  return Imported(cfg, params, ckpt.format, layout, ckpt.step, ckpt.state_leaves, gin_path)


def t5x_to_t5tune(input_path: str, output_dir: str, config: str | None = None,
                  overwrite: bool = False, **overrides: Any) -> Imported:
  """Converts a T5X checkpoint step into a t5tune model directory (nothing partial on failure).

  An existing `output_dir` is replaced only with `overwrite`, and only if it is
  a t5tune model directory (checked before the checkpoint is read).
  """
  from t5tune.convert import loading
  loading.check_conversion(input_path, output_dir, "t5tune", overwrite)
  imported = import_checkpoint(input_path, config, **overrides)
  loading.write_t5tune_dir(output_dir, imported.config, imported.params, input_path, overwrite)
  return imported
