"""`t5tune info`: parameter count, per-component breakdown and FLOPs of a model config.

  t5tune info --config=flan_t5_xxl
  t5tune info --config=t5_1_1_base --inputs_len=512 --targets_len=128
  t5tune info --config=path/to/hf_or_t5tune_model_dir
  t5tune info --config=flan_t5_xxl --plan --mesh=1,64,4 --batch=256 --lengths=512,128 \
      --optimizer=adamw --remat=full --dtype=bfloat16
  t5tune info --config=configs/experiments/tiny.py --plan   # the experiment's own train step
  t5tune info --config=flan_t5_xl --plan --target=v4-8 --scan_layers --dtype=bfloat16
  t5tune info --config=flan_t5_base --plan --target=v5e-8 --slices=2 --max_batch

--target compiles with the TPU compiler (the libtpu wheel, `pip install -e
'.[tpu]'`) for a named Cloud TPU slice's compile-only devices: the chip's own
memory figures, whether it fits, and a roofline; cpu-N (or no --target) is the
estimate on N simulated CPU devices.

With an experiment config, --plan compiles the step `t5tune train` would
(its freeze masks, micro-batches, loss options, mesh, batch and lengths);
--mesh, --batch, --lengths, --optimizer, --remat, --dtype and --scan_layers
change it only when given.
"""
import os

from absl import flags

from t5tune import errors
from t5tune.cli import arguments
from t5tune.cli import common
from t5tune.models import config as model_config

_CONFIG = flags.DEFINE_string(
    "config", None, "A preset name (e.g. flan_t5_base; t5tune.models.config.PRESETS), a .py file whose"
    " get_config() gives T5Config fields, or a"
    " model directory (t5tune or Hugging Face).", allow_override=True)
_INPUTS_LEN = flags.DEFINE_integer("inputs_len", 512, "Input length for the FLOP estimate.", allow_override=True)
_TARGETS_LEN = flags.DEFINE_integer("targets_len", 128, "Target length for the FLOP estimate.", allow_override=True)
_PLAN = flags.DEFINE_bool(
    "plan", False, "Compile the train step ahead of time for --mesh (simulated CPU devices)"
    " and print per-device memory from XLA's memory analysis.", allow_override=True)
_MESH = flags.DEFINE_list("mesh", ["1", "8", "1"], "--plan: mesh shape data,fsdp,tensor.", allow_override=True)
_BATCH = flags.DEFINE_integer("batch", 256, "--plan: global batch size (examples); with a TPU or GPU"
                              " --target, default one example per data-parallel chip.",
                              allow_override=True)
_LENGTHS = flags.DEFINE_list("lengths", None, "--plan: inputs,targets lengths (default"
                             " --inputs_len,--targets_len).", allow_override=True)
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adafactor", ["adafactor", "adamw"],
                               "--plan: the optimizer whose state is planned for.", allow_override=True)
_REMAT = flags.DEFINE_enum("remat", None, list(model_config.REMAT_POLICIES),
                           "--plan: rematerialisation policy (default: the config's).", allow_override=True)
_SCAN = flags.DEFINE_bool("scan_layers", None, "--plan: scan over layers (default: the config's).", allow_override=True)
_DTYPE = flags.DEFINE_enum("dtype", None, list(model_config.DTYPES),
                           "--plan: activation dtype (default: the config's).", allow_override=True)
_TARGET = flags.DEFINE_string(
    "target", None, "--plan: a Cloud TPU slice (v5e-1 ... v5e-256, v4-8 ... v4-4096, v5p-8 ...,"
    " v6e-1 ... v6e-256; v4/v5p count TensorCores) compiled for by the TPU compiler, or cpu-N"
    " (simulated CPU devices, an estimate). Default: --mesh on simulated CPU devices.",
    allow_override=True)
_SLICES = flags.DEFINE_integer("slices", 1, "--plan --target: slices joined over the data-centre"
                               " network (multi-slice; the data axis spans them).", allow_override=True)
_MAX_BATCH = flags.DEFINE_bool("max_batch", False, "--plan --target: the largest global batch that"
                               " fits the target's chips (bisection over compiles).", allow_override=True)
_MFU = flags.DEFINE_float("mfu", 0.4, "--plan: assumed model FLOPs utilisation for tokens/s.", allow_override=True)


def _is_experiment(config) -> bool:
  return "optimizer" in config and "model" in config


