"""Building any family's model sharded on a mesh: random initialisation in one jitted function, or abstract shapes.

`module_cls(config, rngs=...)` is the family's top-level module (t5.Transformer,
t5gemma.Transformer); the family registry (`t5tune.models.family`) says which.
"""
from __future__ import annotations

import functools

import jax
from flax import nnx

from t5tune import sharding


def build_model(module_cls, config, mesh: jax.sharding.Mesh | None = None, seed: int = 0):
  """A randomly initialised model whose parameters are created sharded on `mesh`.

  Initialisation runs in one jitted function whose out_shardings come from
  the parameters' logical axes, so no device ever holds a full copy of a
  sharded model. Without a mesh the model lives on the first device. The
  function is traced and compiled once per (module, config, mesh) in a
  process; the seed is its argument.
  """
  mesh = sharding.single_device_mesh() if mesh is None else mesh
  graphdef, init = _init_function(module_cls, config, mesh)
  with sharding.use_mesh(mesh):
    return nnx.merge(graphdef, init(jax.random.key(seed)))


@functools.lru_cache(maxsize=16)
def _init_function(module_cls, config, mesh: jax.sharding.Mesh):
  graphdef, abstract = _abstract_state(module_cls, config, mesh)
  out_shardings = jax.tree.map(lambda a: a.sharding, abstract)

  @functools.partial(jax.jit, out_shardings=out_shardings)
  def init(key):
    return nnx.state(module_cls(config, rngs=nnx.Rngs(params=key)))
  return graphdef, init


@functools.lru_cache(maxsize=16)
def _abstract_state(module_cls, config, mesh: jax.sharding.Mesh):
  """(graphdef, state of ShapeDtypeStructs with shardings), traced once per (module, config, mesh)."""
  with sharding.use_mesh(mesh):
    model = nnx.eval_shape(lambda: module_cls(config, rngs=nnx.Rngs(params=0)))
    graphdef, state = nnx.split(model)
    shardings = sharding.state_shardings(state, mesh)
    return graphdef, jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings)


def abstract_model(module_cls, config, mesh: jax.sharding.Mesh | None = None):
  """The model with `ShapeDtypeStruct` parameters (with shardings): nothing is allocated."""
  mesh = sharding.single_device_mesh() if mesh is None else mesh
  graphdef, state = _abstract_state(module_cls, config, mesh)
  # A fresh tree of fresh Variables for each caller (the cached one is never handed out).
  return nnx.merge(graphdef, jax.tree.map(lambda a: a, state))
