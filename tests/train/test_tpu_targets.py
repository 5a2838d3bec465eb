"""Every program t5tune runs on a TPU, compiled by the TPU compiler (libtpu) for two generations.

The devices are compile-only (`t5tune.targets`): v5e chips (one TensorCore)
and v4 megacore chips, laid out as Cloud TPU slices. Nothing runs; what is
checked is what the compiler produced: the device kind, per-chip bytes
against the sharding rules, the collectives partitioning inserted, and that
serving, evaluation and training programs all compile for a TPU.
"""
import json
import os
import types

import jax
import numpy as np
import pytest

from t5tune import errors
from t5tune import sharding
from t5tune import targets
from t5tune.infer import decoding
from t5tune.infer import scoring
from t5tune.models import config as model_config
from t5tune.models import t5
from t5tune.serve import engine
from t5tune.train import experiment
from t5tune.train import plan
from tests import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = model_config.preset("tiny")


@pytest.fixture(autouse=True, scope="module")
def _the_compilers_own_passes():
  """What the TPU compiler makes for users, not the suite's quick compiles (tests/conftest.py)."""
  before = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", before)
INPUTS, TARGETS, BATCH = 32, 16, 8


@pytest.mark.parametrize("name,topology,chips,kind,per_host,hosts", [
    ("v5e-1", "v5e:1x1", 1, "TPU v5 lite", (1, 1, 1), 1),
    ("v5e-8", "v5e:2x4", 8, "TPU v5 lite", (2, 4, 1), 1),
    ("v5e-256", "v5e:16x16", 256, "TPU v5 lite", (2, 2, 1), 64),
    ("v4-8", "v4:2x2x1", 4, "TPU v4", (2, 2, 1), 1),
    ("v4-64", "v4:2x4x4", 32, "TPU v4", (2, 2, 1), 8),
    ("v4-4096", "v4:8x16x16", 2048, "TPU v4", (2, 2, 1), 512),
    ("v5p-8", "v5:2x2x1", 4, "TPU v5", (2, 2, 1), 1),
    ("v6e-4", "v6e:2x2", 4, "TPU v6 lite", (2, 2, 1), 1),
])
def test_cloud_names_map_to_the_compilers_topologies(name, topology, chips, kind, per_host, hosts):
  target = targets.parse(name)
  assert (target.topology, target.chips, target.chips_per_host, target.hosts) == (
      topology, chips, per_host, hosts)
  assert target.chip.device_kind == kind
  if chips <= 256:  # the compiler's own devices agree with the table
    devices = targets.devices(target)
    assert len(devices) == chips and {d.device_kind for d in devices} == {kind}
    assert {d.platform for d in devices} == {"tpu"}


@pytest.mark.parametrize("name,slices,message", [
    ("v5e-3", 1, "v5e slices come in sizes 1, 4, 8"),
    ("v4-384", 1, "v4 slices come in sizes 8, 16"),
    ("tpu-8", 1, "is not a known slice name"),
    ("v5e-4", 0, "--slices=0 must be at least 1"),
])
def test_unknown_names_are_refused_naming_the_fix(name, slices, message):
  with pytest.raises(errors.UsageError, match=message):
    targets.parse(name, slices)


def test_the_mesh_lies_on_the_torus_and_slices_split_the_data_axis():
  for name, shape in (("v5e-8", (1, 2, 4)), ("v5e-16", (1, 4, 4)), ("v4-16", (1, 2, 4))):
    devices = targets.devices(targets.parse(name))
    mesh = sharding.make_mesh(shape, devices)
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in devices)
    for group in mesh.devices.reshape(-1, shape[2]):
      # A tensor-parallel group is a compact block of chips on the torus (its
      # bounding box holds nothing else), so its collectives take short ICI paths.
      coords = np.array([d.coords for d in group])
      box = np.prod(coords.max(0) - coords.min(0) + 1)
      assert box == len(group), (name, coords.tolist())
  two = targets.parse("v5e-4", slices=2)
  assert (two.num_devices, two.hosts, two.label) == (8, 2, "2 x v5e-4")
  mesh = sharding.make_mesh((2, 4, 1), targets.devices(two))
  for i in range(2):
    assert {d.slice_index for d in mesh.devices[i].flat} == {i}
  with pytest.raises(errors.UsageError, match="does not split over 2 slices"):
    sharding.make_mesh((1, 8, 1), targets.devices(two))


