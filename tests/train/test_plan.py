"""The memory plan against a real compile and real arrays on 8 simulated devices."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from t5tune import sharding
from t5tune.models import config as model_config
from t5tune.train import plan
from t5tune.train import steps as steps_lib

# The tiny preset with one layer per stack: the plan's logic does not depend on depth.
CFG = model_config.preset("tiny", num_encoder_layers=1, num_decoder_layers=1)
MESH = (2, 2, 2)
BATCH, INPUTS, TARGETS = 8, 24, 8


def test_plan_matches_a_real_compile_and_real_arrays():
  predicted = plan.make_plan(CFG, MESH, BATCH, INPUTS, TARGETS, "adamw")

  # The same step built from real, initialised arrays, as the trainer does it.
  mesh = sharding.make_mesh(MESH)
  parts = plan.step_parts(CFG, mesh, "adamw")
  # Concrete arrays (values do not matter to memory) placed on the trainer's shardings.
  state = jax.tree.map(lambda a: jax.device_put(np.zeros(a.shape, a.dtype), a.sharding),
                       parts.abstract_state)
  rng = np.random.RandomState(0)
  batch = {"encoder_input_tokens": rng.randint(2, 300, (BATCH, INPUTS)).astype(np.int32),
           "decoder_input_tokens": rng.randint(2, 300, (BATCH, TARGETS)).astype(np.int32),
           "decoder_target_tokens": rng.randint(2, 300, (BATCH, TARGETS)).astype(np.int32),
           "decoder_loss_weights": np.ones((BATCH, TARGETS), np.float32)}
  batch_sh = steps_lib.batch_shardings(batch, mesh)
  batch = {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}
  step = steps_lib.make_train_step(parts.graphdef, parts.tx, parts.mask, parts.schedule,
                                   loss=steps_lib.LossOptions())
  with sharding.use_mesh(mesh):
    real = jax.jit(step, in_shardings=(parts.state_shardings, batch_sh),
                   out_shardings=(parts.state_shardings, sharding.replicated(mesh)),
                   donate_argnums=0).lower(state, batch).compile()

  # Bytes one device really holds.
  def held(tree):
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))
  assert predicted.params_bytes == held(state["params"])
  assert predicted.opt_state_bytes == held(state["opt_state"])
  assert predicted.batch_bytes == held(batch)
  # AdamW keeps two moments shaped like the parameters (plus counters).
  assert 2 * predicted.params_bytes <= predicted.opt_state_bytes < 2 * predicted.params_bytes + 64
  memory = real.memory_analysis()
  assert predicted.argument_bytes == memory.argument_size_in_bytes
  assert predicted.output_bytes == memory.output_size_in_bytes
  assert predicted.alias_bytes == memory.alias_size_in_bytes
  assert predicted.temp_bytes == memory.temp_size_in_bytes
  assert predicted.temp_bytes >= predicted.gradient_bytes  # gradients live in temporaries
  # The state is donated: the outputs alias it.
  assert predicted.alias_bytes >= predicted.params_bytes + predicted.opt_state_bytes
  assert predicted.flops_per_step > 0 and predicted.fits()["TPU v5e"]
  assert any("peak estimate" in line for line in plan.report(predicted))


def test_parameter_and_optimizer_bytes_fall_with_fsdp():
  devices = jax.devices()
  per_device = {}
  for shape in ((8, 1, 1), (2, 4, 1), (1, 8, 1)):
    mesh = sharding.make_mesh(shape, devices)
    parts = plan.step_parts(CFG, mesh, "adafactor")
    per_device[shape] = (plan.shard_bytes(parts.abstract_state["params"]),
                         plan.shard_bytes(parts.abstract_state["opt_state"]))
  total = sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
              for x in jax.tree.leaves(parts.abstract_state["params"]))
  assert per_device[(8, 1, 1)][0] == total  # pure data parallelism replicates
  assert per_device[(8, 1, 1)][0] > per_device[(2, 4, 1)][0] > per_device[(1, 8, 1)][0]
  assert per_device[(1, 8, 1)][0] < total / 4  # most parameters split 8 ways
  assert per_device[(8, 1, 1)][1] > per_device[(1, 8, 1)][1]


def test_cli_plan_rejects_bad_mesh_in_one_line():
  out = subprocess.run(
      [sys.executable, "-m", "t5tune", "info", "--config=tiny", "--plan", "--mesh=3,1,1",
       "--batch=8"], capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and "batch 8 does not split" in lines[0], out.stderr


def test_plan_of_an_experiment_is_the_trainers_own_step(tmp_path):
  # Freeze masks, micro-batches, LoRA and loss options all change the
  # program: the plan must compile exactly the one the trainer compiles.
  from t5tune.train import synthetic
  from t5tune.train import trainer
  from tests.train import test_train_step
  config = test_train_step._config(**{
      "optimizer.freeze": r"^encoder/", "train.microbatches": 2, "train.z_loss": 1e-4,
      "train.label_smoothing": 0.1, "mesh.shape": MESH})
  config.model.overrides.num_encoder_layers = config.model.overrides.num_decoder_layers = 1
  config.model.overrides.lora_rank = 4
  predicted = plan.plan(config, jax.devices())

  tr = trainer.Trainer(config, str(tmp_path), mesh=sharding.make_mesh(MESH))
  state, _ = tr.initial_state()
  batch = next(synthetic.SyntheticIterator(
      batch_size=config.data.batch_size, inputs_length=config.data.inputs_length,
      targets_length=config.data.targets_length, vocab_size=tr.model_cfg.vocab_size, seed=0,
      mesh=tr.mesh))
  real = tr.compile(state, batch)
  tr.checkpointer.close()
  memory = real.memory_analysis()
  assert (predicted.argument_bytes, predicted.output_bytes, predicted.alias_bytes,
          predicted.temp_bytes) == (memory.argument_size_in_bytes, memory.output_size_in_bytes,
                                    memory.alias_size_in_bytes, memory.temp_size_in_bytes)
  assert predicted.mesh_shape == MESH and predicted.batch == config.data.batch_size
  # The frozen encoder has no optimizer state; the plan's state is the trainer's.
  assert predicted.opt_state_bytes == plan.shard_bytes(tr.parts.abstract_state["opt_state"])
  assert predicted.opt_state_bytes < plan.shard_bytes(
      plan.step_parts(tr.model_cfg, tr.mesh, "adamw").abstract_state["opt_state"])
  # The same program, op for op (HLO after partitioning).
  assert predicted.hlo_sha256 == plan.program_fingerprint(real)
