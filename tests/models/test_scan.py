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
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5tune import errors
from t5tune import sharding
from t5tune.convert import loading
from t5tune.infer import decoding
from t5tune.models import config as model_config
from t5tune.models import paths
from t5tune.models import t5
from t5tune.train import checkpoints
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


def _pair(tmp_path_factory, cfg, mesh=None):
  """(unscanned, scanned) models with the same weights; the scanned one loaded from the other's dir."""
  path = str(tmp_path_factory.mktemp("unscanned") / "model")
  loading.save_model(t5.build_model(cfg, mesh, seed=0), path)
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
def one_device(tmp_path_factory):
  """The shared position-bias table, no remat, one device."""
  return _pair(tmp_path_factory, CFG)


@pytest.fixture(scope="module")
def on_mesh(tmp_path_factory):
  """umT5's per-layer position-bias tables and remat inside the scan, on the (2, 2, 2) mesh."""
  cfg = CFG.replace(relative_attention_per_layer=True, remat_policy="full")
  return _pair(tmp_path_factory, cfg, sharding.make_mesh((2, 2, 2)))


PAIRS = pytest.mark.parametrize("pair_name", ["one_device", "on_mesh"])


@PAIRS
def test_scanned_parameters_are_stacked_on_a_replicated_layers_axis(pair_name, request):
  unscanned, scanned = request.getfixturevalue(pair_name)
  stacked = nnx.state(scanned, nnx.Param)["decoder"]["layers"]["mlp"]["wo"]["kernel"]
  assert stacked.shape == (3, CFG.d_ff, CFG.d_model)
  assert stacked.get_metadata()["out_sharding"] == ("layers", "mlp", "embed")
  spec = stacked.value.sharding.spec
  assert len(spec) == 0 or spec[0] is None  # the layers axis is never split
  # The rest of the array is sharded as each unscanned layer's kernel is.
  per_layer = nnx.state(unscanned, nnx.Param)["decoder"]["layers"][1]["mlp"]["wo"]["kernel"]
  assert tuple(spec[1:]) == tuple(per_layer.value.sharding.spec)
  np.testing.assert_array_equal(np.asarray(stacked.value[1]), np.asarray(per_layer.value))


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


def test_beam_search_reorders_the_stacked_cache(one_device):
  unscanned, scanned = one_device
  enc = _batch(2)[0]
  opts = decoding.DecodeOptions(method="beam", num_beams=3, max_decode_len=6)
  out_u = decoding.decode(unscanned, enc, opts)
  out_s = decoding.decode(scanned, enc, opts)
  np.testing.assert_array_equal(out_s.beams, out_u.beams)
  np.testing.assert_allclose(out_s.beam_scores, out_u.beam_scores, rtol=1e-5)
