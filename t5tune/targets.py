"""Named accelerator slices (Cloud TPU `v5e-8`, `v4-64`, `v5p-8`, `v6e-256`, multi-slice; `cpu-N`) and their compile-only devices.

A target is what a user books: a Cloud TPU name as gcloud and the console
spell it (`v5e-N` and `v6e-N` count chips; `v4-N` and `v5p-N` count
TensorCores, two per megacore chip, which jax shows as one device per chip),
optionally times `slices` joined over the data-centre network. `parse` maps
it to what the TPU compiler needs (topology name, chip config, chips per
host) and to the chip's memory and peak; `devices` asks libtpu for
compile-only devices of that topology, which exist on any host: programs are
partitioned and compiled by the real TPU compiler, and nothing runs (no TPU
client is opened, so it also works on a TPU VM whose chips are busy).

`cpu-N` is the older estimate: N simulated CPU devices
(`jax_num_cpu_devices`), where XLA's CPU backend fuses differently from a
TPU's, so temporaries are an estimate.

Only powers of two are mapped (the slice shapes Cloud TPU sells for
v5e/v6e, and the cubic and near-cubic ones of v4/v5p); an odd v4/v5p
shape such as v4-384 is refused with the sizes that are known.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Sequence

from t5tune import errors


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation: how the compiler names it, and the public figures of one chip."""
  generation: str  # the prefix users type: v5e
  topology_prefix: str  # the prefix of libtpu's topology names: v5e:2x2, v5:2x2x1
  device_kind: str  # as the compiler reports it (jax.Device.device_kind)
  accelerator_type: str  # the Cloud TPU accelerator type prefix (TPU_ACCELERATOR_TYPE)
  hbm_gib: float  # high-bandwidth memory per chip
  peak_tflops: float  # dense bf16 peak per chip
  hbm_gbps: float  # HBM bandwidth per chip, GB/s
  megacore: bool  # two TensorCores per chip, shown as one device; names count cores
  dims: int  # 2: a 2-D torus of chips (v5e, v6e); 3: a 3-D one (v4, v5p); 0: a GPU host
  max_chips: int
  platform: str = "tpu"


# Per-chip figures from Google Cloud's "TPU v4", "TPU v5e", "TPU v5p" and
# "TPU v6e (Trillium)" system-architecture pages (cloud.google.com/tpu/docs/v4,
# .../v5e, .../v5p, .../v6e), as published in 2024-2025: HBM capacity, peak bf16
# compute and HBM bandwidth of one chip.
CHIPS = {
    "v4": Chip("v4", "v4", "TPU v4", "v4", 32, 275, 1228, megacore=True, dims=3,
               max_chips=2048),
    "v5e": Chip("v5e", "v5e", "TPU v5 lite", "v5litepod", 16, 197, 819, megacore=False,
                dims=2, max_chips=256),
    "v5p": Chip("v5p", "v5", "TPU v5", "v5p", 95, 459, 2765, megacore=True, dims=3,
                max_chips=4096),
    "v6e": Chip("v6e", "v6e", "TPU v6 lite", "v6e", 32, 918, 1640, megacore=False, dims=2,
                max_chips=256),
    # NVIDIA's H100 SXM datasheet: 80 GB HBM3 (79.6 GiB as nvidia-smi reports it), 989
    # TFLOP/s dense bf16, 3.35 TB/s; one host of up to 8 (an HGX board).
    "h100": Chip("h100", "", "NVIDIA H100 80GB HBM3", "", 79.6, 989, 3350, megacore=False,
                 dims=0, max_chips=8, platform="gpu"),
}
_NAME = re.compile(r"^(v4|v5e|v5p|v6e|v5litepod|h100|cpu)-(\d+)$")

