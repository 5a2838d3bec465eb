"""Decoding against transformers' PyTorch T5 (same random weights), sampling properties, meshes."""
import jax
import numpy as np
import pytest
import torch

import t5tune
from t5tune import sharding
from t5tune.infer import decoding
from t5tune.infer import nucleus
from t5tune.infer import scoring
from tests.models import hf_reference
from tests.models import jitted

B, L, T = 6, 20, 16


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
  """A gated (Flan-T5-like) random HF model whose EOS is likely enough to end some beams."""
  hf_model, _ = hf_reference.build_hf_t5(tmp_path_factory.mktemp("hf_raw"), gated=True)
  with torch.no_grad():
    w = hf_model.lm_head.weight
    # EOS's output row made close to rows this random model often emits, so
    # that sequences and beams end at different lengths.
    w[1] = 0.8 * w[112] + 0.6 * w[4] + 0.6 * w[88]
  path = str(tmp_path_factory.mktemp("hf_eos"))
  hf_model.save_pretrained(path, safe_serialization=True)
  return hf_model, path, t5tune.load_model(path)


def _inputs(vocab=128, seed=0):
  rng = np.random.RandomState(seed)
  enc = rng.randint(2, vocab, (B, L)).astype(np.int32)
  enc[1, 12:] = 0  # padding
  enc[2, 5:] = 0
  return enc


def _hf_generate(hf_model, enc, **kwargs):
  """HF tokens after the start token, cut after the first EOS and padded with 0 (ours)."""
  with torch.no_grad():
    # use_cache=False: transformers' cached generate breaks when the decoder
    # is deeper than the encoder (DESIGN.md pitfalls).
    out = hf_model.generate(input_ids=torch.tensor(enc, dtype=torch.long),
                            attention_mask=torch.tensor(enc != 0, dtype=torch.long),
                            max_new_tokens=T, use_cache=False, **kwargs).numpy()[:, 1:]
  res = np.zeros((len(enc), T), np.int32)
  for i, row in enumerate(out.tolist()):
    # HF fills beam outputs after EOS with EOS (pad_token_id 0 is falsy there).
    row = row[:row.index(1) + 1] if 1 in row else row
    res[i, :len(row)] = row
  return res


def test_greedy_identical_to_transformers(hf_pair):
  hf_model, _, model = hf_pair
  enc = _inputs()
  ours = decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=T))
  ref = _hf_generate(hf_model, enc, do_sample=False, num_beams=1)
  np.testing.assert_array_equal(ours.tokens, ref)
  assert (ours.tokens == 1).any(axis=1).sum() >= 2, "too few sequences end in EOS to test it"
  # Nothing but padding after EOS.
  for row in ours.tokens:
    if 1 in row.tolist():
      assert not row[row.tolist().index(1) + 1:].any()


def test_repetition_penalty_and_min_tokens_identical_to_transformers(hf_pair):
  hf_model, _, model = hf_pair
  enc = _inputs(seed=1)
  plain = decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=T)).tokens
  for rep, min_tokens, ngram in ((1.8, 0, 0), (1.0, 9, 0), (0.6, 4, 0), (1.0, 0, 2), (0.8, 0, 3)):
    opts = decoding.DecodeOptions(max_decode_len=T, repetition_penalty=rep, min_tokens=min_tokens,
                                  no_repeat_ngram_size=ngram)  # rep < 1 rewards repeating
    ours = decoding.decode(model, enc, opts).tokens
    kwargs = {"repetition_penalty": rep} if rep != 1.0 else {}
    if min_tokens:
      kwargs["min_new_tokens"] = min_tokens
    if ngram:
      kwargs["no_repeat_ngram_size"] = ngram
    ref = _hf_generate(hf_model, enc, do_sample=False, num_beams=1, **kwargs)
    np.testing.assert_array_equal(ours, ref, err_msg=str(kwargs))
    assert (ours != plain).any(), f"{kwargs} changed nothing: not tested"
    if min_tokens:
      assert not (ours[:, :min_tokens] == 1).any() and (plain[:, :min_tokens] == 1).any()


