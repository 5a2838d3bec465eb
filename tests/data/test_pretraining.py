"""Span corruption and prefix LM: exact reconstruction, measured noise statistics, lengths, packing, errors."""
import numpy as np
import pytest
import seqio
import tensorflow as tf

from t5tune import data
from t5tune import errors
from t5tune.cli import data as data_cli
from t5tune.data import lengths as lengths_lib
from t5tune.data import pipeline
from t5tune.data import pretraining
from t5tune.data import vocab as vocab_lib
from t5tune.quality import report
import t5tune.demo_tasks  # noqa: F401  (registers the t5tune_demo_* tasks)

TOKENS_BELOW = 200  # random "text" ids lie in [3, 200); sentinels lie far above


def _chunks(n, min_len, max_len, fixed_len=None):
  def make(i):
    seeds = tf.random.experimental.stateless_split(tf.stack([i, tf.constant(11, tf.int64)]), 3)
    length = fixed_len or tf.random.stateless_uniform([], seeds[0], min_len, max_len + 1, tf.int32)
    tokens = tf.random.stateless_uniform([length], seeds[1], 3, TOKENS_BELOW, tf.int32)
    return tokens, seeds[2]
  return tf.data.Dataset.range(n).map(make)


def _corrupted(objective, n, first_sentinel, min_len=2, max_len=700, fixed_len=None):
  """n random token chunks and their corruption, made in one tf.data graph, fetched at once."""
  def corrupt(tokens, seed):
    return (tokens,) + tuple(objective.apply(tokens, seed, first_sentinel))
  ds = _chunks(n, min_len, max_len, fixed_len).map(
      corrupt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  tokens, inputs, targets = next(ds.ragged_batch(n).as_numpy_iterator())
  return list(zip(tokens, inputs, targets))


def _split_targets(targets, is_sentinel):
  """{sentinel: dropped tokens} and the sentinel order of the targets."""
  spans, order = {}, []
  for tok in targets:
    if is_sentinel(tok):
      order.append(int(tok))
      spans[int(tok)] = []
    else:
      spans[order[-1]].append(int(tok))
  return spans, order


def _reconstruct(inputs, targets, is_sentinel):
  spans, _ = _split_targets(targets, is_sentinel)
  out = []
  for tok in inputs:
    out.extend(spans[int(tok)] if is_sentinel(tok) else [int(tok)])
  return out


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.5, 2.0)])
def test_inputs_and_targets_reconstruct_the_tokens_exactly(density, mean_span):
  objective = data.SpanCorruption(density, mean_span)
  first = 999
  is_sentinel = lambda t: t >= TOKENS_BELOW
  # The dense setting caps spans by the kept tokens: fewer examples suffice.
  examples = _corrupted(objective, 2000 if density < 0.5 else 1000, first)
  for tokens, inputs, targets in examples:
    assert _reconstruct(inputs, targets, is_sentinel) == tokens.tolist()
    _, order = _split_targets(targets, is_sentinel)
    # One sentinel per span, counting down from the last id, the same in both.
    assert order == list(range(first, first - len(order), -1))
    assert [int(t) for t in inputs if is_sentinel(t)] == order
    assert targets[0] == first and len(order) == objective.counts(len(tokens))[1]
  # Lengths are those the helper predicts.
  tokens, inputs, targets = examples[0]
  assert (len(inputs) + 1, len(targets) + 1) == objective.lengths(len(tokens))


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.15, 20.0)])
def test_measured_noise_density_and_mean_span_match_the_setting(density, mean_span):
  objective = data.SpanCorruption(density, mean_span)

  def measure(tokens, seed):
    inputs, targets = objective.apply(tokens, seed, 999)
    spans = tf.reduce_sum(tf.cast(targets >= TOKENS_BELOW, tf.int32))
    # Where the first noise span starts: the tokens before the first sentinel.
    first = tf.argmax(tf.cast(inputs >= TOKENS_BELOW, tf.int32), output_type=tf.int32)
    return tf.size(tokens), tf.size(targets) - spans, spans, first

  ds = _chunks(10_000, 200, 1200).map(measure, num_parallel_calls=tf.data.AUTOTUNE)
  total, noise, spans, first = next(ds.batch(10_000).as_numpy_iterator())
  assert len(total) == 10_000
  assert noise.sum() / total.sum() == pytest.approx(density, rel=0.02)
  assert noise.sum() / spans.sum() == pytest.approx(mean_span, rel=0.02)
  # Span positions are random, not fixed: the first span starts in many places.
  assert len(np.unique(first)) > 50


