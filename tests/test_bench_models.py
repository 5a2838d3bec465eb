"""The benchmarks' shared models: transformers' T5 built as t5tune's config says, and what a decoder step reads."""
import os
import sys

import numpy as np
import pytest
import torch
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import eval_throughput  # noqa: E402  pylint: disable=wrong-import-position
import harness  # noqa: E402  pylint: disable=wrong-import-position

import t5tune  # noqa: E402
from t5tune.models import config as model_config  # noqa: E402
from tests.models import jitted  # noqa: E402

SMALL = dict(vocab_size=256, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_encoder_layers=2,
             num_decoder_layers=2, dropout_rate=0.0)


@pytest.mark.parametrize("preset", ["t5_1_1_small", "t5_1_0_small"])
def test_hf_t5_keeps_the_presets_output_layer_through_save_and_load(tmp_path, preset):
  cfg = model_config.preset(preset, **SMALL)
  torch.manual_seed(0)
  hf = harness.hf_t5(cfg).eval()
  tied = hf.lm_head.weight.data_ptr() == hf.shared.weight.data_ptr()
  assert tied == cfg.tie_word_embeddings
  assert hf.config.scale_decoder_outputs == cfg.scale_decoder_outputs
  hf.save_pretrained(tmp_path, safe_serialization=True)
  model = t5tune.load_model(str(tmp_path))
  assert model.config.tie_word_embeddings == cfg.tie_word_embeddings
  assert model.config.scale_decoder_outputs == cfg.scale_decoder_outputs
  x = np.random.RandomState(0).randint(2, 256, (2, 8)).astype(np.int32)
  y = np.random.RandomState(1).randint(2, 256, (2, 4)).astype(np.int32)
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(x, dtype=torch.long), labels=torch.tensor(y, dtype=torch.long)).logits
  ours = np.asarray(jitted.forward(model, x, np.concatenate([np.zeros((2, 1), np.int32), y[:, :-1]], 1)))
  np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-4 * np.abs(ref.numpy()).max())


@pytest.mark.parametrize("preset", ["t5_1_1_small", "t5_1_0_small"])
def test_a_decoder_step_reads_its_layers_less_cross_keys_and_values_and_the_head(preset):
  cfg = model_config.preset(preset, **SMALL)
  from t5tune.models import t5  # pylint: disable=g-import-not-at-top
  _, state = nnx.split(t5.build_model(cfg))
  nbytes = sum(w.size * 4 for w in eval_throughput.step_weights(state, cfg.tie_word_embeddings))
  d, inner, f, layers = 32, 32, 64, 2
  mlp = d * f * (3 if cfg.is_gated else 2)
  per_layer = 4 * d * inner + 2 * d * inner + mlp + 3 * d  # self q,k,v,o; cross q,o; mlp; 3 norms
  expected = layers * per_layer + d + 32 * 4 + 256 * d  # final norm, position bias, head
  assert nbytes == 4 * expected
