"""Model behaviour that needs no reference: packing, KV cache, sharding, dtypes, info."""
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import t5tune
from t5tune import sharding
from t5tune.models import config as model_config
from t5tune.models import info, paths, t5
from tests import cli
from tests.models import jitted

# The compiled checks use one layer a stack: packing, the cache, sharding, bfloat16 and remat
# do not depend on depth. The parameter-path test reads the two-layer preset (no compile).
TWO_LAYERS = model_config.preset("tiny", relative_attention_max_distance=20)
CFG = TWO_LAYERS.replace(num_encoder_layers=1, num_decoder_layers=1)


@pytest.fixture(scope="module")
def model():
  return t5.build_model(CFG, seed=0)


def _example(rng, n_in, n_out):
  return (rng.randint(2, CFG.vocab_size, n_in).astype(np.int32),
          rng.randint(2, CFG.vocab_size, n_out).astype(np.int32))


def test_packed_equals_unpacked(model):
  rng = np.random.RandomState(0)
  examples = [_example(rng, 7, 4), _example(rng, 11, 6), _example(rng, 5, 3)]
  L, T = 30, 16
  enc = np.zeros((1, L), np.int32); enc_seg = np.zeros_like(enc); enc_pos = np.zeros_like(enc)
  dec = np.zeros((1, T), np.int32); dec_seg = np.zeros_like(dec); dec_pos = np.zeros_like(dec)
  ei = di = 0
  spans = []
  for s, (x, y) in enumerate(examples, start=1):
    enc[0, ei:ei + len(x)] = x; enc_seg[0, ei:ei + len(x)] = s; enc_pos[0, ei:ei + len(x)] = np.arange(len(x))
    y_in = np.concatenate([[0], y[:-1]])
    dec[0, di:di + len(y)] = y_in; dec_seg[0, di:di + len(y)] = s; dec_pos[0, di:di + len(y)] = np.arange(len(y))
    spans.append((di, len(y)))
    ei += len(x); di += len(y)
  packed = np.asarray(jitted.forward(
      model, enc, dec, encoder_segment_ids=enc_seg, decoder_segment_ids=dec_seg,
      encoder_positions=enc_pos, decoder_positions=dec_pos))
  for (x, y), (start, n) in zip(examples, spans):
    y_in = np.concatenate([[0], y[:-1]])[None]
    alone = np.asarray(jitted.forward(model, x[None], y_in))[0]
    np.testing.assert_allclose(packed[0, start:start + n], alone, atol=1e-5, rtol=0)


def test_kv_cache_steps_match_teacher_forcing(model):
  rng = np.random.RandomState(1)
  enc = rng.randint(2, CFG.vocab_size, (2, 13)).astype(np.int32)
  enc[1, 9:] = 0
  dec = rng.randint(2, CFG.vocab_size, (2, 20)).astype(np.int32)
  dec[:, 0] = 0
  full = np.asarray(jitted.forward(model, enc, dec))
  cache = jitted.init_cache(model, enc, 20)
  for i in range(20):
    logits, cache = jitted.decode_step(model, jnp.asarray(dec[:, i]), cache)
    np.testing.assert_allclose(np.asarray(logits), full[:, i], atol=1e-5, rtol=0)
  assert int(cache.index) == 20


def test_cache_repeat_and_take():
  # Two layers: repeat and take must reach every layer's cache, not only the first.
  model = t5.build_model(TWO_LAYERS, seed=0)
  enc = np.random.RandomState(2).randint(2, CFG.vocab_size, (2, 6)).astype(np.int32)
  cache = jitted.init_cache(model, enc, 4)
  # Per layer, in the [B, H, S, K] layout attention consumes.
  assert len(cache.self_k) == len(cache.cross_k) == TWO_LAYERS.num_decoder_layers == 2
  assert cache.self_k[0].shape == (2, CFG.num_heads, 4, CFG.d_kv)
  assert cache.cross_k[0].shape == (2, CFG.num_heads, 6, CFG.d_kv)
  cache = cache.replace(self_k=tuple(k + jnp.arange(2.0)[:, None, None, None] for k in cache.self_k))
  rep = cache.repeat(3)
  assert rep.cross_k[0].shape[0] == 6
  np.testing.assert_array_equal(rep.cross_k[1][3], cache.cross_k[1][1])
  picked = rep.take(jnp.array([5, 0]))
  np.testing.assert_array_equal(picked.cross_k[1][0], cache.cross_k[1][1])
  np.testing.assert_array_equal(picked.cross_k[1][1], cache.cross_k[1][0])
  np.testing.assert_array_equal(picked.self_k[1][0], cache.self_k[1][1])
  # Beams reorder only the self-attention cache; encoder keys/values stay.
  beams = rep.take(jnp.array([2, 2, 0, 5, 3, 3]), cross=False)
  assert beams.cross_k[0] is rep.cross_k[0]
  np.testing.assert_array_equal(beams.self_k[0][2], cache.self_k[0][0])
  np.testing.assert_array_equal(beams.self_k[0][3], cache.self_k[0][1])


