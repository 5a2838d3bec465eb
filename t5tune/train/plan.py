"""A memory plan: the real train step compiled ahead of time for a mesh, and what XLA says it needs.

Nothing is allocated: the model, optimizer state and batch are
`ShapeDtypeStruct`s carrying the shardings the trainer gives them, and the
step is the trainer's own (`build.step_parts` of the experiment config: its
freeze masks, micro-batches and loss options), lowered and compiled, so it
is partitioned for the mesh exactly as training would. The per-device figures are then

* parameters, optimizer state: the bytes of each array's shard on one device
  (from its sharding; exact),
* XLA's memory analysis of the compiled step: arguments (state + batch),
  outputs, the aliased (donated) part, and temporaries, which hold the
  gradients and the activations kept for the backward pass,
* a peak estimate, arguments + outputs - aliased + temporaries.

jax here offers no abstract TPU/GPU topology without those backends, so the
step is compiled for simulated CPU devices (`jax_num_cpu_devices`); XLA's CPU
and TPU/GPU backends fuse differently, so temporaries are an estimate within
tens of percent, while parameter and optimizer-state bytes are exact.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t5tune import errors
from t5tune import sharding
from t5tune.models import config as model_config
from t5tune.models import info
from t5tune.train import build
from t5tune.train import experiment

GIB = 1024 ** 3
# Named accelerators: memory per device (GiB) and dense bf16 peak (TFLOP/s).
DEVICES = {
    "TPU v5e": (16, 197),
    "TPU v4": (32, 275),
    "A100/H100 80GB": (80, 989),  # H100 SXM peak; an A100 is 312
    "TPU v5p": (95, 459),
}


@dataclasses.dataclass
class Plan:
  mesh_shape: tuple[int, int, int]
  batch: int
  inputs_len: int
  targets_len: int
  optimizer: str
  params_bytes: int  # per device
  opt_state_bytes: int  # per device
  batch_bytes: int  # per device
  argument_bytes: int  # XLA, per device
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  flops_per_step: float  # analytic, whole mesh (6N-style matmul count)
  xla_flops_per_device: float  # XLA cost analysis of the partitioned step (-1 if unknown)
  compile_seconds: float
  hlo_sha256: str = ""  # of the compiled step's HLO text: equal programs, equal hashes

  @property
  def devices(self) -> int:
    return math.prod(self.mesh_shape)

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

  @property
  def gradient_bytes(self) -> int:
    """Gradients are sharded like the (all trainable) parameters, inside the temporaries."""
    return self.params_bytes

  def fits(self) -> dict[str, bool]:
    return {name: self.peak_bytes <= gib * GIB for name, (gib, _) in DEVICES.items()}

  def tokens_per_second(self, peak_tflops: float, mfu: float) -> float:
    tokens = self.batch * (self.inputs_len + self.targets_len)
    seconds = self.flops_per_step / (self.devices * peak_tflops * 1e12 * mfu)
    return tokens / seconds


_DEBUG_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


# Per-instruction debug metadata (op names, stack-frame ids): an executable
# loaded from JAX's persistent compilation cache numbers its frames differently.
_METADATA = re.compile(r",? ?metadata=\{[^{}]*\}")


def program_fingerprint(compiled) -> str:
  """sha256 of a compiled step's partitioned HLO, without source locations and debug metadata."""
  blocks = compiled.as_text().split("\n\n")
  kept = [b for b in blocks if b.split("\n", 1)[0].strip() not in _DEBUG_TABLES]
  return hashlib.sha256(_METADATA.sub("", "\n\n".join(kept)).encode()).hexdigest()


def shard_bytes(tree) -> int:
  """Bytes one device holds of these (abstract or real) sharded arrays."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    if not hasattr(leaf, "sharding") or leaf.sharding is None:
      total += int(np.prod(leaf.shape)) * jnp.dtype(leaf.dtype).itemsize
      continue
    shape = leaf.sharding.shard_shape(tuple(leaf.shape))
    total += int(np.prod(shape)) * jnp.dtype(leaf.dtype).itemsize
  return total


def abstract_batch(batch: int, inputs_len: int, targets_len: int, mesh) -> dict:
  """The shapes and shardings of one training batch (unpacked features)."""
  shapes = {"encoder_input_tokens": ((batch, inputs_len), jnp.int32),
            "decoder_input_tokens": ((batch, targets_len), jnp.int32),
            "decoder_target_tokens": ((batch, targets_len), jnp.int32),
            "decoder_loss_weights": ((batch, targets_len), jnp.float32)}
  return {k: jax.ShapeDtypeStruct(s, d, sharding=sharding.batch_sharding(mesh, len(s)))
          for k, (s, d) in shapes.items()}


def preset_config(cfg: model_config.T5Config, mesh_shape: Sequence[int], batch: int,
                  inputs_len: int, targets_len: int,
                  optimizer: str = "adafactor") -> ml_collections.ConfigDict:
  """The default experiment around a bare model spec (what `info --plan --config=PRESET` plans)."""
  config = experiment.default_config()
  config.optimizer.name = optimizer
  config.mesh.shape = tuple(int(s) for s in mesh_shape)
  config.data.batch_size = batch
  config.data.inputs_length, config.data.targets_length = inputs_len, targets_len
  config.data.iterator_factory = "t5tune.train.synthetic:make_iterator"  # never read: no data
  return config


def step_parts(cfg: model_config.T5Config, mesh, optimizer: str = "adafactor") -> build.StepParts:
  """The train state's shapes and shardings on `mesh` of a bare model spec (no compile)."""
  config = preset_config(cfg, mesh.devices.shape, mesh.size, 1, 1, optimizer)
  return build.step_parts(config, mesh, cfg)