def _experiment(mesh_shape, overrides):
  """The default experiment around the tiny preset, with config keys overridden."""
  config = plan.preset_config(CFG, mesh_shape, BATCH, INPUTS, TARGETS, "adafactor")
  with config.unlocked():
    config.model.preset = "tiny"
    for key, value in overrides.items():
      if key.startswith("model.overrides."):
        config.model.overrides[key.rsplit(".", 1)[1]] = value
      else:
        section, leaf = key.split(".")
        config[section][leaf] = value
  return config


# (target, mesh, overrides, what the program must contain)
TRAIN = {
    "v5e-4 full fine-tune, fsdp": (
        # The TPU compiler reduce-scatters the gradients in fusions named all-reduce-scatter.
        "v5e-4", (1, 4, 1), {}, (" all-gather(", "reduce-scatter")),
    "v4-8 LoRA on the decoder (encoder frozen), micro-batches, scanned layers, dropout;"
    " data x tensor": (
        "v4-8", (2, 1, 2),
        {"optimizer.freeze": "^encoder/", "optimizer.train_only": "peft",
         "train.microbatches": 2, "model.overrides.lora_rank": 4,
         "model.overrides.scan_layers": True, "model.overrides.dropout_rate": 0.1},
        (" all-reduce(",)),
}


@pytest.mark.parametrize("case", list(TRAIN))
def test_train_steps_compile_for_two_generations(case):
  name, mesh_shape, overrides, collectives = TRAIN[case]
  target = targets.parse(name)
  config = _experiment(mesh_shape, overrides)
  result = plan.plan(config, targets.devices(target), target=target)
  assert result.device_kind == target.chip.device_kind and not result.oom
  assert result.fits_target and result.peak_bytes > 0 and result.code_bytes > 0
  hlo = result.compiled.as_text()
  for op in collectives:
    assert op in hlo, f"{op} missing from the {name} step"
  # The compiled step takes the state exactly as the rules shard it: nothing
  # the rules split arrives replicated.
  state_in = result.compiled.input_shardings[0][0]
  mesh = sharding.make_mesh(mesh_shape, targets.devices(target))
  from t5tune.train import build
  parts = build.step_parts(config, mesh, build.model_config_of(config))
  want = jax.tree.leaves(parts.state_shardings["params"])
  got = jax.tree.leaves(state_in["params"])
  ndims = [x.ndim for x in jax.tree.leaves(parts.abstract_state["params"])]
  assert len(want) == len(got) == len(ndims)
  split = [(w, g, n) for w, g, n in zip(want, got, ndims) if not w.is_fully_replicated]
  # (The test's mesh holds its own compile-only device objects: compare specs and mesh shapes.)
  assert split and all(w.spec == g.spec and dict(w.mesh.shape) == dict(g.mesh.shape)
                       for w, g, n in split)
  report = "\n".join(plan.report(result))
  assert f"compiled by the TPU compiler for {target.chip.device_kind!r}" in report
  assert f"fits {name}: yes" in report and "roofline" in report
  if overrides.get("model.overrides.lora_rank"):
    # Only LoRA factors train: their optimizer state is far below the parameters'.
    assert result.opt_state_bytes < result.params_bytes / 10


def test_parameter_bytes_per_chip_shrink_with_fsdp_as_the_sharding_says():
  devices = targets.devices(targets.parse("v5e-8"))
  per_chip = {}
  for shape in ((8, 1, 1), (2, 4, 1), (1, 8, 1)):
    parts = plan.step_parts(CFG, sharding.make_mesh(shape, devices))
    per_chip[shape] = plan.shard_bytes(parts.abstract_state["params"])
  total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(parts.abstract_state["params"]))
  assert per_chip[(8, 1, 1)] == total
  assert per_chip[(8, 1, 1)] > per_chip[(2, 4, 1)] > per_chip[(1, 8, 1)]
  assert per_chip[(1, 8, 1)] < total / 4


