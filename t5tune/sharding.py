"""Mesh construction and the one table that maps logical axis names to mesh axes.

Model code names the axes of every parameter and of the activations it
constrains (`('embed', 'mlp')`, `('batch', 'length', 'embed')`); this module
alone decides which of the mesh axes `('data', 'fsdp', 'tensor')` each of them
is split over. Data parallelism uses `data` and `fsdp` for the batch; FSDP
shards parameters and optimizer state over `fsdp`; `tensor` splits heads, the
MLP and the vocabulary (Megatron-style).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from t5tune import targets

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# logical axis -> mesh axis (or axes, or None = replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("joined_kv", "tensor"),  # heads * d_kv, fused in the q/k/v/o kernels
    # key/value heads * head size of grouped-query attention (T5Gemma's k/v
    # kernels): narrower than joined_kv, split the same way
    ("kv_joined", "tensor"),
    ("relpos_buckets", None),
    ("length", None),
    ("prompt", None),  # prompt-tuning positions
    ("lora_rank", None),
    ("adapter", None),  # adapter bottleneck
    # The stacked-layer axis of scanned layers (T5Config.scan_layers): the scan
    # runs over it one layer at a time, so it is never split.
    ("layers", None),
    # Activations: embed dimension is not split (it is the contraction axis of
    # every projection); hidden MLP and heads follow the tensor axis.
    ("act_embed", None),
)


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, int, int]:
  """Fills in one -1 in a (data, fsdp, tensor) shape and checks it divides the devices."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(MESH_AXES):
    raise ValueError(
        f"mesh shape {shape} must have {len(MESH_AXES)} entries for axes {MESH_AXES}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {shape}: at most one axis may be -1")
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"mesh shape {shape}: sizes must be positive (or one -1)")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(
          f"mesh shape {shape}: the fixed axes multiply to {known}, which does"
          f" not divide the {num_devices} devices; change the mesh shape")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ValueError(
        f"mesh shape {shape} (data, fsdp, tensor) needs {math.prod(shape)} devices"
        f" but {num_devices} are available; make the product equal {num_devices}"
        f" (one axis may be -1)")
  return shape  # type: ignore[return-value]


def make_mesh(shape: Sequence[int] = (-1, 1, 1),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh with automatic (pjit-style) partitioning."""
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(shape, len(devices))
  if devices[0].platform != "tpu" and devices == list(jax.devices()):
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
  # Compile-only TPU devices (t5tune.targets) are laid on their torus as
  # jax.make_mesh lays a TPU slice's own devices; other subsets in order.
  return Mesh(targets.device_mesh(shape, devices), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def single_device_mesh() -> Mesh:
  return make_mesh((1, 1, 1), devices=jax.devices()[:1])


@contextlib.contextmanager
def use_mesh(mesh: Mesh) -> Iterator[Mesh]:
  """Makes `mesh` and the logical-axis rules current: variables created inside are sharded."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
    yield mesh


def logical_to_spec(names: Sequence[str | None]) -> P:
  """PartitionSpec of a tensor whose axes carry these logical names."""
  rules = dict(LOGICAL_AXIS_RULES)
  out = []
  for name in names:
    if name is None:
      out.append(None)
      continue
    if name not in rules:
      raise KeyError(f"logical axis {name!r} has no rule in t5tune.sharding.LOGICAL_AXIS_RULES")
    out.append(rules[name])
  return P(*out)


def with_logical_constraint(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Constrains an activation's sharding by logical names when a mesh is current."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty or math.prod(mesh.axis_sizes) == 1:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """The sharding of a [batch, ...] input array: batch over ('data', 'fsdp')."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
  return int(mesh.shape["data"] * mesh.shape["fsdp"])


def state_shardings(state: Any, mesh: Mesh) -> Any:
  """NamedShardings for an nnx.State (or abstract state) from its logical annotations."""
  with nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
    specs = nnx.get_partition_spec(state)
  return jax.tree.map(lambda p: NamedSharding(mesh, p), specs,
                      is_leaf=lambda x: isinstance(x, P))
