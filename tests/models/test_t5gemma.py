"""T5Gemma against transformers' PyTorch T5Gemma (random weights built here): logits, greedy decoding, cache, conversion.

The reference config exercises what T5Gemma adds to T5: local (sliding
window 4) and global layers over sequences longer than the window,
grouped-query attention (4 query heads on 2 key/value heads), attention and
final soft-capping set low enough to bend the scores, encoder (32) and
decoder (24) of unequal width, padded encoder rows.
"""
import json

import numpy as np
import pytest
import torch
import transformers

import t5tune
from t5tune import errors
from t5tune.convert import hf, loading, model_dir
from t5tune.models import family, info, t5gemma_config
from tests.models import jitted

B, L, T = 3, 14, 9
VOCAB = 64


def _hf_config(**stack_overrides):
  stack = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, sliding_window=4, query_pre_attn_scalar=6,
               attn_logit_softcapping=5.0, final_logit_softcapping=3.0, vocab_size=VOCAB,
               rope_parameters={"rope_type": "default", "rope_theta": 100.0})
  dec = dict(stack, hidden_size=24, intermediate_size=40, num_hidden_layers=3, **stack_overrides)
  return transformers.T5GemmaConfig(encoder=stack, decoder=dec, vocab_size=VOCAB,
                                    attn_implementation="eager")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  torch.manual_seed(0)
  ref = transformers.T5GemmaForConditionalGeneration(_hf_config()).eval()
  # Unit-variance activations (transformers' init leaves norms at 0 and
  # projections tiny, which would hide mapping mistakes).
  with torch.no_grad():
    for name, p in ref.named_parameters():
      if p.ndim == 1:
        p.normal_(0.0, 0.2)  # the offset from 1 of a Gemma norm
      elif "embed_tokens" in name:
        p.normal_(0.0, p.shape[1] ** -0.5)
      else:
        p.normal_(0.0, p.shape[1] ** -0.5)
  path = str(tmp_path_factory.mktemp("t5gemma_hf"))
  ref.save_pretrained(path, safe_serialization=True)
  return ref, t5tune.load_model(path), path


def _inputs(seed):
  rng = np.random.RandomState(seed)
  enc = rng.randint(3, VOCAB, (B, L)).astype(np.int32)
  # Padded rows. At most `sliding_window` pads: a padded query with no real
  # key in its window gives NaN in transformers (its fully masked softmax),
  # which then reaches every decoder position through cross-attention.
  enc[1, 10:] = 0
  enc[2, 11:] = 0
  dec = rng.randint(3, VOCAB, (B, T)).astype(np.int32)
  dec[:, 0] = 2  # bos starts T5Gemma's decoder
  return enc, dec


def _hf_logits(model, enc, dec, dtype=torch.float32):
  with torch.no_grad():
    return model.to(dtype)(
        input_ids=torch.tensor(enc, dtype=torch.long),
        attention_mask=torch.tensor(enc != 0, dtype=torch.long),
        decoder_input_ids=torch.tensor(dec, dtype=torch.long),
        decoder_attention_mask=torch.ones(dec.shape, dtype=torch.long)).logits.double().numpy()


def test_config_maps(pair):
  _, model, path = pair
  cfg = model.config
  assert family.of(cfg).name == "t5gemma"
  assert (cfg.encoder_d_model, cfg.decoder_d_model) == (32, 24)
  assert cfg.decoder_layer_types == ("sliding_attention", "full_attention", "sliding_attention")
  assert (cfg.decoder_num_kv_heads, cfg.rope_theta, cfg.decoder_start_token_id) == (2, 100.0, 2)
  assert cfg.tie_word_embeddings and cfg.final_logit_softcapping == 3.0


def test_logits_match_float64_reference(pair):
  ref, model, _ = pair
  enc, dec = _inputs(0)
  exact = _hf_logits(ref, enc, dec, torch.float64)
  theirs = _hf_logits(ref, enc, dec, torch.float32)
  ours = np.asarray(jitted.forward(model, enc, dec))
  # The soft caps matter: some logits sit where tanh bends.
  assert np.abs(exact).max() > 1.5
  their_err, our_err = np.abs(theirs - exact).max(), np.abs(ours - exact).max()
  assert our_err <= 3 * max(their_err, 1e-7), (our_err, their_err)


