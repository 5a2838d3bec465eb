"""Runs a pure function of the model on host batches: padded, placed on the model's mesh, jitted once.

Decoding and scoring both need the same plumbing: find the mesh the model's
parameters live on, pad the batch to a multiple of the data-parallel size
(padding rows are dropped from the result), shard the batch over the
('data', 'fsdp') axes, and call one `jax.jit`-compiled function per
(function, model structure, static options, mesh). The model's parameters
keep their own shardings; XLA partitions the computation around them.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from t5tune import sharding

_COMPILED: dict[Any, Callable] = {}


def model_mesh(model: nnx.Module) -> jax.sharding.Mesh:
  """The mesh the model's parameters are sharded on (one device if they are not)."""
  for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)):
    sh = getattr(leaf, "sharding", None)
    if isinstance(sh, NamedSharding):
      return sh.mesh
    break
  return sharding.single_device_mesh()


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """`x` with zero rows appended up to `rows` rows (padding rows of a batch; `head` drops them)."""
  extra = rows - x.shape[0]
  if extra <= 0:
    return x
  return np.concatenate([x, np.zeros((extra,) + x.shape[1:], x.dtype)], axis=0)


def stack_rows(seqs: Sequence[Sequence[int]], rows: int | None = None, width: int | None = None,
               dtype=np.int32) -> np.ndarray:
  """Ragged 1-D sequences as one [rows, width] array, zero-padded on both axes.

  `rows` defaults to len(seqs), `width` to the longest sequence.
  """
  width = max((len(x) for x in seqs), default=0) if width is None else width
  out = np.zeros((len(seqs) if rows is None else rows, width), dtype)
  for i, x in enumerate(seqs):
    out[i, :len(x)] = x
  return out


def head(tree: Any, n: int) -> Any:
  """The first n rows of every array in a result (drops the padding rows of a batch)."""
  return jax.tree.map(lambda x: x[:n], tree)


def _apply(fn, graphdef, static, state, *arrays):
  return fn(nnx.merge(graphdef, state), *arrays, static)


def _to_global(x: np.ndarray, mesh) -> jax.Array:
  # Every process holds the whole host batch (evaluation sets are replicated),
  # so each device takes its slice; this works on one host and on many.
  return jax.make_array_from_callback(
      x.shape, sharding.batch_sharding(mesh, x.ndim), lambda idx: x[idx])


def _to_host(x: jax.Array) -> np.ndarray:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def run(fn: Callable, model: nnx.Module, arrays: Sequence[np.ndarray], static: Any) -> Any:
  """`fn(model, *arrays, static)` jitted on the model's mesh; returns host numpy arrays.

  `arrays` share their leading (batch) dimension; `static` must be hashable
  (it is part of the compilation key).
  """
  graphdef, state = nnx.split(model)
  mesh = model_mesh(model)
  n = arrays[0].shape[0]
  multiple = sharding.data_parallel_size(mesh)
  padded = n + (-n) % multiple
  placed = [_to_global(pad_rows(np.asarray(a), padded), mesh) for a in arrays]
  with sharding.use_mesh(mesh):
    out = _jitted(fn, graphdef, static, mesh)(state, *placed)
  return head(jax.tree.map(_to_host, out), n)


def _jitted(fn: Callable, graphdef, static, mesh) -> Callable:
  """The one jitted form of `fn(model, *arrays, static)` that `run` calls and `compile_only` compiles."""
  key = (fn, graphdef, static, mesh)
  compiled = _COMPILED.get(key)
  if compiled is None:
    compiled = jax.jit(functools.partial(_apply, fn, graphdef, static))
    _COMPILED[key] = compiled
  return compiled


def compile_only(fn: Callable, model: nnx.Module, shapes: Sequence[tuple[tuple[int, ...], Any]],
                 static: Any):
  """`run`'s program for arrays of these (shape, dtype)s, compiled ahead of time; nothing runs.

  `model` may be abstract (`t5.abstract_model` on a compile-only TPU mesh):
  the program is the one `run` would execute there, placed the same way.
  """
  graphdef, state = nnx.split(model)
  mesh = model_mesh(model)
  abstract = [jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.batch_sharding(mesh, len(shape)))
              for shape, dtype in shapes]
  with sharding.use_mesh(mesh):
    return _jitted(fn, graphdef, static, mesh).lower(state, *abstract).compile()