# What the CUDA compiler needs to know of an H100 SXM to compile without one
# (xla's GpuTargetConfig, text format): its compute capability, SM count,
# clocks, caches, memory. Figures from NVIDIA's H100 datasheet and CUDA's
# device query of an H100 SXM (132 SMs, 228 KiB shared memory per SM).
_H100_TARGET_CONFIG = """gpu_device_info {
  threads_per_block_limit: 1024  threads_per_warp: 32
  shared_memory_per_block: 49152  shared_memory_per_core: 233472
  shared_memory_per_block_optin: 232448  threads_per_core_limit: 2048
  core_count: 132  fpus_per_core: 128
  block_dim_limit_x: 2147483647  block_dim_limit_y: 65535  block_dim_limit_z: 65535
  memory_bandwidth: 3350000000000  l2_cache_size: 52428800  clock_rate_ghz: 1.98
  device_memory_size: 85520809984
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536  registers_per_block_limit: 65536
}
platform_name: "CUDA"
device_description_str: "NVIDIA H100 80GB HBM3"
"""


@dataclasses.dataclass(frozen=True)
class Target:
  """A named slice (or `slices` of them): the compiler's view and the chip's figures."""
  name: str  # as the user typed it, normalised: v5e-8
  chip: Chip | None  # None for cpu-N
  chips: int  # per slice
  topology: str  # libtpu's topology name, e.g. v5e:2x4 ("" for cpu-N)
  chips_per_host: tuple[int, int, int]
  slices: int = 1

  @property
  def devices_per_slice(self) -> int:
    return self.chips  # one jax device per chip (megacore chips too)

  @property
  def num_devices(self) -> int:
    return self.chips * self.slices

  @property
  def hosts(self) -> int:
    return self.slices * max(1, self.chips // math.prod(self.chips_per_host))

  @property
  def is_tpu(self) -> bool:
    return self.chip is not None and self.chip.platform == "tpu"

  @property
  def compiled(self) -> bool:
    """Compiled for the real chip (TPU or GPU compile-only devices), not simulated CPUs."""
    return self.chip is not None

  @property
  def label(self) -> str:
    return self.name if self.slices == 1 else f"{self.slices} x {self.name}"

  def describe(self) -> str:
    if self.chip is None:
      return f"{self.name}: {self.chips} simulated CPU devices (an estimate: XLA's CPU backend)"
    if not self.is_tpu:
      return (f"{self.name}: {self.chips} {self.chip.device_kind} on one host,"
              f" {self.chip.hbm_gib:g} GiB and {self.chip.peak_tflops:g} TFLOP/s bf16 each")
    return (f"{self.label}: {self.num_devices} {self.chip.device_kind} chips"
            f" (topology {self.topology}{', megacore' if self.chip.megacore else ''},"
            f" {self.hosts} host{'s' if self.hosts > 1 else ''}), {self.chip.hbm_gib:g} GiB HBM"
            f" and {self.chip.peak_tflops:g} TFLOP/s bf16 per chip")


def _shape(chip: Chip, chips: int) -> tuple[int, ...]:
  """The torus shape of a power-of-two slice: 2-D as Cloud TPU's v5e/v6e slices, 3-D as v4/v5p's."""
  k = chips.bit_length() - 1
  if chip.dims == 2:
    return (1 << (k // 2), 1 << (k - k // 2))
  if chips == 4:
    return (2, 2, 1)
  shape = [2, 2, 2]  # 8 chips; then z, y, x double in turn: 2x2x4, 2x4x4, 4x4x4, 4x4x8, ...
  axis = 2
  for _ in range(k - 3):
    shape[axis] *= 2
    axis = (axis - 1) % 3
  return tuple(shape)


def known_sizes(chip: Chip) -> list[int]:
  """The sizes as users name them (chips, or TensorCores for megacore chips)."""
  counts = [1 << k for k in range(chip.max_chips.bit_length())]
  counts = [c for c in counts if c != 2 and (chip.dims == 2 or c >= 4)]
  return [c * (2 if chip.megacore else 1) for c in counts]


def parse(name: str, slices: int = 1) -> Target:
  """The Target of a name such as v5e-8, v4-64, v5p-8, v6e-256 or cpu-8; UsageError otherwise."""
  text = str(name).strip().lower()
  match = _NAME.match(text)
  if slices < 1:
    raise errors.UsageError(f"--slices={slices} must be at least 1", where="--slices",
                            fix="give the number of slices joined over DCN, e.g. 2")
  if not match:
    names = ", ".join(f"{g}-N" for g in CHIPS) + ", cpu-N"
    raise errors.UsageError(f"--target={name!r} is not a known slice name", where="--target",
                            fix=f"give one of {names} (e.g. v5e-8, v4-64, v5p-8, v6e-4)")
  generation, size = match.group(1), int(match.group(2))
  if generation == "v5litepod":
    generation = "v5e"
  if generation == "cpu":
    if size < 1:
      raise errors.UsageError(f"--target={name}: cpu-N needs N >= 1", where="--target")
    return Target(name=f"cpu-{size}", chip=None, chips=size, topology="",
                  chips_per_host=(size, 1, 1), slices=slices)
  chip = CHIPS[generation]
  if chip.platform == "gpu":
    if size not in (1, 2, 4, 8) or slices != 1:
      raise errors.UsageError(
          f"--target={name} --slices={slices}: {generation} targets are one host of 1, 2, 4 or 8"
          " GPUs", where="--target", fix=f"give e.g. {generation}-8 without --slices")
    return Target(name=f"{generation}-{size}", chip=chip, chips=size, topology=f"1x1x{size}",
                  chips_per_host=(size, 1, 1))
  sizes = known_sizes(chip)
  if size not in sizes:
    raise errors.UsageError(
        f"--target={name}: {generation} slices come in sizes {', '.join(map(str, sizes))}"
        + (" (TensorCores: two per chip)" if chip.megacore else " (chips)"), where="--target",
        fix=f"give e.g. {generation}-{sizes[min(2, len(sizes) - 1)]}")
  chips = size // 2 if chip.megacore else size
  shape = _shape(chip, chips)
  if chip.dims == 2:
    # One host drives 1 chip (v5e-1), 4 (v5e-4), 8 (v5e-8: one 8-chip host); larger slices
    # are hosts of 2x2 chips.
    per_host = (shape[0], shape[1], 1) if chips <= 8 else (2, 2, 1)
  else:
    per_host = (2, 2, 1)
  return Target(name=f"{generation}-{size}", chip=chip, chips=chips,
                topology=f"{chip.topology_prefix}:{'x'.join(map(str, shape))}",
                chips_per_host=per_host, slices=slices)


def _libtpu_missing() -> errors.UsageError:
  return errors.UsageError(
      "--target needs the TPU compiler (the libtpu wheel), which is not installed",
      where="--target", fix="pip install -e '.[tpu]' (or 'jax[tpu]' at your jax's version)")


def prepare_environment(target: Target | None = None) -> None:
  """Environment libtpu reads when it loads, for compile-only use on any host.

  Set only where unset: on a TPU VM the runtime's own values stay. Without
  them libtpu asks the GCE metadata server and prints warnings about the
  accelerator type and worker hostnames; the accelerator type given here only
  silences that (compile-only devices take their topology from `devices`).
  """
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  # libtpu's one-process-per-host lock (/tmp/libtpu_lockfile) guards the chips,
  # which compile-only devices never touch: planning beside a running job, or
  # beside another plan, must not fail with "TPU in use".
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  if target is not None and target.is_tpu:
    os.environ.setdefault("TPU_ACCELERATOR_TYPE",
                          f"{target.chip.accelerator_type}-{target.chips * (2 if target.chip.megacore else 1)}")
  os.environ.setdefault("TPU_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TPU_STDERR_LOG_LEVEL", "2")


def devices(target: Target) -> list:
  """Compile-only devices of the target, or the simulated CPU devices of cpu-N."""
  import jax
  if target.chip is None:
    have = jax.devices("cpu")
    if len(have) < target.num_devices:
      raise errors.UsageError(
          f"--target={target.name} needs {target.num_devices} CPU devices, {len(have)} are"
          " simulated", where="--target",
          fix=f"start the process with JAX_NUM_CPU_DEVICES={target.num_devices}")
    return list(have[:target.num_devices])
  if target.chip.platform == "gpu":
    return _gpu_devices(target)
  try:
    import libtpu  # noqa: F401  (the wheel jax[tpu] pins)
  except ImportError:
    raise _libtpu_missing() from None
  prepare_environment(target)
  from jax.experimental import topologies
  topology = topologies.get_topology_desc(
      platform="tpu", topology_name=target.topology,
      chip_config_name="megacore" if target.chip.megacore else "default",
      chips_per_host_bounds=target.chips_per_host, num_slices=target.slices)
  return list(topology.devices)


def _gpu_devices(target: Target) -> list:
  """Compile-only CUDA devices from jax's CUDA plugin (no GPU, driver or CUDA libraries needed)."""
  import importlib.util

  import jax
  if importlib.util.find_spec("jax_plugins.xla_cuda12") is None:
    raise errors.UsageError(
        f"--target={target.name} needs jax's CUDA compiler plugin, which is not installed",
        where="--target",
        fix=f"pip install -e '.[gpu-aot]' (jax-cuda12-pjrt and jax-cuda12-plugin {jax.__version__})")
  from jax.experimental import topologies
  topology = topologies.get_topology_desc(platform="cuda", topology_name="",
                                          target_config=_H100_TARGET_CONFIG,
                                          topology=target.topology)
  return list(topology.devices)


def device_mesh(shape: Sequence[int], devices_: Sequence) -> "object":
  """The devices laid out as a (data, fsdp, tensor) array on the physical topology.

  TPU devices go through jax's `mesh_utils` (the mapping `jax.make_mesh` gives
  training on that hardware: neighbouring devices on the torus share an axis;
  several slices put `data` over the network between them); others in order.
  """
  import numpy as np
  shape = tuple(int(s) for s in shape)
  devices_ = list(devices_)
  if not devices_ or devices_[0].platform != "tpu":
    return np.asarray(devices_).reshape(shape)
  from jax.experimental import mesh_utils
  slices = len({getattr(d, "slice_index", 0) for d in devices_})
  if slices > 1:
    if shape[0] % slices:
      raise errors.UsageError(
          f"the mesh's data axis {shape[0]} does not split over {slices} slices", where="--mesh",
          fix=f"make the data axis a multiple of --slices={slices}")
    return mesh_utils.create_hybrid_device_mesh(
        (shape[0] // slices,) + shape[1:], (slices, 1, 1), devices_,
        allow_split_physical_axes=True)
  return mesh_utils.create_device_mesh(shape, devices_, allow_split_physical_axes=True)


def quiet_without_tpu() -> None:
  """Keeps jax from probing an installed libtpu on a host without TPU chips (a CLI start-up step).

  With libtpu installed (the `[tpu]` and `[test]` extras) and JAX_PLATFORMS
  unset, jax initialises the TPU backend first, and libtpu prints five lines
  of warnings on every command of a host without chips before jax falls back.
  jax's own chip count (PCI ids) decides; on a TPU VM nothing changes, and
  an explicit JAX_PLATFORMS always wins.
  """
  if os.environ.get("JAX_PLATFORMS") is not None:
    return
  import importlib.util
  if importlib.util.find_spec("libtpu") is None:
    return
  from jax._src import hardware_utils
  if hardware_utils.num_available_tpu_chips_and_device_id()[0]:
    return
  gpu = any(importlib.util.find_spec(m) is not None
            for m in ("jax_cuda12_plugin", "jax_cuda13_plugin"))
  platforms = "cuda,cpu" if gpu else "cpu"
  os.environ["JAX_PLATFORMS"] = platforms  # child processes
  import jax
  jax.config.update("jax_platforms", platforms)  # this one: jax read the variable on import