def test_beam_with_repetition_penalty_and_min_tokens_identical_to_transformers(hf_pair):
  # transformers applies its processors to the beams' log-probabilities: they shape the scores too.
  hf_model, _, model = hf_pair
  enc = _inputs()
  plain = decoding.decode(model, enc, decoding.DecodeOptions(method="beam", num_beams=4,
                                                             max_decode_len=T)).tokens
  for rep, min_tokens, ngram in ((1.6, 0, 0), (1.0, 7, 0), (1.0, 0, 2)):
    ours = decoding.decode(model, enc, decoding.DecodeOptions(
        method="beam", num_beams=4, max_decode_len=T, repetition_penalty=rep,
        min_tokens=min_tokens, no_repeat_ngram_size=ngram)).tokens
    kwargs = ({"repetition_penalty": rep} if rep != 1.0 else {"min_new_tokens": min_tokens}
              if min_tokens else {"no_repeat_ngram_size": ngram})
    ref = _hf_generate(hf_model, enc, do_sample=False, num_beams=4, early_stopping=False, **kwargs)
    np.testing.assert_array_equal(ours, ref, err_msg=str(kwargs))
    assert (ours != plain).any(), f"{kwargs} changed nothing: not tested"


@pytest.mark.parametrize("length_penalty", [1.0, 2.0])
def test_beam_identical_to_transformers(hf_pair, length_penalty):
  hf_model, _, model = hf_pair
  enc = _inputs()
  ours = decoding.decode(model, enc, decoding.DecodeOptions(
      method="beam", num_beams=4, length_penalty=length_penalty, max_decode_len=T))
  ref = _hf_generate(hf_model, enc, do_sample=False, num_beams=4,
                     length_penalty=length_penalty, early_stopping=False)
  np.testing.assert_array_equal(ours.tokens, ref)
  assert (ours.tokens == 1).any(axis=1).sum() >= 1, "no beam ends in EOS: nothing tested"
  assert ours.beams.shape == (B, 4, T)
  assert np.all(np.diff(ours.beam_scores, axis=1) <= 0)  # best first
  # The beam score is the log-likelihood over length ** length_penalty.
  s = scoring.score(model, enc, ours.tokens)
  np.testing.assert_allclose(ours.scores, s.sum / s.num_tokens ** length_penalty, atol=1e-4)


def test_sampling_limits_equal_greedy(hf_pair):
  _, _, model = hf_pair
  enc = _inputs(seed=2)
  greedy = decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=T)).tokens
  top1 = decoding.decode(model, enc, decoding.DecodeOptions(
      method="sample", top_k=1, max_decode_len=T), rng=jax.random.key(3)).tokens
  top_p0 = decoding.decode(model, enc, decoding.DecodeOptions(
      method="sample", top_p=1e-6, max_decode_len=T), rng=jax.random.key(4)).tokens
  np.testing.assert_array_equal(top1, greedy)
  np.testing.assert_array_equal(top_p0, greedy)


def test_sampling_deterministic_per_key(hf_pair):
  _, _, model = hf_pair
  enc = _inputs(seed=2)
  opts = decoding.DecodeOptions(method="sample", temperature=1.0, top_k=50, top_p=0.95,
                                max_decode_len=T)
  a = decoding.decode(model, enc, opts, rng=jax.random.key(7))
  b = decoding.decode(model, enc, opts, rng=jax.random.key(7))
  c = decoding.decode(model, enc, opts, rng=jax.random.key(8))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert (a.tokens != c.tokens).any()
  # Per-row keys: a row's tokens do not depend on the other rows of the batch.
  keys = decoding.row_keys(jax.random.key(7), B)
  flipped = decoding.decode(model, enc[::-1], opts, rng=keys[::-1])
  np.testing.assert_array_equal(flipped.tokens[::-1], a.tokens)


def test_filter_logits_keeps_nucleus():
  logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
  kept = np.isfinite(np.asarray(nucleus.filter_logits(logits, 1.0, 0, 0.7)))
  np.testing.assert_array_equal(kept, [[True, True, False, False]])
  kept = np.isfinite(np.asarray(nucleus.filter_logits(logits, 1.0, 3, 1.0)))
  np.testing.assert_array_equal(kept, [[True, True, True, False]])