def test_same_seed_same_corruption_other_seed_other():
  objective = data.SpanCorruption()
  tokens = tf.range(3, 203)
  a = objective.apply(tokens, tf.constant([1, 2]), 999)
  b = objective.apply(tokens, tf.constant([1, 2]), 999)
  c = objective.apply(tokens, tf.constant([1, 3]), 999)
  assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("inputs_length,density,mean_span,raw,targets", [
    (512, 0.15, 3.0, 568, 114),    # T5 (Raffel et al.; t5's random_spans_helper)
    (1024, 0.15, 20.0, 1193, 189),  # ByT5's inputs/targets lengths
    (626, 0.15, 3.0, None, None),
    (64, 0.5, 2.0, None, None),
    (100, 0.15, 1.0, None, None),
])
def test_raw_length_fills_the_inputs_exactly(inputs_length, density, mean_span, raw, targets):
  objective = data.SpanCorruption(density, mean_span)
  got_raw, got_targets = objective.raw_length(inputs_length)
  if raw is not None:
    assert (got_raw, got_targets) == (raw, targets)
  # Checked by corrupting real chunks of that length: inputs fill inputs_length.
  tokens, inputs, out_targets = _corrupted(objective, 1, 10_000, fixed_len=got_raw)[0]
  assert len(inputs) + 1 == inputs_length and len(out_targets) + 1 == got_targets
  longer = _corrupted(objective, 1, 10_000, fixed_len=got_raw + 1)[0]
  assert len(longer[1]) + 1 > inputs_length


def test_raw_length_respects_a_shorter_targets_length():
  objective = data.SpanCorruption()
  raw, targets = objective.raw_length(512, 64)
  assert targets <= 64 and objective.lengths(raw)[0] <= 512
  # One token longer would overflow the targets (or the inputs).
  assert objective.lengths(raw + 1)[1] > 64 or objective.lengths(raw + 1)[0] > 512


def _register_text_task(name, texts, vocabulary="byte", objective=None):
  return data.register_pretraining_task(
      name, source={"train": [{"text": t} for t in texts]}, vocabulary=vocabulary,
      objective=objective, overwrite=True)


_TEXTS = [" ".join(f"w{(k * 13 + j) % 97}" for j in range(40 + k % 30)) for k in range(300)]


def test_task_gives_eos_terminated_examples_that_fit_and_reconstruct():
  _register_text_task("t5tune_test_pt_bytes", _TEXTS)
  lengths = {"inputs": 128, "targets": 32}
  ds = seqio.get_mixture_or_task("t5tune_test_pt_bytes").get_dataset(
      lengths, split="train", shuffle=False, seed=0)
  vocab = seqio.ByteVocabulary()
  is_sentinel = lambda t: t > vocab.vocab_size - 1 - pretraining.BYTE_SENTINELS
  text = []
  for ex in ds.as_numpy_iterator():
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
    assert len(ex["inputs"]) <= 128 and len(ex["targets"]) <= 32
    assert ex["targets"][0] == vocab.vocab_size - 1  # ByT5: byte 0xFF is extra_id_0
    text.extend(_reconstruct(ex["inputs"][:-1], ex["targets"][:-1], is_sentinel))
  # Documents were concatenated in order (no shuffle): the bytes are all the text.
  assert vocab.decode(text) == "".join(_TEXTS)


def test_span_corrupted_examples_pack_with_instruction_tasks():
  # ByT5's mean span: the byte vocabulary has 11 sentinels (0xF5..0xFF).
  _register_text_task("t5tune_test_pt_pack", _TEXTS, objective=data.SpanCorruption(0.15, 20.0))
  data.register_mixture("t5tune_test_pt_mix", ["t5tune_test_pt_pack", "t5tune_demo_sentiment"],
                        rate={"t5tune_test_pt_pack": 1.0, "t5tune_demo_sentiment": 1.0},
                        overwrite=True)
  ds = pipeline.local_dataset(
      "t5tune_test_pt_mix", split="train", feature_lengths={"inputs": 256, "targets": 64},
      local_batch_size=4, pack=True, seed=0, shard=seqio.ShardInfo(0, 1))
  batch = next(ds.as_numpy_iterator())
  sentinels = segments = 0
  for row in range(4):
    seg = batch["encoder_segment_ids"][row]
    tok = batch["encoder_input_tokens"][row]
    dseg = batch["decoder_segment_ids"][row]
    dtok = batch["decoder_target_tokens"][row]
    for s in range(1, seg.max() + 1):
      enc, dec = tok[seg == s], dtok[dseg == s]
      assert enc[-1] == 1 and dec[-1] == 1  # each packed example keeps its EOS
      # Positions restart at 0 for every packed example.
      assert batch["encoder_positions"][row][seg == s][0] == 0
      sentinels += int(dec[0] == 258)
      segments += 1
  assert segments > 4 and 0 < sentinels < segments  # both tasks are in the packed rows