# (target, mesh): serving, decoding, scoring and rank classification per generation.
INFER = {"v5e-4 fsdp x tensor": ("v5e-4", (1, 2, 2)), "v4-8 data x fsdp": ("v4-8", (2, 2, 1))}


@pytest.mark.parametrize("case", list(INFER))
def test_inference_programs_compile_for_two_generations(case):
  name, mesh_shape = INFER[case]
  target = targets.parse(name)
  mesh = sharding.make_mesh(mesh_shape, targets.devices(target))
  model = t5.abstract_model(CFG, mesh)
  from flax import nnx
  state_leaves = jax.tree.leaves(nnx.split(model)[1])
  # evaluate's and predict's programs: rank classification, and the decode loop (greedy
  # on one generation, sampling with penalties on the other: one loop, two settings);
  # the server's sampling-loop chunk below serves both on each.
  options = (decoding.DecodeOptions(method="greedy", max_decode_len=TARGETS)
             if name.startswith("v5e") else
             decoding.DecodeOptions(method="sample", temperature=0.7, top_k=5, top_p=0.9,
                                    repetition_penalty=1.2, max_decode_len=TARGETS))
  programs = {options.method: decoding.compile_decode(model, BATCH, INPUTS, options),
              "rank": scoring.compile_rank(model, BATCH, INPUTS, 3, 8)}
  served = engine.Engine(model, engine.Buckets(batch_sizes=(BATCH,), input_lengths=(INPUTS,),
                                               decode_lengths=(TARGETS,), beam_widths=(2,))
                         ).compile_only()
  assert set(k[0] for k in served) == {"start", "steps", "score", "beam"}
  programs.update({"serve " + "/".join(map(str, k)): v for k, v in served.items()})
  for what, compiled in programs.items():
    text = compiled.as_text()
    assert text.startswith("HloModule") and compiled.memory_analysis().argument_size_in_bytes > 0
    # Every program takes the model state first, as the rules shard it (jit drops the
    # parameters a program never reads, e.g. the decoder's in the encoder-only start).
    got = jax.tree.leaves(compiled.input_shardings[0][0])
    assert got and any(not g.is_fully_replicated for g in got), what
    assert {g.spec for g in got} <= {a.sharding.spec for a in state_leaves}, what
    if len(got) == len(state_leaves):
      assert all(a.sharding.spec == g.spec for a, g in zip(state_leaves, got)), what
    if mesh_shape[1] > 1:  # fsdp: the parameters are gathered where they are used
      assert " all-gather(" in text or " all-gather-start(" in text, what


def _notebook_config():
  """The quickstart notebook's training config, taken from the notebook's own cell."""
  with open(os.path.join(REPO, "notebooks", "quickstart.ipynb")) as f:
    cells = ["".join(c["source"]) for c in json.load(f)["cells"] if c["cell_type"] == "code"]
  cell = next(c for c in cells if "config = experiment.default_config()" in c)
  lines = cell[cell.index("config = experiment"):cell.index("workdir =")]
  scope = {"experiment": experiment, "STEPS": 300,
           "jax": types.SimpleNamespace(device_count=lambda: 1)}  # one v5e chip
  exec(lines, scope)  # noqa: S102 (the notebook's own lines)
  return scope["config"]


def test_the_quickstart_notebooks_training_compiles_for_colab_v5e_1():
  config = _notebook_config()
  assert config.model.preset == "tiny" and config.data.batch_size == 8
  target = targets.parse("v5e-1")
  result = plan.plan(config, targets.devices(target), target=target)
  assert result.device_kind == "TPU v5 lite" and result.devices == 1
  assert result.fits_target and result.optimizer == "adamw"