def test_greedy_stops_at_eos_and_pads(model):
  enc = np.random.RandomState(3).randint(2, CFG.vocab_size, (4, 9)).astype(np.int32)
  out = np.asarray(t5tune.greedy_decode(model, enc, 12))
  assert out.shape == (4, 12)
  for row in out:
    eos = np.flatnonzero(row == CFG.eos_token_id)
    if eos.size:
      assert (row[eos[0] + 1:] == 0).all()


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 2, 2), (1, 2, 4)])
def test_sharded_forward_matches_one_device(model, mesh_shape):
  assert jax.device_count() == 8
  rng = np.random.RandomState(4)
  enc = rng.randint(2, CFG.vocab_size, (8, 16)).astype(np.int32)
  dec = rng.randint(2, CFG.vocab_size, (8, 8)).astype(np.int32)
  ref = np.asarray(jitted.forward(model, enc, dec))
  mesh = sharding.make_mesh(mesh_shape)
  sharded = t5.build_model(CFG, mesh=mesh, seed=0)
  # Parameters are really split: the MLP kernel follows ('embed'->fsdp, 'mlp'->tensor).
  kernel = sharded.encoder.layers[0].mlp.wi_0.kernel[...]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  n_shards = mesh.shape["fsdp"] * mesh.shape["tensor"]
  assert len({str(s.index) for s in kernel.addressable_shards}) == n_shards
  emb = sharded.token_embedder.embedding[...]
  assert emb.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  with sharding.use_mesh(mesh):
    batch = jax.device_put((enc, dec), sharding.batch_sharding(mesh))
    out = jitted.forward(sharded, *batch)
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)


def test_bfloat16_activations_keep_float32_params():
  cfg = CFG.replace(dtype="bfloat16")
  m = t5.build_model(cfg, seed=0)
  assert m.encoder.layers[0].mlp.wo.kernel[...].dtype == jnp.float32
  enc = np.random.RandomState(5).randint(2, cfg.vocab_size, (2, 8)).astype(np.int32)
  logits = jitted.forward(m, enc, enc)
  assert logits.dtype == jnp.float32
  ref = jitted.forward(t5.build_model(CFG, seed=0), enc, enc)
  # bf16 has ~3 significant digits; the same weights must give close logits.
  assert float(jnp.max(jnp.abs(logits - ref))) < 0.2 * float(jnp.max(jnp.abs(ref)))


def test_remat_gives_same_gradients():
  enc = np.random.RandomState(6).randint(2, CFG.vocab_size, (2, 8)).astype(np.int32)

  def grads(cfg):
    m = t5.build_model(cfg, seed=0)
    loss = lambda m: jnp.mean(m(enc, enc) ** 2)
    return jitted.grad(loss)(m)

  a = nnx.to_flat_state(grads(CFG))
  b = dict(nnx.to_flat_state(grads(CFG.replace(remat_policy="dots"))))
  for path, v in a:
    np.testing.assert_allclose(np.asarray(v[...]), np.asarray(b[path][...]), atol=1e-6)


def test_parameter_counts_match_published_sizes():
  expected = {"flan_t5_small": 76_961_152, "flan_t5_base": 247_577_856,
              "flan_t5_large": 783_150_080, "t5_1_0_small": 60_506_624}
  for name, n in expected.items():
    assert info.parameter_counts(model_config.preset(name))["total"] == n, name


def test_info_cli_xxl_is_fast_and_abstract():
  # A fresh parent process whose only child is `t5tune info`, so RUSAGE_CHILDREN
  # is that child's peak RSS (KiB on Linux), not an earlier test's subprocess.
  wrapper = ("import resource, subprocess, sys\n"
             "r = subprocess.run([sys.executable, '-m', 't5tune', 'info', '--config=flan_t5_xxl'],"
             " capture_output=True, text=True)\n"
             "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
             "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(r.returncode)\n")
  out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr
  assert "11,135,332,352" in out.stdout  # Flan-T5 XXL (HF google/flan-t5-xxl)
  # Abstract: the 44 GB of float32 weights are never allocated. (A wall-clock
  # limit here failed on a loaded machine; speed belongs in benchmarks/.)
  peak_kib = int(out.stdout.rsplit("PEAK_RSS_KIB", 1)[1])
  assert 0 < peak_kib < 4 * 1024 * 1024
  bad = cli.run(["info", "--config=flan_t5_xxxl"], timeout=120)
  assert bad.returncode != 0 and "flan_t5_xxl" in bad.stderr + bad.stdout


def test_parameter_paths_have_one_owner():
  """Every per-layer parameter parses back to its layer; HF names map to real paths."""
  from t5tune.convert import hf
  flat = [tuple(p) for p, _ in nnx.to_flat_state(nnx.state(t5.abstract_model(TWO_LAYERS), nnx.Param))]
  parsed = [(p, paths.parse(p)) for p in flat]
  layers = {(lp.stack, lp.index) for _, lp in parsed if lp is not None}
  assert layers == {(s, i) for s, i, _ in paths.layers(TWO_LAYERS)}
  for p, lp in parsed:
    if lp is not None:
      assert paths.layer(lp.stack, lp.index) + lp.rest == p
  names = {paths.name(p) for p in flat}
  assert paths.EXAMPLE in names
  assert {paths.name(path) for path, _ in hf.name_map(TWO_LAYERS).values()} <= names
  top = paths.layers_regex("decoder", [TWO_LAYERS.num_decoder_layers - 1])
  matched = {n for n in names if re.search(top, n)}
  assert matched and all(n.startswith(f"decoder/layers/{TWO_LAYERS.num_decoder_layers - 1}/")
                         for n in matched)
  assert {n for n in names if n.startswith("decoder/layers/")} - matched