def test_filter_keeps_the_sets_of_transformers_warpers():
  """Temperature, top-k, top-p per row: the kept tokens of transformers' warpers (float64, sorted)."""
  from transformers.generation import logits_process as hf
  rng = np.random.RandomState(1)
  settings = [(1.0, 0, 0.9), (0.7, 40, 1.0), (1.3, 50, 0.95), (1.0, 1, 0.5), (1.0, 0, 1e-6),
              (0.5, 0, 0.3), (2.0, 1000, 0.99), (1.0, 32128, 0.8)]
  logits = (rng.randn(len(settings), 32128) * 3).astype(np.float32)
  logits[1, 5:9] = logits[1].max() + 1  # ties at the top
  temperature, top_k, top_p = (np.array(x) for x in zip(*settings))
  ours = np.asarray(nucleus.filter_logits(logits, temperature, top_k, top_p))
  for i, (t, k, p) in enumerate(settings):
    scores = torch.tensor(logits[i:i + 1], dtype=torch.float64) / t
    if k:
      scores = hf.TopKLogitsWarper(top_k=k)(None, scores)
    if p < 1.0:
      scores = hf.TopPLogitsWarper(top_p=p)(None, scores)
    want = scores.numpy()[0]
    np.testing.assert_array_equal(np.isfinite(ours[i]), np.isfinite(want), err_msg=str(settings[i]))
    kept = np.isfinite(want)
    np.testing.assert_allclose(ours[i][kept], want[kept], rtol=1e-6)
    if k == 1 or p == 1e-6:  # reduces to greedy
      assert kept.sum() == 1 and kept[np.argmax(logits[i])]
  assert np.isfinite(ours[1]).sum() == 40


def test_categorical_draws_what_jax_random_categorical_draws():
  rng = np.random.RandomState(3)
  logits = (rng.randn(16, 5000) * 2).astype(np.float32)
  logits[:, rng.rand(5000) < 0.9] = -np.inf  # filtered tokens
  keys = jax.random.split(jax.random.key(11), 16)
  want = np.asarray(jax.vmap(jax.random.categorical)(keys, logits))
  np.testing.assert_array_equal(np.asarray(decoding.categorical(keys, logits)), want)
  assert np.isfinite(logits[np.arange(16), want]).all() and len(set(want.tolist())) > 8


def test_argmax_is_numpys_first_maximum():
  # Random rows, ties (the first wins), NaN (counts as the maximum, as in
  # numpy and jnp.argmax), all -inf, +inf, and a 3-D batch.
  rng = np.random.RandomState(0)
  x = rng.randn(4, 3, 257).astype(np.float32)
  x[0, 0, [5, 9]] = 10.0
  x[0, 1, [7, 3]] = np.nan
  x[0, 2] = -np.inf
  x[1, 0, [4, 200]] = np.inf
  x[1, 1] = np.round(x[1, 1])  # many ties below the maximum
  got = np.asarray(jax.jit(decoding.argmax)(x))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, np.argmax(x, axis=-1))
  assert got[0, 0] == 5 and got[0, 1] == 3 and got[0, 2] == 0 and got[1, 0] == 4


def test_bad_options_name_the_field():
  with pytest.raises(ValueError, match="top_p"):
    decoding.DecodeOptions(method="sample", top_p=1.5)
  with pytest.raises(ValueError, match="repetition_penalty=0"):
    decoding.DecodeOptions(repetition_penalty=0.0)
  with pytest.raises(ValueError, match=r"presence_penalty=2.5 is out of range: allowed \[-2, 2\]"):
    decoding.DecodeOptions(presence_penalty=2.5)
  with pytest.raises(ValueError, match="min_tokens=-1"):
    decoding.DecodeOptions(min_tokens=-1)
  decoding.register(decoding.Method("search_test", search=lambda model, enc, opts: None))
  try:
    with pytest.raises(ValueError, match="frequency_penalty=0.5, min_tokens=2 are for greedy, sampling"
                                         " and beam search, not method='search_test'"):
      decoding.DecodeOptions(method="search_test", frequency_penalty=0.5, min_tokens=2)
  finally:
    del decoding.METHODS["search_test"]
  with pytest.raises(ValueError, match="method"):
    decoding.DecodeOptions(method="nucleus")