def resolve(spec: str):
  """(T5Config, experiment config or None) from a preset name, a config file, or a model directory."""
  if os.path.isdir(spec):
    from t5tune.convert import loading
    return loading.read_config(spec), None
  from t5tune.models import family
  try:
    if spec.partition(":")[0].endswith(".py"):
      config = common.load_config_file(spec)
      if _is_experiment(config):
        from t5tune.train import build
        return build.model_config_of(config), config
      return family.config_from_dict(config.to_dict()), None
    return family.preset(spec), None
  except errors.T5tuneError:
    raise
  except ValueError as e:
    raise errors.UsageError(str(e), where=f"--config={spec}",
                            fix="give a preset name, a model config file or a model dir"
                            ) from None


def main(argv):
  arguments.no_extra_args(argv, "info")
  arguments.require([_CONFIG], "info")
  for holder in (_INPUTS_LEN, _TARGETS_LEN, _BATCH):
    if holder.value < 1:
      raise errors.UsageError(f"--{holder.name}={holder.value} must be at least 1",
                              where=f"--{holder.name}", fix="give a positive count")
  if not 0 < _MFU.value <= 1:
    raise errors.UsageError(f"--mfu={_MFU.value} must be in (0, 1]", where="--mfu",
                            fix="e.g. 0.4 (40% of peak)")
  plan_args = _plan_args() if _PLAN.value or _TARGET.value else None  # --target implies --plan
  from t5tune.models import info
  cfg, experiment_config = resolve(_CONFIG.value)
  counts = info.parameter_counts(cfg)
  print(f"model: {_CONFIG.value}")
  print(f"  {info.describe(cfg)}")
  print("parameters:")
  width = max(len(k) for k in counts)
  for key, n in counts.items():
    if key != "total":
      print(f"  {key:<{width}}  {n:>15,d}  ({info.human(n)})")
  print(f"  {'total':<{width}}  {counts['total']:>15,d}  ({info.human(counts['total'])})")
  L, T = _INPUTS_LEN.value, _TARGETS_LEN.value
  if experiment_config is not None and not (_given("inputs_len") or _given("targets_len")):
    L, T = experiment_config.data.inputs_length, experiment_config.data.targets_length
  fwd = info.forward_flops(cfg, L, T)
  print(f"FLOPs per example ({L} input / {T} target tokens):")
  print(f"  forward  {info.human(fwd)}  ({info.human(fwd / (L + T))} per token)")
  tr = info.train_flops(cfg, L, T)
  print(f"  training {info.human(tr)}  ({info.human(tr / (L + T))} per token)")
  if plan_args:
    _print_plan(cfg, experiment_config, *plan_args)


def _plan_args() -> tuple[tuple[int, ...], list[int], "object"]:
  """(mesh, lengths, target or None) of --plan; sets the simulated CPU device count before jax starts."""
  import math

  import jax
  spec = _CONFIG.value.partition(":")[0]
  experiment_file = spec.endswith(".py") and os.path.isfile(spec)
  def ints(flag, text, count, fix):
    """A tuple of `count` positive ints from a list flag, or a UsageError naming that flag."""
    try:
      values = tuple(int(x.strip("() ")) for x in text)
    except ValueError:
      values = ()
    if len(values) != count or min(values) < 1:
      raise errors.UsageError(f"--{flag}={','.join(text)} must be {count} positive integers",
                              fix=fix)
    return values

  try:
    mesh = tuple(int(x.strip("() ")) for x in _MESH.value)
  except ValueError:
    mesh = ()
  if not (_TARGET.value and len(mesh) == 3 and mesh.count(-1) == 1):  # -1: the rest of a target
    mesh = ints("mesh", _MESH.value, 3, "give data,fsdp,tensor sizes, e.g. --mesh=1,8,1")
  lengths = (ints("lengths", _LENGTHS.value, 2, "give inputs,targets, e.g. --lengths=512,128")
             if _LENGTHS.value else (_INPUTS_LEN.value, _TARGETS_LEN.value))
  if min(lengths) < 1:
    raise errors.UsageError(f"--inputs_len/--targets_len {lengths} must be positive",
                            fix="give lengths of at least 1")
  if _TARGET.value:
    from t5tune import targets
    target = targets.parse(_TARGET.value, _SLICES.value)
    if not _given("mesh"):
      mesh = (target.slices, -1, 1)  # FSDP over each slice, data parallel across slices
    elif -1 not in mesh and math.prod(mesh) != target.num_devices:
      raise errors.UsageError(
          f"--mesh={','.join(map(str, mesh))} has {math.prod(mesh)} devices, {target.label} has"
          f" {target.num_devices}", where="--mesh",
          fix=f"make the product {target.num_devices} (one axis may be -1)")
    if not target.compiled:
      if _MAX_BATCH.value:
        raise errors.UsageError("--max_batch needs a TPU or GPU target (a CPU has no memory limit to"
                                " bisect against)", where="--target", fix="e.g. --target=v5e-8")
      jax.config.update("jax_num_cpu_devices", target.num_devices)
    return mesh, lengths, target
  if _given("slices") or _MAX_BATCH.value:
    raise errors.UsageError("--slices and --max_batch need --target", where="--target",
                            fix="name a slice, e.g. --target=v5e-8")
  if experiment_file and not _given("mesh"):
    # The experiment's own mesh (possibly with a -1 entry): as many simulated
    # devices as it names, at least --mesh's.
    shape = tuple(common.load_config_file(_CONFIG.value).get("mesh", {}).get("shape", mesh))
    mesh = tuple(shape) if min(shape) > 0 else mesh
  # As many simulated CPU devices as the mesh has; this must happen before
  # anything starts jax's CPU backend.
  jax.config.update("jax_num_cpu_devices", math.prod(mesh))
  return mesh, lengths, None