def _fake_plan(batch, fits):
  p = plan.Plan(mesh_shape=(1, 4, 1), batch=batch, inputs_len=8, targets_len=8,
                optimizer="adafactor", params_bytes=1, opt_state_bytes=1, batch_bytes=1,
                argument_bytes=batch, output_bytes=0, alias_bytes=0, temp_bytes=0,
                flops_per_step=1.0, xla_flops_per_device=1.0, compile_seconds=0.0,
                target=targets.parse("v5e-4"), oom="" if fits else "RESOURCE_EXHAUSTED: ...")
  return p


@pytest.mark.parametrize("start,limit,expect", [(8, 100, 100), (256, 100, 100), (8, 3, 0),
                                                (4, 4, 4), (64, 1000, 1000), (512, 6, 4)])
def test_max_batch_bisects_compiling_each_size_once(start, limit, expect):
  calls = []

  def compile_at(b):
    calls.append(b)
    return _fake_plan(b, b <= limit)

  best, best_plan, plans = plan.max_batch(compile_at, start, 4)
  # The largest multiple of 4 at or under the limit (the compiler's answer here).
  assert best == (limit // 4) * 4 == expect
  assert (best_plan is None) == (expect == 0)
  assert len(calls) == len(set(calls)) == len(plans)  # no size compiled twice
  assert all(b % 4 == 0 for b in calls)


def test_cli_plans_a_multi_slice_target_and_refuses_bad_targets(tmp_path):
  out = cli.run(["info", "--config=tiny", "--target=v5e-1", "--slices=2", "--batch=8",
                 "--lengths=32,16"], cwd=str(tmp_path))
  assert out.returncode == 0, out.stderr
  assert "target 2 x v5e-1: 2 TPU v5 lite chips" in out.stdout
  assert "mesh (data, fsdp, tensor) = (2, 1, 1)" in out.stdout
  assert "fits 2 x v5e-1: yes" in out.stdout
  for argv, message in [
      (["--target=v5e-3"], "v5e slices come in sizes"),
      (["--plan", "--max_batch"], "--slices and --max_batch need --target"),
      (["--target=v5e-4", "--mesh=1,2,1"], "--mesh=1,2,1 has 2 devices, v5e-4 has 4"),
      (["--target=cpu-4", "--max_batch"], "--max_batch needs a TPU or GPU target")]:
    out = cli.run(["info", "--config=tiny", *argv], cwd=str(tmp_path))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], (argv, out.stderr)


def test_a_step_that_does_not_fit_is_the_compilers_answer_not_a_crash(tmp_path):
  # flan_t5_xl fully fine-tuned: 11.4 GB of float32 parameters and as much again of
  # gradients cannot fit one 16 GiB v5e chip; the compiler says so early in its passes,
  # and --max_batch reuses that one compile to answer that no batch fits.
  out = cli.run(["info", "--config=flan_t5_xl", "--target=v5e-1", "--scan_layers",
                 "--lengths=64,16", "--max_batch"], cwd=str(tmp_path))
  assert out.returncode == 0, out.stderr
  assert "batch 1: one example per data-parallel chip" in out.stdout
  assert "fits v5e-1: NO — the compiler ran out of 16 GiB HBM: RESOURCE_EXHAUSTED" in out.stdout
  assert "none: batch 1 (one example per data-parallel device) does not fit" in out.stdout
  assert "  batch 1: does not fit" not in out.stdout  # the plan's own compile is reused


def test_a_cpu_host_with_libtpu_installed_runs_commands_without_libtpu_warnings(tmp_path):
  # [tpu] and [test] install libtpu; on a host without TPU chips jax would otherwise try
  # the TPU backend first and libtpu print five lines of warnings on every command.
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  out = subprocess.run([sys.executable, "-m", "t5tune", "info", "--config=tiny", "--plan",
                        "--mesh=1,1,1", "--batch=1", "--lengths=8,8"], cwd=str(tmp_path),
                       env=dict(env, PYTHONPATH=REPO), capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0 and "fits:" in out.stdout, out.stderr
  assert out.stderr == "", out.stderr
