"""Scanned layers (T5Config.scan_layers) against the unscanned model with the same weights.

The scanned model is always made from the unscanned one through the real
loading path (`loading.load_model(dir, scan_layers=True)` converts the saved
layout), so the layout conversion is under test everywhere.

Tolerances: both layouts run the same float32 operations per layer; logits
and greedy tokens agree exactly here, but gradients of parameters used by
every layer (the shared position-bias table, the embedding) are summed over
the layers in a different order (scan's backward accumulates them), so they
are compared with rtol 1e-5, a few float32 ulps of accumulated rounding.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5tune import errors
from t5tune import sharding
from t5tune.convert import hf
from t5tune.convert import loading
from t5tune.infer import decoding
from t5tune.models import config as model_config
from t5tune.models import paths
from t5tune.models import t5
from t5tune.train import experiment
from t5tune.train import losses
from t5tune.train import optimizers
from t5tune.train import trainer

# 3 decoder layers against 2 encoder layers: a mixed-up stack shows.
CFG = model_config.preset("tiny", num_decoder_layers=3, relative_attention_max_distance=20)


def _batch(seed=0, b=4):
  rng = np.random.RandomState(seed)
  enc = rng.randint(2, CFG.vocab_size, (b, 11)).astype(np.int32)
  enc[1, 7:] = 0
  dec = rng.randint(2, CFG.vocab_size, (b, 6)).astype(np.int32)
  dec[:, 0] = 0
  targets = rng.randint(2, CFG.vocab_size, (b, 6)).astype(np.int32)
  weights = np.ones((b, 6), np.float32)
  weights[2, 4:] = 0
  return enc, dec, targets, weights


def _random_dir(tmp_path_factory, cfg, seed=0):
  """A t5tune model dir of random weights (numpy: no initialisation to compile), unscanned.

  Kernels have std fan_in**-0.5 so activations stay O(1); every PEFT
  parameter is non-zero, so each one changes the output.
  """
  abstract = nnx.to_pure_dict(nnx.state(t5.abstract_model(cfg), nnx.Param))
  rng = np.random.RandomState(seed)

  def draw(a):
    std = a.shape[-2] ** -0.5 if len(a.shape) >= 2 and a.shape[-2] > 32 else 0.05
    return (1.0 if len(a.shape) == 1 else 0.0) + std * rng.normal(size=a.shape).astype(np.float32)

  path = str(tmp_path_factory.mktemp("model") / "model")
  loading.write_t5tune_dir(path, cfg, jax.tree.map(draw, abstract), "random")
  return path


def _pair(path, mesh=None):
  """(unscanned, scanned) models with the weights saved unscanned at `path`."""
  return loading.load_model(path, mesh), loading.load_model(path, mesh, scan_layers=True)


def _numpy(tree):
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def _params(model):
  return _numpy(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _logits_loss_grads(model, batch):
  enc, dec, targets, weights = batch
  graphdef, params = nnx.split(model, nnx.Param)

  def loss_fn(params):
    logits = nnx.merge(graphdef, params)(enc, dec)
    loss, _ = losses.cross_entropy(logits, targets, weights)
    return loss, logits

  with sharding.use_mesh(model_mesh(model)):
    (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  return _numpy(logits), float(loss), _numpy(nnx.to_pure_dict(grads))


def _forward(model, enc, dec):
  """Teacher-forced logits, jitted (an eager call would compile every scan afresh)."""
  graphdef, state = nnx.split(model)
  with sharding.use_mesh(model_mesh(model)):
    return np.asarray(jax.jit(lambda st: nnx.merge(graphdef, st)(enc, dec))(state))


def model_mesh(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))[0].sharding.mesh


def _assert_trees_close(a, b, **tol):
  flat_a, flat_b = _flat(a), _flat(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_allclose(flat_a[key], flat_b[key], err_msg="/".join(map(str, key)), **tol)


def _flat(tree, prefix=()):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, prefix + (k,)))
    return out
  return {prefix: tree}


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
  return _random_dir(tmp_path_factory, CFG)


@pytest.fixture(scope="module")
def one_device(saved_dir):
  """The shared position-bias table, no remat, one device."""
  return _pair(saved_dir)


@pytest.fixture(scope="module")
def on_mesh(tmp_path_factory):
  """umT5's per-layer position-bias tables and remat inside the scan, on the (2, 2, 2) mesh."""
  cfg = CFG.replace(relative_attention_per_layer=True, remat_policy="full")
  mesh = sharding.make_mesh((2, 2, 2))
  return _pair(_random_dir(tmp_path_factory, cfg, seed=1), mesh)


