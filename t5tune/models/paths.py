"""The one owner of parameter paths: where each layer's parameters sit in the model's state.

A parameter path is the tuple of keys from the model's root to one array,
e.g. `("decoder", "layers", 3, "mlp", "wo", "kernel")`, written with "/" as
`decoder/layers/3/mlp/wo/kernel` in configs (freeze regexes), messages and
reports. Everything that builds, parses or iterates over per-layer paths
(conversion name maps, parameter counts, trainer messages, per-layer loops
over the decoder for the KV cache) goes through this module, so a different
layer layout (e.g. layers stacked on a scan axis) is a change here.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Iterator, Sequence

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


def parse(path: Sequence) -> LayerParam | None:
  """Splits a per-layer parameter path; None for anything outside the layers (embeddings, norms)."""
  keys = tuple(path)
  if len(keys) >= 3 and keys[0] in STACKS and keys[1] == LAYERS:
    return LayerParam(stack=keys[0], index=int(keys[2]), rest=keys[3:])
  return None
