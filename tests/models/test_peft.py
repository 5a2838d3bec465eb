"""Parameter-efficient tuning: LoRA, prompt tuning, prefix tuning, adapters."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from t5tune import errors
from t5tune.convert import loading
from t5tune.models import config as model_config
from t5tune.models import layers
from t5tune.models import t5
from tests.models import jitted

# One layer a stack: what is checked here (start as the base model, folds, exports, packing,
# the cache with prompts and prefixes) does not depend on depth; each layer is one more set of
# parameters for the initialiser and the forward pass to compile.
BASE = model_config.preset("tiny", relative_attention_max_distance=20, num_encoder_layers=1,
                           num_decoder_layers=1)
ALL = BASE.replace(lora_rank=4, lora_targets=r"(attention\.(q|v)|mlp\.wo)$", prompt_length=3,
                   prefix_length=2, adapter_dim=8)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("base") / "model")
  loading.save_model(t5.build_model(BASE, seed=0), path)
  return path


def _batch(seed=0):
  rng = np.random.RandomState(seed)
  enc = rng.randint(2, BASE.vocab_size, (2, 11)).astype(np.int32)
  enc[1, 7:] = 0
  dec = rng.randint(2, BASE.vocab_size, (2, 6)).astype(np.int32)
  dec[:, 0] = 0
  return enc, dec


def _peft_paths(model):
  peft = re.compile(model_config.PEFT_PARAMS)
  return ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))
          if peft.search("/".join(map(str, p)))]


def test_lora_and_adapters_start_as_the_base_model(base_dir):
  enc, dec = _batch()
  base = loading.load_model(base_dir)
  peft = loading.load_model(base_dir, lora_rank=4, adapter_dim=8)
  paths = _peft_paths(peft)
  assert any("q/lora_a" in p for p in paths) and any("adapter_up" in p for p in paths)
  assert not any("k/lora" in p for p in paths)  # default targets are q and v
  np.testing.assert_allclose(np.asarray(jitted.forward(peft, enc, dec)),
                             np.asarray(jitted.forward(base, enc, dec)), atol=1e-6)


def test_fold_lora_computes_what_the_lora_layer_computes():
  model = t5.build_model(BASE.replace(lora_rank=2, lora_alpha=6.0), seed=0)
  dense = next(m for _, m in nnx.iter_graph(model) if isinstance(m, t5.Dense) and m.lora_rank)
  lora_b = np.asarray(jax.random.normal(jax.random.key(1), dense.lora_b.shape))
  dense.lora_b.value = jnp.asarray(lora_b)
  kernel, lora_a = np.asarray(dense.kernel[...]), np.asarray(dense.lora_a[...])
  x = np.asarray(jax.random.normal(jax.random.key(2), (3, kernel.shape[0])))
  folded = layers.fold_lora(kernel, lora_a, lora_b, 3.0)
  np.testing.assert_allclose(x @ folded, np.asarray(dense(jnp.asarray(x))), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dense.merged_kernel()), folded, rtol=1e-6, atol=1e-7)
  # B = 0: the fold leaves the kernel as it was.
  np.testing.assert_array_equal(layers.fold_lora(kernel, lora_a, 0 * lora_b, 3.0), kernel)


def test_lora_merge_matches_forward(base_dir, tmp_path):
  enc, dec = _batch(1)
  model = loading.load_model(base_dir, lora_rank=4)
  # Move away from the zero-initialised B so the update is real.
  for path, module in nnx.iter_graph(model):
    if isinstance(module, t5.Dense) and module.lora_rank:
      module.lora_b.value = 0.1 * jax.random.normal(jax.random.key(len(path)), module.lora_b.shape)
  out = np.asarray(jitted.forward(model, enc, dec))
  base_out = np.asarray(jitted.forward(loading.load_model(base_dir), enc, dec))
  assert np.max(np.abs(out - base_out)) > 1e-3
  loading.write_hf_dir(str(tmp_path / "hf"), model.config, loading.merged_params(model))
  merged = loading.load_model(str(tmp_path / "hf"))
  assert merged.config.lora_rank == 0
  np.testing.assert_allclose(np.asarray(jitted.forward(merged, enc, dec)), out, atol=1e-5)


def test_prompt_prefix_cannot_export(base_dir):
  model = loading.load_model(base_dir, prompt_length=2)
  with pytest.raises(errors.ConversionError, match="prompt_length=2"):
    loading.merged_params(model)


@pytest.fixture(scope="module")
def all_peft():
  return t5.build_model(ALL, seed=1)


def test_all_peft_kv_cache_matches_teacher_forcing(all_peft):
  enc, dec = _batch(2)
  full = np.asarray(jitted.forward(all_peft, enc, dec))
  cache = jitted.init_cache(all_peft, enc, dec.shape[1])
  assert cache.cross_k[0].shape[2] == enc.shape[1] + ALL.prompt_length
  for i in range(dec.shape[1]):
    logits, cache = jitted.decode_step(all_peft, jnp.asarray(dec[:, i]), cache)
    np.testing.assert_allclose(np.asarray(logits), full[:, i], atol=1e-5)


def test_prompt_tuning_packed_equals_unpacked(all_peft):
  rng = np.random.RandomState(3)
  xs = [rng.randint(2, 384, n).astype(np.int32) for n in (5, 8)]
  ys = [rng.randint(2, 384, n).astype(np.int32) for n in (3, 4)]
  enc = np.zeros((1, 16), np.int32); es = np.zeros_like(enc); ep = np.zeros_like(enc)
  dec = np.zeros((1, 8), np.int32); ds = np.zeros_like(dec); dp = np.zeros_like(dec)
  ei = di = 0
  for s, (x, y) in enumerate(zip(xs, ys), start=1):
    enc[0, ei:ei + len(x)] = x; es[0, ei:ei + len(x)] = s; ep[0, ei:ei + len(x)] = np.arange(len(x))
    dec[0, di:di + len(y)] = np.concatenate([[0], y[:-1]]); ds[0, di:di + len(y)] = s
    dp[0, di:di + len(y)] = np.arange(len(y))
    ei += len(x); di += len(y)
  packed = np.asarray(jitted.forward(all_peft, enc, dec, es, ds, ep, dp))
  di = 0
  for x, y in zip(xs, ys):
    alone = np.asarray(jitted.forward(all_peft, x[None], np.concatenate([[0], y[:-1]])[None]))[0]
    np.testing.assert_allclose(packed[0, di:di + len(y)], alone, atol=1e-5)
    di += len(y)


def test_only_peft_parameters_get_gradients_when_others_frozen(all_peft):
  enc, dec = _batch(4)
  peft = re.compile(model_config.PEFT_PARAMS)
  trainable = nnx.All(nnx.Param, lambda path, _: bool(peft.search("/".join(map(str, path)))))
  grads = jitted.grad(lambda m: jnp.mean(m(enc, dec) ** 2),
                      argnums=nnx.DiffState(0, trainable))(all_peft)
  names = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(grads)]
  assert names and all(peft.search(n) for n in names)
  assert {"prompt"} <= {n.split("/")[-1] for n in names}
  assert any(n.endswith("prefix_k") for n in names) and any(n.endswith("lora_b") for n in names)
  # The prompt and prefix really influence the output.
  assert all(float(jnp.abs(v[...]).max()) > 0 for p, v in nnx.to_flat_state(grads)
             if p[-1] in ("prompt", "prefix_k", "adapter_up", "lora_b"))