def test_sentencepiece_without_extra_ids_is_an_error_naming_the_fix(tmp_path):
  path = vocab_lib.train_sentencepiece(_TEXTS * 3, str(tmp_path / "spm"), vocab_size=120)
  with pytest.raises(errors.UsageError, match="extra_ids=100"):
    _register_text_task("t5tune_test_pt_spm_bad", _TEXTS, vocabulary=vocab_lib.get_vocabulary(path))
  vocab = vocab_lib.get_vocabulary(path, extra_ids=20)
  _register_text_task("t5tune_test_pt_spm", _TEXTS, vocabulary=vocab)
  ex = next(seqio.get_mixture_or_task("t5tune_test_pt_spm").get_dataset(
      {"inputs": 64, "targets": 16}, split="train", shuffle=False, seed=0).as_numpy_iterator())
  assert ex["targets"][0] == vocab.vocab_size - 1  # extra_id_0
  is_sentinel = lambda t: t >= vocab.vocab_size - 20
  assert vocab.decode(_reconstruct(ex["inputs"][:-1], ex["targets"][:-1], is_sentinel)).startswith(
      _TEXTS[0][:20])
  # Too many spans for the sentinels the vocabulary has: said when the data is built.
  with pytest.raises(errors.UsageError, match="sentinels"):
    seqio.get_mixture_or_task("t5tune_test_pt_spm").get_dataset(
        {"inputs": 512, "targets": 128}, split="train", shuffle=False, seed=0)


def test_prefix_lm_splits_a_chunk_into_prefix_and_rest(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(_TEXTS) + "\n")
  data.register_pretraining_task("t5tune_test_pt_prefix", source={"train": str(corpus)},
                                 objective=data.PrefixLM(), overwrite=True)
  ds = seqio.get_mixture_or_task("t5tune_test_pt_prefix").get_dataset(
      {"inputs": 64, "targets": 48}, split="train", shuffle=False, seed=0)
  vocab = seqio.ByteVocabulary()
  whole = "".join(_TEXTS)  # TextLineDataSource drops the newlines
  total, splits = 0, set()
  for ex in ds.as_numpy_iterator():
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
    assert len(ex["inputs"]) <= 64 and len(ex["targets"]) <= 48
    chunk = vocab.decode(ex["inputs"][:-1].tolist() + ex["targets"][:-1].tolist())
    assert chunk in whole
    total += len(chunk)
    splits.add(len(ex["inputs"]))
  # Only one-token remainders (one per 128 documents) are dropped.
  assert len(whole) - 3 <= total <= len(whole)
  assert len(splits) > 20


def test_bad_records_and_settings_are_reported():
  with pytest.raises(errors.UsageError, match="noise_density"):
    data.SpanCorruption(noise_density=1.5)
  data.register_pretraining_task("t5tune_test_pt_nofield", source={"train": [{"body": "abc"}]},
                                 overwrite=True)
  with pytest.raises(errors.InputError, match="text_field"):
    seqio.get_mixture_or_task("t5tune_test_pt_nofield").get_dataset(
        {"inputs": 64, "targets": 16}, split="train")


def test_pretraining_tasks_are_in_the_one_registry_listing_selection_and_truncation(capsys):
  data.register_pretraining_task(
      "t5tune_test_pt_registry", source={"train": [{"text": t} for t in _TEXTS[:40]]},
      objective=data.PrefixLM(), metadata={"domain": "test_pt_registry"}, overwrite=True)
  info = data.tasks.get_info("t5tune_test_pt_registry")
  assert (info.kind, info.objective) == (data.tasks.PRETRAINING, data.PrefixLM())
  assert data.tasks.get_info("t5tune_demo_qa").kind == data.tasks.INSTRUCTION
  # Metadata selection (mixtures by predicate) sees the pretraining task.
  picked = data.task_names(lambda i: i.metadata.get("domain") == "test_pt_registry")
  assert picked == ["t5tune_test_pt_registry"]
  data.register_mixture("t5tune_test_pt_registry_mix",
                        ["t5tune_test_pt_registry", "t5tune_demo_qa"], overwrite=True)
  lengths = {"inputs": 64, "targets": 32}
  truncation = lengths_lib.truncation("t5tune_test_pt_registry_mix", "train", lengths, max_examples=50)
  assert truncation["t5tune_test_pt_registry"]["objective"] == "prefix_lm"
  assert truncation["t5tune_test_pt_registry"]["chunk_tokens"] == 31
  assert "examples" in truncation["t5tune_demo_qa"]
  # `t5tune data list` and the data report name its kind and objective.
  data_cli._list()
  assert "t5tune_test_pt_registry  kind=pretraining objective=PrefixLM()" in capsys.readouterr().out
  built = report.build("t5tune_test_pt_registry_mix", feature_lengths=lengths, max_examples=20,
                       near_threshold=None)
  assert built["tasks"]["t5tune_test_pt_registry"]["kind"] == "pretraining"
  assert "splits" in built["tasks"]["t5tune_demo_qa"]
  # Code that needs an instruction task says which kind it got.
  with pytest.raises(errors.UsageError, match="pretraining task"):
    data.tasks.get_info("t5tune_test_pt_registry", data.tasks.INSTRUCTION)
  with pytest.raises(errors.UsageError, match="not a registered instruction task"):
    data.tasks.registered_template("t5tune_test_pt_registry")