PAIRS = pytest.mark.parametrize("pair_name", ["one_device", "on_mesh"])


@PAIRS
def test_scanned_parameters_are_stacked_on_a_replicated_layers_axis(pair_name, request):
  unscanned, scanned = request.getfixturevalue(pair_name)
  stacked = nnx.state(scanned, nnx.Param)["decoder"]["layers"]["mlp"]["wo"]["kernel"]
  assert stacked.shape == (3, CFG.d_ff, CFG.d_model)
  assert stacked.get_metadata()["out_sharding"] == ("layers", "mlp", "embed")
  spec = stacked[...].sharding.spec
  assert len(spec) == 0 or spec[0] is None  # the layers axis is never split
  # The rest of the array is sharded as each unscanned layer's kernel is.
  per_layer = nnx.state(unscanned, nnx.Param)["decoder"]["layers"][1]["mlp"]["wo"]["kernel"]
  assert tuple(spec[1:]) == tuple(per_layer[...].sharding.spec)
  np.testing.assert_array_equal(np.asarray(stacked[...][1]), np.asarray(per_layer[...]))


@PAIRS
def test_logits_loss_and_gradients_equal_unscanned(pair_name, request):
  unscanned, scanned = request.getfixturevalue(pair_name)
  batch = _batch()
  logits_u, loss_u, grads_u = _logits_loss_grads(unscanned, batch)
  logits_s, loss_s, grads_s = _logits_loss_grads(scanned, batch)
  np.testing.assert_allclose(logits_s, logits_u, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loss_s, loss_u, rtol=1e-6)
  assert paths.is_stacked(grads_s) and not paths.is_stacked(grads_u)
  _assert_trees_close(paths.unstack_layers(grads_s), grads_u, rtol=1e-5, atol=1e-7)


@PAIRS
def test_kv_cache_greedy_decoding_equals_unscanned(pair_name, request):
  unscanned, scanned = request.getfixturevalue(pair_name)
  enc = _batch(1)[0]
  opts = decoding.DecodeOptions(method="greedy", max_decode_len=8)
  out_u = decoding.decode(unscanned, enc, opts)
  out_s = decoding.decode(scanned, enc, opts)
  np.testing.assert_array_equal(out_s.tokens, out_u.tokens)
  np.testing.assert_allclose(out_s.scores, out_u.scores, rtol=1e-5)


# -- checkpoints -------------------------------------------------------------------


def _run_config(scan_layers, init_from=""):
  config = experiment.default_config()
  config.data.iterator_factory = "t5tune.train.synthetic:make_iterator"
  config.data.inputs_length, config.data.targets_length, config.data.batch_size = 16, 8, 8
  config.checkpoint.async_save = False
  config.optimizer.name = "adamw"
  config.model.overrides.num_decoder_layers = 3
  config.model.overrides.relative_attention_max_distance = 20
  config.model.overrides.scan_layers = scan_layers
  config.init_from = init_from
  return config


def _assert_trees_equal(a, b):
  flat_a, flat_b = _flat(a), _flat(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg="/".join(map(str, key)))