def make_plan(cfg: model_config.T5Config, mesh_shape: Sequence[int], batch: int,
              inputs_len: int, targets_len: int, optimizer: str = "adafactor",
              devices: Sequence[jax.Device] | None = None) -> Plan:
  """Compiles the default train step of a model spec for a (data, fsdp, tensor) mesh (see `plan`)."""
  mesh_shape = tuple(int(s) for s in mesh_shape)
  if batch % (mesh_shape[0] * mesh_shape[1]):
    raise errors.UsageError(f"batch {batch} does not split over data x fsdp ="
                            f" {mesh_shape[0] * mesh_shape[1]} devices", where="--mesh/--batch")
  return plan(preset_config(cfg, mesh_shape, batch, inputs_len, targets_len, optimizer),
              devices, model_cfg=cfg, where="--mesh/--batch")


def plan(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None,
         model_cfg: model_config.T5Config | None = None, where: str = "--config") -> Plan:
  """Compiles `config`'s train step, as the trainer builds it (`build.step_parts`: freeze
  masks, micro-batches, loss options), on config.mesh.shape; returns its per-device memory.

  `model_cfg` replaces the config's model (a plan of a bare model spec).
  """
  devices = list(jax.devices("cpu") if devices is None else devices)
  n = math.prod(s for s in config.mesh.shape if s > 0)
  if -1 not in tuple(config.mesh.shape) and len(devices) < n:
    raise errors.UsageError(
        f"the mesh {tuple(config.mesh.shape)} needs {n} devices, {len(devices)} are simulated",
        where="--mesh", fix=f"start the process with JAX_NUM_CPU_DEVICES={n}")
  mesh, cfg = build.resolve(config, devices=devices, model_cfg=model_cfg, where=where)
  parts = build.step_parts(config, mesh, cfg)
  state = parts.abstract_state
  batch_abs = abstract_batch(config.data.batch_size, config.data.inputs_length,
                             config.data.targets_length, mesh)
  start = time.perf_counter()
  compiled = parts.compile(state, batch_abs)
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", -1.0))
  except Exception:  # cost analysis is optional per backend
    xla_flops = -1.0
  batch, inputs_len, targets_len = (config.data.batch_size, config.data.inputs_length,
                                    config.data.targets_length)
  return Plan(
      mesh_shape=tuple(mesh.devices.shape), batch=batch, inputs_len=inputs_len,
      targets_len=targets_len, optimizer=config.optimizer.name,
      params_bytes=shard_bytes(state["params"]),
      opt_state_bytes=shard_bytes(state["opt_state"]),
      batch_bytes=shard_bytes(batch_abs),
      argument_bytes=int(memory.argument_size_in_bytes),
      output_bytes=int(memory.output_size_in_bytes),
      alias_bytes=int(memory.alias_size_in_bytes),
      temp_bytes=int(memory.temp_size_in_bytes),
      flops_per_step=float(info.train_flops(cfg, inputs_len, targets_len)) * batch,
      xla_flops_per_device=xla_flops, compile_seconds=seconds,
      hlo_sha256=program_fingerprint(compiled))


def gib(n: float) -> str:
  return f"{n / GIB:.2f} GiB" if n >= GIB / 4 else f"{n / 1024 ** 2:.1f} MiB"


def report(plan: Plan, mfu: float = 0.4) -> list[str]:
  """The plan as printable lines."""
  lines = [
      f"mesh (data, fsdp, tensor) = {plan.mesh_shape}: {plan.devices} devices; batch"
      f" {plan.batch} x ({plan.inputs_len} + {plan.targets_len}) tokens; {plan.optimizer}"
      f"; compiled in {plan.compile_seconds:.1f} s",
      "per-device memory:",
      f"  parameters        {gib(plan.params_bytes)}",
      f"  optimizer state   {gib(plan.opt_state_bytes)}",
      f"  gradients         {gib(plan.gradient_bytes)}  (within temporaries)",
      f"  activations/other {gib(max(plan.temp_bytes - plan.gradient_bytes, 0))}"
      "  (temporaries - gradients)",
      f"  XLA: arguments {gib(plan.argument_bytes)}, outputs {gib(plan.output_bytes)},"
      f" donated {gib(plan.alias_bytes)}, temporaries {gib(plan.temp_bytes)}",
      f"  peak estimate     {gib(plan.peak_bytes)}",
      "fits: " + ", ".join(f"{name} ({gb} GiB) {'yes' if ok else 'NO'}"
                           for (name, ok), (gb, _) in zip(plan.fits().items(), DEVICES.values())),
      f"FLOPs per step: {info.human(plan.flops_per_step)} (model matmuls, whole mesh)"
      + (f"; XLA counts {info.human(plan.xla_flops_per_device)} per device"
         if plan.xla_flops_per_device > 0 else ""),
      f"tokens/s at {mfu:.0%} MFU: " + ", ".join(
          f"{name} {plan.tokens_per_second(peak, mfu):,.0f}"
          for name, (_, peak) in DEVICES.items()),
  ]
  return lines