def test_greedy_and_cached_decoding_equal_transformers(pair):
  ref, model, _ = pair
  enc, _ = _inputs(1)
  n = 12  # longer than the sliding window: the local layers' masks move
  ours = np.asarray(t5tune.greedy_decode(model, enc, n))
  with torch.no_grad():
    theirs = ref.to(torch.float32).generate(
        input_ids=torch.tensor(enc, dtype=torch.long),
        attention_mask=torch.tensor(enc != 0, dtype=torch.long), max_new_tokens=n,
        do_sample=False, num_beams=1).numpy()[:, 1:]
  theirs = np.pad(theirs, ((0, 0), (0, n - theirs.shape[1])))
  assert (ours != 0).sum() >= B * 4
  np.testing.assert_array_equal(ours, theirs)
  # The cached steps give the teacher-forced logits at every position.
  dec = np.concatenate([np.full((B, 1), 2, np.int32), ours[:, :-1]], axis=1)
  full = np.asarray(jitted.forward(model, enc, dec))
  cache = jitted.init_cache(model, enc, n)
  for t in range(n):
    step, cache = jitted.decode_step(model, dec[:, t], cache)
    np.testing.assert_allclose(np.asarray(step), full[:, t], atol=2e-5)


def test_round_trip_hf_t5tune_hf_is_exact(pair, tmp_path):
  ref, _, path = pair
  loading.hf_to_t5tune(path, str(tmp_path / "ours"))
  with open(tmp_path / "ours" / model_dir.CONFIG_FILE) as f:
    assert json.load(f)["model"]["family"] == "t5gemma"
  loading.t5tune_to_hf(str(tmp_path / "ours"), str(tmp_path / "back"))
  back = transformers.T5GemmaForConditionalGeneration.from_pretrained(str(tmp_path / "back"))
  a, b = ref.state_dict(), back.state_dict()
  assert a.keys() == b.keys()
  for key in a:
    assert torch.equal(a[key].float(), b[key].float()), key
  assert back.config.decoder.layer_types == ref.config.decoder.layer_types


def test_untied_head_round_trips(tmp_path):
  cfg = t5gemma_config.preset("t5gemma_tiny", tie_word_embeddings=False)
  rng = np.random.RandomState(0)
  tensors = {k: rng.randn(*shape).astype(np.float32)
             for k, shape in hf.expected_shapes(cfg).items()}
  params = hf.hf_tensors_to_params(tensors, cfg)
  loading.write_hf_dir(str(tmp_path / "hf"), cfg, params)
  back_cfg, back = hf.read_hf_dir(str(tmp_path / "hf"))
  assert back_cfg == cfg and back.keys() == tensors.keys()
  for k in tensors:
    np.testing.assert_array_equal(back[k], tensors[k])


def test_mismatched_stack_numerics_are_refused(tmp_path):
  bad = _hf_config(sliding_window=5).to_dict()
  with pytest.raises(errors.ConversionError, match="sliding_window"):
    hf.config_from_hf(bad)


# Published safetensors totals (Hugging Face's model API) of the presets that have them.
PUBLISHED = {"t5gemma_s_s": 312_517_632, "t5gemma_b_b": 591_490_560,
             "t5gemma_xl_xl": 3_766_980_608, "t5gemma_9b_2b": 12_292_375_296,
             "t5gemma_9b_9b": 20_333_401_088}


@pytest.mark.parametrize("name", sorted(t5gemma_config.PRESETS))
def test_preset_parameter_counts_equal_transformers(name):
  cfg = t5gemma_config.preset(name)
  hf_cfg = transformers.T5GemmaConfig(**{k: v for k, v in hf.config_to_hf(cfg).items()
                                         if k not in ("architectures", "model_type")})
  with torch.device("meta"):
    ref = transformers.T5GemmaForConditionalGeneration(hf_cfg)
  # transformers counts the tied head once, as t5tune does; the converter's
  # shapes are t5tune's parameters (the round trips above check that).
  ours = sum(int(np.prod(s)) for s in hf.expected_shapes(cfg).values())
  assert ours == ref.num_parameters() == PUBLISHED.get(name, ours)
  if name in ("t5gemma_tiny", "t5gemma_s_s"):  # the module itself (an abstract trace per layer)
    assert info.parameter_counts(cfg)["total"] == ours
