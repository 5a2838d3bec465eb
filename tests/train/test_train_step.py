"""The sharded train step on the real tiny model: meshes agree, accumulation, shardings, freezing.

Every case compiles the step once; batches are tiny (8 x 16 -> 8).
"""
import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from t5tune import sharding
from t5tune.train import experiment
from t5tune.train import trainer
from t5tune.train import synthetic

STEPS = 3


def _config(**changes):
  config = experiment.default_config()
  config.data.iterator_factory = "t5tune.train.synthetic:make_iterator"
  config.data.inputs_length, config.data.targets_length = 16, 8
  config.data.batch_size = 8
  config.optimizer.name = "adamw"
  # Small enough that ulp-level gradient differences (Adam divides them by
  # their own size in its first steps) stay below the 1e-5 tolerance.
  config.optimizer.learning_rate = 1e-3
  config.optimizer.grad_clip_norm = 1.0
  config.checkpoint.async_save = False
  config.model.overrides.num_heads = 8  # so that (1, 1, 8) can split the heads
  # One layer a stack: sharding, accumulation, freezing and LoRA do not depend on depth
  # (the file: 41.6 s instead of 64.4 s with two layers).
  config.model.overrides.num_encoder_layers = config.model.overrides.num_decoder_layers = 1
  for key, value in changes.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def _run(tmp_path_factory, config, mesh):
  tr = trainer.Trainer(config, str(tmp_path_factory.mktemp("run")), mesh=mesh)
  it = synthetic.SyntheticIterator(
      batch_size=config.data.batch_size, inputs_length=config.data.inputs_length,
      targets_length=config.data.targets_length, vocab_size=tr.model_cfg.vocab_size,
      seed=0, mesh=mesh)
  state, _ = tr.initial_state()
  step_fn = tr.compile(state, next(synthetic.SyntheticIterator(
      batch_size=config.data.batch_size, inputs_length=config.data.inputs_length,
      targets_length=config.data.targets_length, vocab_size=tr.model_cfg.vocab_size,
      seed=0, mesh=mesh)))
  initial = jax.device_get(state["params"])
  losses, grad_norms = [], []
  for _ in range(STEPS):
    state, metrics = step_fn(state, next(it))
    losses.append(float(metrics["loss"]))
    grad_norms.append(float(metrics["grad_norm"]))
  tr.checkpointer.close()
  return {"trainer": tr, "state": state, "losses": np.array(losses),
          "grad_norms": np.array(grad_norms), "initial": initial}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
  return _run(tmp_path_factory, _config(), sharding.single_device_mesh())


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 4, 2), (1, 1, 8)])
def test_meshes_match_one_device(tmp_path_factory, single, shape):
  run = _run(tmp_path_factory, _config(**{"mesh.shape": shape}), sharding.make_mesh(shape))
  np.testing.assert_allclose(run["losses"], single["losses"], rtol=1e-5)
  assert run["losses"][-1] < run["losses"][0]  # it trains
  if shape != (2, 2, 2):
    return
  # Parameters and AdamW moments carry the rules' shardings on this mesh.
  params = run["state"]["params"]
  assert params["encoder"]["layers"][0]["mlp"]["wo"]["kernel"].sharding.spec == P("tensor", "fsdp")
  assert params["token_embedder"]["embedding"].sharding.spec == P("tensor", "fsdp")
  assert params["lm_head"]["kernel"].sharding.spec == P("fsdp", "tensor")
  adam = [s for s in jax.tree.leaves(run["state"]["opt_state"],
                                     is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)][0]
  for moments in (adam.mu, adam.nu):
    flat_p = dict(jax.tree_util.tree_leaves_with_path(params))
    for path, leaf in jax.tree_util.tree_leaves_with_path(moments):
      assert leaf.sharding == flat_p[path].sharding, path
  shards = params["encoder"]["layers"][0]["mlp"]["wo"]["kernel"].addressable_shards
  full = params["encoder"]["layers"][0]["mlp"]["wo"]["kernel"].shape
  assert shards[0].data.shape == (full[0] // 2, full[1] // 2)  # really split 2 x 2


def test_gradient_accumulation_matches_large_batch(tmp_path_factory):
  # Two devices keep the compiles cheap while the micro-batches stay sharded.
  mesh = sharding.make_mesh((2, 1, 1), devices=jax.devices()[:2])
  # SGD: parameters then differ exactly as the accumulated gradients do (Adam
  # would turn ulp-sized gradients of unused embedding rows into +-lr steps).
  common = {"data.batch_size": 16, "mesh.shape": (-1, 1, 1), "optimizer.name": "sgd",
            "optimizer.learning_rate": 0.5}
  run = _run(tmp_path_factory, _config(**{"train.microbatches": 4, **common}), mesh)
  big = _run(tmp_path_factory, _config(**common), mesh)
  np.testing.assert_allclose(run["losses"], big["losses"], rtol=1e-5)
  np.testing.assert_allclose(run["grad_norms"], big["grad_norms"], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(run["state"]["params"]), jax.device_get(big["state"]["params"]))


def test_frozen_parameters_unchanged_and_stateless(tmp_path_factory):
  config = _config(**{"optimizer.freeze": r"^(encoder|token_embedder)/"})
  run = _run(tmp_path_factory, config, sharding.make_mesh((2, 2, 2)))
  after = jax.device_get(run["state"]["params"])
  for name in ("encoder", "token_embedder"):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b),
                 after[name], run["initial"][name])
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                         after["decoder"], run["initial"]["decoder"])
  assert all(jax.tree.leaves(changed))
  # The optimizer state mentions only the decoder and the output head.
  paths = {jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_leaves_with_path(run["state"]["opt_state"])}
  assert not any("'encoder'" in p or "'token_embedder'" in p for p in paths)
  assert any("'decoder'" in p for p in paths)


def test_lora_trains_only_peft_parameters(tmp_path_factory):
  config = _config(**{"optimizer.train_only": "peft"})
  config.model.overrides.lora_rank = 4
  config.model.overrides.prompt_length = 2
  run = _run(tmp_path_factory, config, sharding.make_mesh((8, 1, 1)))
  after = jax.tree_util.tree_leaves_with_path(jax.device_get(run["state"]["params"]))
  before = dict(jax.tree_util.tree_leaves_with_path(run["initial"]))
  peft_changed, base_changed = [], []
  for path, value in after:
    name = jax.tree_util.keystr(path)
    changed = bool(np.any(value != before[path]))
    (peft_changed if ("lora_" in name or "prompt" in name) else base_changed).append(changed)
  assert peft_changed and all(peft_changed)  # every LoRA factor and the prompt moved
  assert not any(base_changed)  # the base model is bitwise unchanged
  paths = {jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_leaves_with_path(run["state"]["opt_state"])}
  assert paths and all("lora_" in p or "prompt" in p for p in paths if "'" in p)