def _given(name: str) -> bool:
  return flags.FLAGS[name].present > 0


def _print_plan(cfg: model_config.T5Config, experiment_config, mesh, lengths, target) -> None:
  overrides = {k: v for k, v in (("remat_policy", _REMAT.value), ("dtype", _DTYPE.value),
                                 ("scan_layers", _SCAN.value)) if v is not None}
  try:
    cfg = cfg.replace(**overrides)
  except ValueError as e:
    raise errors.UsageError(str(e), where="--remat/--dtype/--scan_layers") from None
  from t5tune.train import plan
  devices = None
  if target is not None:
    from t5tune import targets
    devices = targets.devices(target)
  try:
    if experiment_config is None:
      def compile_at(batch):
        return plan.make_plan(cfg, mesh, batch, lengths[0], lengths[1], _OPTIMIZER.value,
                              devices=devices, target=target)
    else:
      config = experiment_config
      with config.unlocked():
        for key, value in overrides.items():
          config.model.overrides[key] = value
        if _given("mesh") or target is not None:
          config.mesh.shape = tuple(mesh)
        if _given("batch"):
          config.data.batch_size = _BATCH.value
        if _given("lengths"):
          config.data.inputs_length, config.data.targets_length = lengths
        if _given("optimizer"):
          config.optimizer.name = _OPTIMIZER.value

      def compile_at(batch):
        with config.unlocked():
          config.data.batch_size = batch
        return plan.plan(config, devices, target=target)
    batch = _BATCH.value if experiment_config is None or _given("batch") else (
        experiment_config.data.batch_size)
    if target is not None and target.compiled and not _given("batch") and experiment_config is None:
      # "Does it fit this slice at all?": the smallest batch the mesh takes, one example per
      # data-parallel chip; --batch asks for more, --max_batch for the most.
      from t5tune import sharding
      shape = sharding.resolve_mesh_shape(mesh, target.num_devices)
      batch = shape[0] * shape[1]
      print(f"batch {batch}: one example per data-parallel chip (--batch for another,"
            " --max_batch for the largest that fits)")
    result = compile_at(batch)
    if _MAX_BATCH.value:
      dp = result.mesh_shape[0] * result.mesh_shape[1]
      print(f"largest batch on {target.label} (multiples of data x fsdp = {dp}):")
      best, best_plan, _ = plan.max_batch(compile_at, batch, dp, log=lambda s: print(f"  {s}"),
                                          known={batch: result})
      if best_plan is None:
        print(f"  none: batch {dp} (one example per data-parallel device) does not fit")
      else:
        print(f"  max batch {best}: peak {plan.gib(best_plan.peak_bytes)} of"
              f" {target.chip.hbm_gib:g} GiB per chip")
  except errors.T5tuneError:
    raise
  except ValueError as e:
    raise errors.UsageError(str(e), where="--mesh/--batch") from None
  print(f"plan ({cfg.dtype} activations, {cfg.param_dtype} parameters,"
        f" remat={cfg.remat_policy}):")
  for line in plan.report(result, _MFU.value):
    print(f"  {line}")
