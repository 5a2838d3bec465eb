"""A memory plan: the real train step compiled ahead of time for a mesh, and what XLA says it needs.

Nothing is allocated: the model, optimizer state and batch are
`ShapeDtypeStruct`s carrying the shardings the trainer gives them, and the
step is the trainer's own (`build.step_parts` of the experiment config: its
freeze masks, micro-batches and loss options), lowered and compiled, so it
is partitioned for the mesh exactly as training would. The per-device figures are then

* parameters, optimizer state: the bytes of each array's shard on one device
  (from its sharding; exact),
* XLA's memory analysis of the compiled step: arguments (state + batch),
  outputs, the aliased (donated) part, temporaries (the gradients and the
  activations kept for the backward pass) and the generated code,
* a peak, arguments + outputs - aliased + temporaries.

The devices are a named target's (`t5tune.targets`): a Cloud TPU slice's
compile-only devices, where the TPU compiler itself partitions, fuses and
lays out the step, so the figures are the chip's, and a step that does not
fit is the compiler's own RESOURCE_EXHAUSTED answer (`Plan.oom`); or
simulated CPU devices (`jax_num_cpu_devices`, `cpu-N`), where XLA's CPU
backend fuses differently, so temporaries are an estimate within tens of
percent while parameter and optimizer-state bytes stay exact.
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
from t5tune import targets as targets_lib
from t5tune.models import config as model_config
from t5tune.models import info
from t5tune.train import build
from t5tune.train import experiment

GIB = 1024 ** 3
# The accelerators a CPU-simulated plan is held against: memory per device (GiB)
# and dense bf16 peak (TFLOP/s). A plan for a named target judges its own chip
# (t5tune.targets.CHIPS) instead.
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
  code_bytes: int = 0  # generated code, per device
  device_kind: str = ""  # as the compiler reports it ("cpu", "TPU v5 lite")
  target: targets_lib.Target | None = None  # the named slice it was compiled for
  oom: str = ""  # the compiler's RESOURCE_EXHAUSTED message: the step does not fit
  # The compiled step itself (its HLO, shardings), for callers that inspect or serialise it.
  compiled: object = dataclasses.field(default=None, repr=False, compare=False)

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

  @property
  def fits_target(self) -> bool:
    """The step compiled for the target's chip and its peak is within the chip's HBM."""
    chip = self.target.chip
    return not self.oom and self.peak_bytes <= chip.hbm_gib * GIB

  def roofline(self, mfu: float) -> dict[str, float]:
    """The compute roofline on the target's chip (every FLOP at the chip's peak).

    `step_seconds`: XLA's FLOPs per chip (remat recomputation included) at
    peak, the fastest this step can run; `best_mfu`: the model's FLOPs per
    chip over XLA's, the most of the peak that counts as model FLOPs;
    `tokens_per_chip`: tokens/s per chip at `mfu` of peak (model FLOPs).
    """
    peak = self.target.chip.peak_tflops * 1e12
    model_per_chip = self.flops_per_step / self.devices
    # XLA's cost analysis counts a while loop's body once, so with scanned
    # layers it falls below the model's own count: take the larger.
    xla = max(self.xla_flops_per_device, model_per_chip)
    tokens = self.batch * (self.inputs_len + self.targets_len)
    return {"step_seconds": xla / peak, "best_mfu": model_per_chip / xla,
            "tokens_per_chip": tokens / self.devices / (model_per_chip / (peak * mfu))}

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
              devices: Sequence[jax.Device] | None = None,
              target: targets_lib.Target | None = None) -> Plan:
  """Compiles the default train step of a model spec for a (data, fsdp, tensor) mesh (see `plan`)."""
  return plan(preset_config(cfg, _mesh_for(mesh_shape, batch, devices), batch, inputs_len,
                            targets_len, optimizer),
              devices, model_cfg=cfg, where="--mesh/--batch", target=target)


def _mesh_for(mesh_shape: Sequence[int], batch: int, devices) -> tuple[int, int, int]:
  """The mesh shape (one -1 resolved against the devices) after checking the batch splits over it."""
  mesh_shape = tuple(int(s) for s in mesh_shape)
  if -1 in mesh_shape and devices is not None:
    try:
      mesh_shape = sharding.resolve_mesh_shape(mesh_shape, len(devices))
    except ValueError as e:
      raise errors.UsageError(str(e), where="--mesh") from None
  dp = mesh_shape[0] * mesh_shape[1]
  if dp > 0 and batch % dp:
    raise errors.UsageError(f"batch {batch} does not split over data x fsdp = {dp} devices",
                            where="--mesh/--batch", fix=f"give a multiple of {dp}")
  return mesh_shape


def max_batch(compile_at, start: int, multiple: int, limit: int = 1 << 20,
              log=lambda s: None, known: dict[int, Plan] | None = None
              ) -> tuple[int, Plan | None, dict[int, Plan]]:
  """The largest multiple of `multiple` whose plan fits the target, by doubling then bisection.

  `compile_at(batch) -> Plan` compiles one batch size (each size at most once:
  the plans are kept, starting from `known`); returns (largest batch that fits
  or 0, its plan, every plan made).
  """
  plans: dict[int, Plan] = dict(known or {})

  def fits(b: int) -> bool:
    if b not in plans:
      plans[b] = compile_at(b)
      log(f"batch {b}: " + ("fits" if plans[b].fits_target else "does not fit")
          + (f", peak {gib(plans[b].peak_bytes)}" if not plans[b].oom else ""))
    return plans[b].fits_target

  k = max(1, start // multiple)
  if fits(k * multiple):
    lo, hi = k, None
    while hi is None:
      if (2 * lo) * multiple > limit:
        return lo * multiple, plans[lo * multiple], plans
      if fits(2 * lo * multiple):
        lo *= 2
      else:
        hi = 2 * lo
  else:
    lo, hi = 0, k
    while hi > 1 and not fits((hi // 2) * multiple):
      hi //= 2
    if hi == 1:
      return 0, None, plans
    lo = hi // 2
  while hi - lo > 1:  # lo fits, hi does not
    mid = (lo + hi) // 2
    if fits(mid * multiple):
      lo = mid
    else:
      hi = mid
  return lo * multiple, plans[lo * multiple], plans


def plan(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None,
         model_cfg: model_config.T5Config | None = None, where: str = "--config",
         target: targets_lib.Target | None = None) -> Plan:
  """Compiles `config`'s train step, as the trainer builds it (`build.step_parts`: freeze
  masks, micro-batches, loss options), on config.mesh.shape; returns its per-device memory.

  `model_cfg` replaces the config's model (a plan of a bare model spec);
  `target` names the slice `devices` belong to (`targets.devices(target)`).
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
  batch, inputs_len, targets_len = (config.data.batch_size, config.data.inputs_length,
                                    config.data.targets_length)
  sizes = dict(mesh_shape=tuple(mesh.devices.shape), batch=batch, inputs_len=inputs_len,
               targets_len=targets_len, optimizer=config.optimizer.name,
               params_bytes=shard_bytes(state["params"]),
               opt_state_bytes=shard_bytes(state["opt_state"]),
               batch_bytes=shard_bytes(batch_abs),
               flops_per_step=float(info.train_flops(cfg, inputs_len, targets_len)) * batch,
               device_kind=devices[0].device_kind, target=target)
  start = time.perf_counter()
  try:
    compiled = parts.compile(state, batch_abs)
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    # The TPU compiler's answer that the step does not fit the chip's HBM.
    return Plan(**sizes, argument_bytes=0, output_bytes=0, alias_bytes=0, temp_bytes=0,
                xla_flops_per_device=-1.0, compile_seconds=time.perf_counter() - start,
                oom=str(e).strip().splitlines()[0])
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", -1.0))
  except Exception:  # cost analysis is optional per backend
    xla_flops = -1.0
  return Plan(
      **sizes,
      argument_bytes=int(memory.argument_size_in_bytes),
      output_bytes=int(memory.output_size_in_bytes),
      alias_bytes=int(memory.alias_size_in_bytes),
      temp_bytes=int(memory.temp_size_in_bytes),
      code_bytes=int(memory.generated_code_size_in_bytes),
      xla_flops_per_device=xla_flops, compile_seconds=seconds,
      hlo_sha256=program_fingerprint(compiled), compiled=compiled)