def test_eight_devices_same_tokens_as_one(hf_pair):
  _, path, model = hf_pair
  assert jax.device_count() == 8
  mesh = sharding.make_mesh((2, 2, 2))
  sharded = t5tune.load_model(path, mesh)
  enc = _inputs(seed=5)  # 6 rows, not a multiple of the 4-way batch split: padded inside
  for opts in [decoding.DecodeOptions(max_decode_len=T),
               decoding.DecodeOptions(method="beam", num_beams=4, max_decode_len=T),
               # the filter's bisection, the draw and every penalty, on a sharded batch
               decoding.DecodeOptions(method="sample", top_k=20, top_p=0.9, max_decode_len=T,
                                      repetition_penalty=1.3, no_repeat_ngram_size=2,
                                      min_tokens=5, presence_penalty=0.5),
               decoding.DecodeOptions(method="beam", num_beams=3, max_decode_len=T,
                                      repetition_penalty=1.3, no_repeat_ngram_size=2)]:
    one = decoding.decode(model, enc, opts, rng=4)
    eight = decoding.decode(sharded, enc, opts, rng=4)
    np.testing.assert_array_equal(eight.tokens, one.tokens, err_msg=opts.method)
    np.testing.assert_allclose(eight.scores, one.scores, atol=1e-4)


def test_row_key_is_the_one_seed_rule(hf_pair):
  """decode(rng=seed) row i, generate's input i and row_key(seed, i) are one rule: fold_in(key(seed), i)."""
  _, _, model = hf_pair
  enc = _inputs(seed=2)
  opts = decoding.DecodeOptions(method="sample", temperature=0.9, top_k=30, max_decode_len=T)
  by_seed = decoding.decode(model, enc, opts, rng=5).tokens
  want = np.stack([np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(5), i)))
                   for i in range(B)])
  np.testing.assert_array_equal(decoding.row_keys(5, B), want)
  np.testing.assert_array_equal(decoding.decode(model, enc, opts, rng=want).tokens, by_seed)
  # Rows 2.. of a later batch: the keys of their position, not of their place in the batch.
  np.testing.assert_array_equal(decoding.row_keys(5, 3, start=2), want[2:5])
  np.testing.assert_array_equal(decoding.row_key(jax.random.key(5), 4), want[4])


def test_per_row_filter_equals_each_row_alone():
  rng = np.random.RandomState(0)
  logits = rng.randn(4, 50).astype(np.float32) * 3
  temperature, top_k, top_p = [0.7, 1.0, 0.0, 1.3], [0, 5, 0, 10], [0.9, 1.0, 1.0, 0.5]
  batch = np.asarray(nucleus.filter_logits(logits, np.array(temperature), np.array(top_k),
                                            np.array(top_p)))
  for i in range(4):
    alone = np.asarray(nucleus.filter_logits(logits[i:i + 1], temperature[i], top_k[i], top_p[i]))
    np.testing.assert_array_equal(batch[i:i + 1], alone)
  assert np.isfinite(batch[2]).all()  # temperature 0, no filter: untouched (greedy row)
  assert np.isfinite(batch[1]).sum() == 5


def _second_best(logits_BV, rows, t):
  del rows, t
  return jax.lax.top_k(logits_BV, 2)[1][:, 1].astype(np.int32)


def test_a_registered_method_runs_in_the_one_loop(hf_pair):
  """A token rule registered once decodes through `decode` and `generate` (the server: test_server)."""
  _, _, model = hf_pair
  decoding.register(decoding.Method("second_best_test", pick=_second_best))
  try:
    with pytest.raises(ValueError, match="already registered"):
      decoding.register(decoding.Method("second_best_test", pick=_second_best))
    enc = _inputs(seed=3)
    out = decoding.decode(model, enc, decoding.DecodeOptions(method="second_best_test",
                                                             max_decode_len=T))
    # Teacher-forced logits of the emitted prefix: every token is the runner-up.
    dec_in = np.concatenate([np.zeros((B, 1), np.int32), out.tokens[:, :-1]], axis=1)
    logits = np.asarray(jitted.forward(model, enc, dec_in))
    runner_up = np.argsort(-logits, axis=-1)[:, :, 1]
    live = np.cumsum(out.tokens == 1, axis=1) - (out.tokens == 1) == 0  # up to the first EOS
    np.testing.assert_array_equal(out.tokens[live], runner_up[live])
    assert (out.tokens != decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=T)).tokens).any()
  finally:
    del decoding.METHODS["second_best_test"]


