"""Scanned layers: a stack's layers as one module with stacked parameters, created with `nnx.vmap` and applied with `nnx.scan`.

With `T5Config.scan_layers` every parameter of a stack's layers has a
leading `layers` axis (logical name `AXIS`, never sharded: see
`t5tune.sharding`), and the forward pass is one `lax.scan` over it, so XLA
compiles one layer body instead of one copy per layer. The per-layer
function (attention, MLP, remat policy) is the same code the unscanned
stacks run; dropout gets one key per layer. Converting parameter trees
between the two layouts is `t5tune.models.paths`' job.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

from t5tune.models import config as model_config

AXIS = "layers"  # logical name of the stacked-layer axis
# Tells nnx.vmap to add `AXIS` to the variables' sharding names.
_METADATA = {nnx.PARTITION_NAME: AXIS}


def remat(fn: Callable, policy: str) -> Callable:
  """`fn(layer, ...)` rematerialised under a `T5Config.remat_policy` ("none": unchanged)."""
  if policy == "none":
    return fn
  saved = model_config.REMAT_POLICIES[policy]
  return nnx.remat(fn, policy=getattr(jax.checkpoint_policies, saved) if saved else None)


def stacked(make_layer: Callable[[nnx.Rngs], nnx.Module], n: int, rngs: nnx.Rngs) -> nnx.Module:
  """One module holding `n` independently initialised layers on a leading `layers` axis."""

  @nnx.split_rngs(splits=n)
  @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata=_METADATA)
  def create(rngs):
    return make_layer(rngs)

  return create(rngs)


def run(fn: Callable, layers: nnx.Module, carry: Any, xs: Any = None, consts: tuple = ()) -> Any:
  """Threads `carry` through every layer, bottom first: `carry = fn(layer_i, carry, xs_i, *consts)`.

  `xs` is a pytree whose leaves have a leading layer axis (per-layer inputs:
  dropout keys, cached keys/values, or None); `consts` are the same for every
  layer (masks, the shared position bias). The layers are read, never
  updated.

  This is `nnx.scan` in its functional form (split, `jax.lax.scan`, merge
  each layer inside the body): `nnx.scan` itself refuses modules that come
  from an enclosing trace, and decoding steps run inside a `lax.while_loop`
  over a model merged outside it.
  """
  graphdef, state = nnx.split(layers)

  def body(carry, per_layer):
    state_i, xs_i = per_layer
    return fn(nnx.merge(graphdef, state_i), carry, xs_i, *consts), None

  carry, _ = jax.lax.scan(body, carry, (state, xs))
  return carry


def map_layers(fn: Callable, layers: nnx.Module, *consts) -> Any:
  """`fn(layer_i, *consts)` for every layer, outputs stacked on a leading layer axis."""
  graphdef, state = nnx.split(layers)
  return jax.vmap(lambda state_i: fn(nnx.merge(graphdef, state_i), *consts))(state)


def layer_keys(rngs: nnx.Rngs | None, n: int) -> jax.Array | None:
  """One dropout key per layer (None without dropout): each layer draws its own masks."""
  if rngs is None:
    return None
  return jax.random.split(rngs.dropout(), n)


def layer_rngs(key: jax.Array | None) -> nnx.Rngs | None:
  return None if key is None else nnx.Rngs(dropout=key)
