"""The one owner of parameter paths: where each layer's parameters sit in the model's state.

A parameter path is the tuple of keys from the model's root to one array,
e.g. `("decoder", "layers", 3, "mlp", "wo", "kernel")`, written with "/" as
`decoder/layers/3/mlp/wo/kernel` in configs (freeze regexes), messages and
reports. Everything that builds, parses or iterates over per-layer paths
(conversion name maps, parameter counts, trainer messages, per-layer loops
over the decoder for the KV cache) goes through this module.

Two layouts exist. Unscanned, each layer has its own subtree
(`decoder/layers/3/mlp/wo/kernel`, shape [F, D]); scanned
(`T5Config.scan_layers`), a stack's layers share one subtree whose arrays
have a leading layer axis (`decoder/layers/mlp/wo/kernel`, shape
[layers, F, D]). `stack_layers` / `unstack_layers` / `to_layout` convert
nested parameter dicts between them, so weights saved in one layout load
into a model of the other.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

STACKS = ("encoder", "decoder")
LAYERS = "layers"  # the attribute of Encoder/Decoder that holds the layers

Path = tuple  # of str / int keys


def num_layers(config, stack: str) -> int:
  """How many layers `stack` ("encoder" or "decoder") of a T5Config has."""
  if stack == "encoder":
    return config.num_encoder_layers
  if stack == "decoder":
    return config.num_decoder_layers
  raise ValueError(f"stack {stack!r}: expected one of {STACKS}")


def layer(stack: str, index: int) -> Path:
  """The path of layer `index` of `stack`: ("decoder", "layers", 3)."""
  return (stack, LAYERS, int(index))


def layers(config) -> Iterator[tuple[str, int, Path]]:
  """(stack, index, path) of every layer, encoder first."""
  for stack in STACKS:
    for i in range(num_layers(config, stack)):
      yield stack, i, layer(stack, i)


def layer_modules(stack_module) -> Iterable:
  """The layer modules of an Encoder or Decoder, bottom first."""
  return getattr(stack_module, LAYERS)


def name(path: Iterable) -> str:
  """'decoder/layers/0/mlp/wo/kernel' for a path tuple or a jax pytree key path."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


EXAMPLE = name(layer("decoder", 0) + ("mlp", "wo", "kernel"))  # for messages and docs


def layers_regex(stack: str, indices: Sequence[int]) -> str:
  """A regex on path names matching every parameter of these layers of `stack`.

  `layers_regex("decoder", [6, 7])` is `^decoder/layers/(6|7)/`, e.g. for
  `--config.optimizer.train_only`.
  """
  alternatives = "|".join(str(int(i)) for i in indices)
  return f"^{re.escape(stack)}/{LAYERS}/({alternatives})/"


@dataclasses.dataclass(frozen=True)
class LayerParam:
  """A per-layer parameter path split into its stack, layer index and the rest."""
  stack: str
  index: int
  rest: Path  # e.g. ("mlp", "wo", "kernel")


def _is_index(key) -> bool:
  return isinstance(key, (int, np.integer)) or (isinstance(key, str) and key.isdigit())


def parse(path: Sequence) -> LayerParam | None:
  """Splits a per-layer parameter path; None for anything outside the layers (embeddings, norms).

  A scanned path (no layer index: the array holds every layer) has index None.
  """
  keys = tuple(path)
  if len(keys) >= 3 and keys[0] in STACKS and keys[1] == LAYERS:
    if _is_index(keys[2]):
      return LayerParam(stack=keys[0], index=int(keys[2]), rest=keys[3:])
    return LayerParam(stack=keys[0], index=None, rest=keys[2:])
  return None


# -- scanned <-> unscanned --------------------------------------------------------


def is_stacked(params: Mapping) -> bool | None:
  """Whether a nested parameter dict has scanned (stacked) layers; None if it has no layers."""
  for stack in STACKS:
    node = params.get(stack, {}).get(LAYERS) if isinstance(params.get(stack), Mapping) else None
    if isinstance(node, Mapping) and node:
      return not all(_is_index(k) for k in node)
  return None


def _stack_arrays(arrays: Sequence) -> Any:
  if all(isinstance(a, np.ndarray) for a in arrays):
    return np.stack(arrays)
  import jax.numpy as jnp  # device arrays stay on device (and keep their sharding's mesh)
  return jnp.stack(arrays)


def _tree_map(fn, *trees):
  """fn over the leaves of nested dicts of the same structure (no jax: numpy stays numpy)."""
  first = trees[0]
  if isinstance(first, Mapping):
    return {k: _tree_map(fn, *(t[k] for t in trees)) for k in first}
  return fn(*trees)


def stack_layers(params: Mapping) -> dict:
  """Unscanned -> scanned: each stack's `layers/<i>/...` become one `layers/...` with a leading axis."""
  out = dict(params)
  for stack in STACKS:
    if stack not in params or LAYERS not in params[stack]:
      continue
    per_layer = params[stack][LAYERS]
    indices = sorted(int(k) for k in per_layer)
    if indices != list(range(len(indices))):
      raise ValueError(f"{stack}/{LAYERS} has layers {indices}: expected 0..{len(indices) - 1}")
    by_index = {int(k): v for k, v in per_layer.items()}
    layers_ = [by_index[i] for i in indices]
    out[stack] = {**params[stack], LAYERS: _tree_map(lambda *xs: _stack_arrays(xs), *layers_)}
  return out


def unstack_layers(params: Mapping) -> dict:
  """Scanned -> unscanned: each stack's stacked `layers/...` become `layers/<i>/...`."""
  out = dict(params)
  for stack in STACKS:
    if stack not in params or LAYERS not in params[stack]:
      continue
    stacked = params[stack][LAYERS]
    n = _first_leaf(stacked).shape[0]
    out[stack] = {**params[stack],
                  LAYERS: {i: _tree_map(lambda x, i=i: x[i], stacked) for i in range(n)}}
  return out


def _first_leaf(tree):
  while isinstance(tree, Mapping):
    tree = next(iter(tree.values()))
  return tree


def to_layout(params: Mapping, scanned: bool) -> dict:
  """`params` in the scanned or the unscanned layout, converting only if it is in the other."""
  stacked = is_stacked(params)
  if stacked is None or stacked == scanned:
    return dict(params)
  return stack_layers(params) if scanned else unstack_layers(params)


def unscanned_names(path: Sequence, num: int) -> list[str] | None:
  """The names the `num` layers of a scanned parameter path have unscanned; None if not scanned.

  `decoder/layers/mlp/wo/kernel` -> [`decoder/layers/0/mlp/wo/kernel`, ...]:
  regexes written against per-layer names (freezing, weight-decay exclusion)
  are judged on these.
  """
  keys = [name([k]) for k in path]
  parsed = parse(keys)
  if parsed is None or parsed.index is not None:
    return None
  return [name(layer(parsed.stack, i) + tuple(parsed.rest)) for i in range(num)]