def test_training_checkpoints_load_in_the_other_layout(one_device, tmp_path):
  """Scanned step -> unscanned model and run; that run's unscanned step -> scanned model."""
  mesh = sharding.single_device_mesh()
  workdir = str(tmp_path / "scanned_run")
  # The run starts from one_device's scanned weights (no random initialisation to compile).
  tr = trainer.Trainer(_run_config(True), workdir, mesh=mesh,
                       initial_params=lambda _: nnx.to_pure_dict(nnx.state(one_device[1], nnx.Param)))
  state, _ = tr.initial_state()
  tr.save(state, force=True)
  tr.checkpointer.close()
  scanned_step = tr.checkpointer.step_dir(0)
  saved = _numpy(state["params"])
  assert paths.is_stacked(saved)

  unscanned = loading.load_model(scanned_step, scan_layers=False)
  assert not unscanned.config.scan_layers and not paths.is_stacked(_params(unscanned))
  _assert_trees_equal(paths.stack_layers(_params(unscanned)), saved)

  # A new unscanned run starts from the scanned step (init_from) ...
  tr2 = trainer.Trainer(_run_config(False, init_from=scanned_step), str(tmp_path / "run2"),
                        mesh=mesh)
  state2, resumed = tr2.initial_state()
  assert not resumed
  _assert_trees_equal(paths.stack_layers(_numpy(state2["params"])), saved)
  tr2.save(state2, force=True)
  tr2.checkpointer.close()
  # ... and its unscanned checkpoint loads scanned.
  back = loading.load_model(tr2.checkpointer.step_dir(0), scan_layers=True)
  assert back.config.scan_layers
  _assert_trees_equal(_params(back), saved)

  # Resuming the scanned workdir unscanned is refused, naming the key and the way out.
  with pytest.raises(errors.CheckpointError, match="scan_layers") as raised:
    trainer.Trainer(_run_config(False), workdir, mesh=mesh)
  assert "init_from" in str(raised.value.fix)


# -- dropout -----------------------------------------------------------------------


def test_dropout_draws_a_different_mask_in_every_scanned_layer(saved_dir):
  unscanned = loading.load_model(saved_dir, dropout_rate=0.5)
  scanned = loading.load_model(saved_dir, dropout_rate=0.5, scan_layers=True)
  rng = np.random.RandomState(3)
  x = jnp.asarray(rng.normal(size=(2, 9, CFG.d_model)), jnp.float32)
  pos = jnp.broadcast_to(jnp.arange(9, dtype=jnp.int32), (2, 9))
  seg = jnp.ones((2, 9), jnp.int32)
  key = jax.random.key(7)

  def layer_by_layer(enc, shared_mask):
    """The unscanned encoder's layers run by hand, each with key i (or all with key 0)."""
    rngs = nnx.Rngs(dropout=key)
    bias, mask = enc.relpos_bias(pos, pos), t5._segment_mask(seg, seg)
    h = enc.dropout(x, deterministic=False, rngs=rngs)
    keys = jax.random.split(rngs.dropout(), len(enc.layers))
    for i, layer in enumerate(enc.layers):
      h = layer(h, bias, mask, nnx.Rngs(dropout=keys[0 if shared_mask else i]))
    return enc.dropout(enc.final_norm(h), deterministic=False, rngs=rngs)

  @nnx.jit
  def run(scanned_enc, unscanned_enc):
    return (scanned_enc(x, pos, seg, nnx.Rngs(dropout=key)),
            layer_by_layer(unscanned_enc, False), layer_by_layer(unscanned_enc, True))

  out, per_layer_masks, one_shared_mask = map(np.asarray, run(scanned.encoder, unscanned.encoder))
  np.testing.assert_allclose(out, per_layer_masks, rtol=1e-5, atol=1e-6)
  # The two hand-run references differ only in the layers' masks, so this also
  # shows dropout is active.
  assert not np.allclose(out, one_shared_mask, atol=1e-2)


# -- parameter-efficient tuning -----------------------------------------------------

PEFT = dict(lora_rank=4, lora_targets=r"(attention\.(q|v)|mlp\.wo)$", prompt_length=3,
            prefix_length=2, adapter_dim=8)