def test_penalties_per_row_equal_their_formulas():
  """Each row's adjustment is its own settings' formula (numpy), whatever the rows beside it."""
  from t5tune.infer import penalties
  rng = np.random.RandomState(0)
  b, v, steps, t = 5, 12, 6, 4
  logits = (rng.randn(b, v) * 2).astype(np.float32)
  tokens = rng.randint(0, v, (b, steps)).astype(np.int32)  # positions >= t are not read
  settings = dict(repetition_penalty=[1.0, 1.5, 0.7, 1.0, 1.2], frequency_penalty=[0.0, 0.0, 0.4, -0.5, 1.0],
                  presence_penalty=[0.0, 0.3, 0.0, 0.8, -1.0], min_tokens=[0, 5, 0, 4, 2],
                  no_repeat_ngram_size=[0, 0, 0, 0, 0])
  rows = decoding.rows_for(b, steps, **{k: np.array(x) for k, x in settings.items()})
  got = np.asarray(penalties.adjust(logits, tokens, np.int32(t), rows, start_id=0, eos_id=1))
  for i in range(b):
    counts = np.bincount(tokens[i, :t], minlength=v)
    want = logits[i].copy()
    seen = (counts > 0) | (np.arange(v) == 0)  # the decoder start token counts as seen
    r = settings["repetition_penalty"][i]
    want[seen] = np.where(want[seen] > 0, want[seen] / r, want[seen] * r)
    want -= settings["frequency_penalty"][i] * counts + settings["presence_penalty"][i] * (counts > 0)
    if t < settings["min_tokens"][i]:
      want[1] = -np.inf
    np.testing.assert_allclose(got[i], want, rtol=1e-6, err_msg=f"row {i}")
  # No repeated n-gram, per row, against transformers' processor on the same sequence (the start
  # token, then the emitted ones). Tokens drawn from 3 values, so n-grams repeat.
  from transformers.generation import logits_process as hf
  small = rng.randint(2, 5, (6, 10)).astype(np.int32)
  sizes = [1, 2, 3, 4, 0, 2]
  for t in (0, 1, 3, 6, 10):
    rows = decoding.rows_for(6, 10, no_repeat_ngram_size=np.array(sizes))
    got = np.asarray(penalties.adjust(np.zeros((6, 7), np.float32), small, np.int32(t), rows,
                                      start_id=0, eos_id=1))
    for i, n in enumerate(sizes):
      seq = torch.tensor(np.concatenate([[0], small[i, :t]])[None], dtype=torch.long)
      want = np.zeros((1, 7)) if n == 0 else hf.NoRepeatNGramLogitsProcessor(n)(
          seq, torch.zeros((1, 7), dtype=torch.float64)).numpy()
      np.testing.assert_array_equal(np.isinf(got[i]), np.isinf(want[0]), err_msg=f"row {i}, t={t}")
  assert np.isinf(got).sum() > 6  # something was banned
  # A size beyond the sequence bans nothing, and costs no more rounds than the sequence is long.
  huge = decoding.rows_for(6, 10, no_repeat_ngram_size=2**30)
  assert not np.isinf(np.asarray(penalties.adjust(np.zeros((6, 7), np.float32), small,
                                                  np.int32(10), huge, start_id=0, eos_id=1))).any()
  # Every row off: the loop's logits are untouched (and `apply` skips the work).
  off = decoding.rows_for(b, steps)
  assert not bool(penalties.active(off))
  np.testing.assert_array_equal(np.asarray(penalties.apply(logits, tokens, np.int32(t), off,
                                                           start_id=0, eos_id=1)), logits)


def test_frequency_and_presence_penalties_in_the_loop_equal_a_stepwise_reference(hf_pair):
  # Greedy with OpenAI's penalties, against a reference loop over teacher-forced logits: each step
  # the argmax of logits - f * count - p * (count > 0), counts of the tokens the row emitted so far.
  _, _, model = hf_pair
  enc = _inputs(seed=4)
  f, p = 0.9, 0.6
  out = decoding.decode(model, enc, decoding.DecodeOptions(
      max_decode_len=T, frequency_penalty=f, presence_penalty=p)).tokens
  dec_in = np.concatenate([np.zeros((B, 1), np.int32), out[:, :-1]], axis=1)
  logits = np.asarray(jitted.forward(model, enc, dec_in))
  for i in range(B):
    for t in range(T):
      counts = np.bincount(out[i, :t], minlength=logits.shape[-1])
      assert out[i, t] == np.argmax(logits[i, t] - f * counts - p * (counts > 0)), (i, t)
      if out[i, t] == 1:
        break
  plain = decoding.decode(model, enc, decoding.DecodeOptions(max_decode_len=T)).tokens
  assert (out != plain).any(), "the penalties changed nothing: not tested"