def gib(n: float) -> str:
  return f"{n / GIB:.2f} GiB" if n >= GIB / 4 else f"{n / 1024 ** 2:.1f} MiB"


def report(plan: Plan, mfu: float = 0.4) -> list[str]:
  """The plan as printable lines: judged against its target's chip, or the CPU estimate's four."""
  target = plan.target if plan.target is not None and plan.target.compiled else None
  head = (f"mesh (data, fsdp, tensor) = {plan.mesh_shape}: {plan.devices} devices; batch"
          f" {plan.batch} x ({plan.inputs_len} + {plan.targets_len}) tokens; {plan.optimizer}"
          f"; compiled in {plan.compile_seconds:.1f} s")
  if target is not None:
    compiler = "TPU" if target.is_tpu else "CUDA"
    lines = [f"target {target.describe()}",
             f"compiled by the {compiler} compiler for {plan.device_kind!r}; {head}"]
  else:
    lines = [f"{head} (simulated CPU devices: an estimate, see --target)"]
  per = "per-chip" if target is not None else "per-device"
  lines += [
      f"{per} memory:",
      f"  parameters        {gib(plan.params_bytes)}",
      f"  optimizer state   {gib(plan.opt_state_bytes)}"]
  if plan.oom:
    chip = target.chip
    return lines + [
        f"fits {target.label}: NO — the compiler ran out of {chip.hbm_gib:g} GiB HBM: {plan.oom}",
        f"FLOPs per step: {info.human(plan.flops_per_step)} (model matmuls, whole mesh)"]
  lines += [
      f"  gradients         {gib(plan.gradient_bytes)}  (within temporaries)",
      f"  activations/other {gib(max(plan.temp_bytes - plan.gradient_bytes, 0))}"
      "  (temporaries - gradients)",
      f"  XLA: arguments {gib(plan.argument_bytes)}, outputs {gib(plan.output_bytes)},"
      f" donated {gib(plan.alias_bytes)}, temporaries {gib(plan.temp_bytes)},"
      f" code {gib(plan.code_bytes)}",
      f"  {'peak' if target is not None else 'peak estimate':<18}{gib(plan.peak_bytes)}"]
  flops = (f"FLOPs per step: {info.human(plan.flops_per_step)} (model matmuls, whole mesh)"
           + (f"; XLA counts {info.human(plan.xla_flops_per_device)} per device"
              if plan.xla_flops_per_device > 0 else ""))
  if target is not None:
    chip = target.chip
    spare = chip.hbm_gib * GIB - plan.peak_bytes
    verdict = (f"yes, {gib(spare)} of {chip.hbm_gib:g} GiB HBM to spare" if plan.fits_target
               else f"NO, over {chip.hbm_gib:g} GiB HBM by {gib(-spare)}")
    roof = plan.roofline(mfu)
    return lines + [
        f"fits {target.label}: {verdict}",
        flops,
        f"roofline at {chip.peak_tflops:g} TFLOP/s per chip: step >= {roof['step_seconds'] * 1e3:.2f} ms"
        + (f" (XLA's FLOPs at peak); best possible MFU {roof['best_mfu']:.0%} (model / XLA FLOPs)"
           if plan.xla_flops_per_device * plan.devices >= plan.flops_per_step else
           " (model FLOPs at peak: XLA counts a scanned layer loop's body once)"),
        f"tokens/s per chip at {mfu:.0%} MFU: {roof['tokens_per_chip']:,.0f}"
        f" ({roof['tokens_per_chip'] * plan.devices:,.0f} for the {plan.devices} chips)"]
  return lines + [
      "fits: " + ", ".join(f"{name} ({gb} GiB) {'yes' if ok else 'NO'}"
                           for (name, ok), (gb, _) in zip(plan.fits().items(), DEVICES.values())),
      flops,
      f"tokens/s at {mfu:.0%} MFU: " + ", ".join(
          f"{name} {plan.tokens_per_second(peak, mfu):,.0f}"
          for name, (_, peak) in DEVICES.items()),
  ]