def _trainable_names(params, mask):
  names = set()
  for key, leaf in _flat(params).items():
    if _flat(mask)[key]:
      names.update(paths.unscanned_names(key, leaf.shape[0]) or [paths.name(key)])
  return names


@pytest.fixture(scope="module")
def peft_pair(tmp_path_factory):
  """Every PEFT kind at once, with non-zero values: (unscanned, scanned)."""
  return _pair(_random_dir(tmp_path_factory, CFG.replace(**PEFT), seed=2))


def test_lora_prompt_prefix_and_adapters_scanned_equal_unscanned(peft_pair):
  unscanned, scanned = peft_pair
  enc, dec = _batch(3)[:2]
  np.testing.assert_allclose(_forward(scanned, enc, dec), _forward(unscanned, enc, dec),
                             rtol=1e-5, atol=1e-5)
  # `train_only=peft` trains the same parameters in both layouts ...
  params_u, params_s = _params(unscanned), _params(scanned)
  names = _trainable_names(params_u, optimizers.trainable_mask(params_u, "", "peft"))
  assert any("lora_b" in n for n in names) and any("prefix_k" in n for n in names)
  assert _trainable_names(params_s, optimizers.trainable_mask(params_s, "", "peft")) == names
  # ... and so does a per-layer regex that takes whole stacks; one that splits
  # a stacked array is refused rather than ignored.
  top = optimizers.trainable_mask(params_s, "", "^decoder/layers/[0-2]/")
  assert _trainable_names(params_s, top) == _trainable_names(
      params_u, optimizers.trainable_mask(params_u, "", "^decoder/layers/[0-2]/"))
  with pytest.raises(errors.UsageError, match="scan_layers"):
    optimizers.trainable_mask(params_s, "", "^decoder/layers/2/")


def test_lora_exports_to_hugging_face_from_scanned_and_imports_scanned(peft_pair, tmp_path):
  # The scanned LoRA of the PEFT model alone (prompt, prefix and adapters have no HF form).
  lora_cfg = CFG.replace(lora_rank=PEFT["lora_rank"], lora_targets=PEFT["lora_targets"],
                         scan_layers=True)
  extra = re.compile(r"(prompt|prefix_|adapter)")
  lora_params = {}
  for key, value in _flat(_params(peft_pair[1])).items():
    if not extra.search(paths.name(key)):
      node = lora_params
      for k in key[:-1]:
        node = node.setdefault(k, {})
      node[key[-1]] = value
  lora_dir = str(tmp_path / "lora")
  loading.write_t5tune_dir(lora_dir, lora_cfg, lora_params, "test")
  lora = loading.load_model(lora_dir)
  enc, dec = _batch(4)[:2]
  plain_cfg = lora.config.replace(lora_rank=0)
  # LoRA folds into the stacked kernels as into the unscanned ones ...
  exported = hf.params_to_hf_tensors(loading.merged_params(lora), plain_cfg)
  unscanned = loading.load_model(lora_dir, scan_layers=False)
  expected = hf.params_to_hf_tensors(loading.merged_params(unscanned), plain_cfg)
  assert exported.keys() == expected.keys()
  for name in expected:
    np.testing.assert_allclose(exported[name], expected[name], rtol=1e-6, atol=1e-7, err_msg=name)
  # ... and the exported model computes what the LoRA model does (folding
  # rounds differently from applying x @ A @ B: ~1e-5 on logits of O(1)).
  hf_dir = str(tmp_path / "hf")
  loading.write_hf_dir(hf_dir, plain_cfg, loading.merged_params(lora))
  from_hf = loading.load_model(hf_dir)
  np.testing.assert_allclose(_forward(from_hf, enc, dec), _forward(lora, enc, dec),
                             rtol=1e-4, atol=1e-4)
  back = loading.load_model(hf_dir, scan_layers=True)
  assert back.config.scan_layers
  _assert_trees_equal(_params(back), paths.stack_layers(_params(from_hf)))
