"""T5 pretraining objectives as seqio preprocessors, and their registration as ordinary tasks.

    from t5tune import data
    vocab = data.get_vocabulary("spm/mine.model", extra_ids=100)   # sentinels
    data.register_pretraining_task(
        "my_corpus_sc", source={"train": "corpus/*.txt"},         # one document per line
        objective=data.SpanCorruption(noise_density=0.15, mean_noise_span_length=3.0),
        vocabulary=vocab)
    data.register_mixture("mine", ["my_corpus_sc", "my_nli"], rate={"my_corpus_sc": 1, "my_nli": 4})

Pipeline of a pretraining task: text -> tokens -> (seqio's cache placeholder:
`t5tune data cache` stores the tokens) -> documents concatenated and
cut into chunks of the raw length the objective needs for the feature lengths
(`SpanCorruption.raw_length`) -> the objective (random, from seqio's per-example
seeds, so a seed reproduces it) -> EOS on inputs and targets.

Span corruption (Raffel et al. 2020, sec. 3.1.4): of a chunk of n tokens,
round(n * noise_density) are noise, in round(noise / mean_noise_span_length)
spans; the lengths of the noise spans and of the non-noise spans are each a
uniformly random composition (every span non-empty); the chunk alternates
non-noise, noise, non-noise, ... Each noise span is replaced in the inputs by
one sentinel; the targets are, per span, its sentinel followed by the dropped
tokens. Sentinels count down from the last id of the vocabulary
(`extra_id_0` = vocab_size - 1, as T5): a SentencePiece vocabulary needs extra
ids; the byte vocabulary uses the top byte values as ByT5 does (0xF5..0xFF
never occur in UTF-8, plus any extra ids). ByT5's setting is
`SpanCorruption(mean_noise_span_length=20)`.

Prefix LM: a chunk of min(inputs, targets) - 1 tokens split at a uniformly
random point; inputs = prefix, targets = the rest.

The algorithm is written here (not imported from the `t5` package, which is
unmaintained and pins old TensorFlow); its conventions are T5's.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import threading
from typing import Any, Mapping, Sequence

import seqio
import tensorflow as tf

from t5tune import errors
from t5tune.data import sources as sources_lib
from t5tune.data import tasks as tasks_lib
from t5tune.data import vocab as vocab_lib

# Byte values that never occur in valid UTF-8 (0xF5..0xFF): ByT5's sentinels.
BYTE_SENTINELS = 11
# Documents concatenated at a time before cutting chunks (T5 uses 128 too).
_CONCAT_BATCH = 128
TEXT_FIELD = "text"


# The graph code here has no Python control flow on tensors: skipping
# AutoGraph's conversion makes building a task's dataset several times faster.
_plain_tf = tf.autograph.experimental.do_not_convert


def _round(x: float) -> int:
  # Python's round and tf.round both round half to even: the length helper
  # and the TF graph agree on every length.
  return int(round(x))


@dataclasses.dataclass(frozen=True)
class SpanCorruption:
  """T5's span corruption; `raw_length` is the chunk length that fills given feature lengths."""
  noise_density: float = 0.15
  mean_noise_span_length: float = 3.0
  name = "span_corruption"

  def __post_init__(self):
    if not 0.0 < self.noise_density < 1.0:
      raise errors.UsageError(
          f"noise_density={self.noise_density} must be in (0, 1)",
          where="SpanCorruption", fix="T5 uses 0.15")
    if self.mean_noise_span_length < 1.0:
      raise errors.UsageError(
          f"mean_noise_span_length={self.mean_noise_span_length} must be >= 1",
          where="SpanCorruption", fix="T5 uses 3, ByT5 20")

  def counts(self, length: int) -> tuple[int, int]:
    """(noise tokens, noise spans) in a chunk of `length` >= 2 tokens."""
    num_noise = min(max(_round(length * self.noise_density), 1), length - 1)
    num_spans = max(_round(num_noise / self.mean_noise_span_length), 1)
    return num_noise, min(num_spans, num_noise, length - num_noise)

  def lengths(self, raw_length: int) -> tuple[int, int]:
    """(inputs, targets) lengths, EOS included, made from a chunk of `raw_length`."""
    num_noise, num_spans = self.counts(raw_length)
    return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 1

  def raw_length(self, inputs_length: int, targets_length: int | None = None) -> tuple[int, int]:
    """The longest chunk whose corruption fits (inputs_length, targets_length); and its targets length.

    With only `inputs_length` this is T5's `random_spans_helper`: 568 raw
    tokens give 512 inputs and 114 targets at the defaults.
    """
    if inputs_length < 3:
      raise errors.UsageError(f"inputs_length={inputs_length} is too short for span corruption",
                              where="SpanCorruption.raw_length", fix="use at least 3")
    raw = 2
    fits = lambda n: (self.lengths(n)[0] <= inputs_length and
                      (targets_length is None or self.lengths(n)[1] <= targets_length))
    if not fits(raw):
      raise errors.UsageError(
          f"targets_length={targets_length} is too short for span corruption",
          where="SpanCorruption.raw_length", fix="use at least 3")
    while fits(raw + 1):
      raw += 1
    return raw, self.lengths(raw)[1]

  def chunk_length(self, sequence_length: Mapping[str, int]) -> int:
    """Raw tokens per chunk whose corruption fills `sequence_length['inputs']` exactly."""
    return self.raw_length(sequence_length["inputs"], sequence_length.get("targets"))[0]

  def max_sentinels(self, sequence_length: Mapping[str, int]) -> int:
    """The most sentinels one chunk's corruption uses (the vocabulary must have that many)."""
    return self.counts(self.chunk_length(sequence_length))[1]

  @_plain_tf
  def apply(self, tokens: tf.Tensor, seed: tf.Tensor, first_sentinel: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(inputs, targets) of one 1-D chunk of >= 2 tokens, without EOS."""
    length = tf.size(tokens)
    lengthf = tf.cast(length, tf.float64)
    num_noise = tf.clip_by_value(
        tf.cast(tf.round(lengthf * self.noise_density), tf.int32), 1, length - 1)
    num_spans = tf.maximum(tf.cast(tf.round(
        tf.cast(num_noise, tf.float64) / self.mean_noise_span_length), tf.int32), 1)
    num_spans = tf.minimum(num_spans, tf.minimum(num_noise, length - num_noise))
    seeds = tf.random.experimental.stateless_split(seed, 2)
    noise_lengths = _random_composition(num_noise, num_spans, seeds[0])
    keep_lengths = _random_composition(length - num_noise, num_spans, seeds[1])
    # Spans alternate: kept, noise, kept, noise, ... (span 2j+1 is noise span j).
    span_lengths = tf.reshape(tf.stack([keep_lengths, noise_lengths], axis=1), [-1])
    span_id = tf.repeat(tf.range(2 * num_spans), span_lengths)
    is_noise = tf.equal(span_id % 2, 1)
    is_first = tf.concat([[True], tf.not_equal(span_id[1:], span_id[:-1])], axis=0)
    sentinel = tf.cast(first_sentinel - span_id // 2, tokens.dtype)
    inputs = tf.boolean_mask(tf.where(is_noise & is_first, sentinel, tokens),
                             ~is_noise | is_first)
    targets = tf.boolean_mask(tf.where(~is_noise & is_first, sentinel, tokens),
                              is_noise | is_first)
    return inputs, targets


@dataclasses.dataclass(frozen=True)
class PrefixLM:
  """Split a chunk at a uniformly random point: inputs = prefix, targets = the rest."""
  name = "prefix_lm"

  def chunk_length(self, sequence_length: Mapping[str, int]) -> int:
    """Raw tokens per chunk: any split of it fits both features with their EOS."""
    # Any split of a chunk this long fits both features with their EOS, so
    # the split point can be uniform over the whole chunk.
    return min(sequence_length["inputs"], sequence_length["targets"]) - 1

  def max_sentinels(self, sequence_length: Mapping[str, int]) -> int:
    """0: a prefix LM uses no sentinels."""
    del sequence_length
    return 0

  @_plain_tf
  def apply(self, tokens, seed, first_sentinel):
    """(inputs, targets): the chunk split at a uniform random point (stateless, from `seed`)."""
    del first_sentinel
    split = tf.random.stateless_uniform([], seed, 1, tf.size(tokens), dtype=tf.int32)
    return tokens[:split], tokens[split:]


def _random_composition(total: tf.Tensor, parts: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """`parts` positive integers summing to `total`, uniformly over all such compositions."""
  # A composition is a choice of parts-1 distinct cut points among 1..total-1;
  # the smallest random keys pick them uniformly.
  keys = tf.random.stateless_uniform([total - 1], seed)
  cuts = tf.sort(tf.math.top_k(keys, parts - 1).indices + 1)
  bounds = tf.concat([[0], cuts, [total]], axis=0)
  return bounds[1:] - bounds[:-1]


def num_sentinels(vocabulary: seqio.Vocabulary) -> int:
  """How many sentinel ids the vocabulary offers (counting down from its last id)."""
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return BYTE_SENTINELS + vocabulary.extra_ids
  return int(getattr(vocabulary, "extra_ids", 0) or 0)


def check_vocabulary(objective, vocabulary: seqio.Vocabulary, where: str) -> None:
  """Raises UsageError when the objective needs sentinels the vocabulary lacks."""
  if isinstance(objective, SpanCorruption) and num_sentinels(vocabulary) == 0:
    raise errors.UsageError(
        f"{type(vocabulary).__name__} has no extra ids, so span corruption has no sentinels",
        where=where,
        fix="build the vocabulary with extra ids, e.g. data.get_vocabulary(PATH, extra_ids=100)"
            " (T5 uses 100), and use the same vocabulary in the tasks you mix with")


def _chunk(dataset: tf.data.Dataset, chunk_length: int) -> tf.data.Dataset:
  """Concatenates tokenized documents and cuts them into chunks of `chunk_length` (the rest shorter)."""
  @_plain_tf
  def cut(tokens):
    flat = tokens.flat_values
    n = tf.size(flat, out_type=tf.int64)
    starts = tf.range(0, n, chunk_length, dtype=tf.int64)
    return tf.RaggedTensor.from_row_splits(flat, tf.concat([starts, [n]], axis=0))

  dataset = dataset.map(_plain_tf(lambda ex: ex["targets"])).ragged_batch(_CONCAT_BATCH)
  dataset = dataset.map(cut).flat_map(tf.data.Dataset.from_tensor_slices)
  # A one-token chunk has no room for both kept and dropped tokens.
  dataset = dataset.filter(_plain_tf(lambda t: tf.size(t) >= 2))
  return dataset.map(_plain_tf(lambda t: {"targets": t}))


def make_preprocessor(objective, vocabulary: seqio.Vocabulary, task_name: str):
  """The seqio preprocessor that turns tokenized text into (inputs, targets) of `objective`."""
  first_sentinel = vocabulary.vocab_size - 1

  def preprocess(dataset: tf.data.Dataset, sequence_length=None) -> tf.data.Dataset:
    if not sequence_length or not sequence_length.get("inputs") or not sequence_length.get("targets"):
      raise errors.UsageError(
          f"pretraining task {task_name!r} needs feature lengths to cut its text",
          where="get_dataset(sequence_length=...)",
          fix="pass sequence_length={'inputs': ..., 'targets': ...}")
    needed = objective.max_sentinels(sequence_length)
    available = num_sentinels(vocabulary)
    if needed > available:
      raise errors.UsageError(
          f"pretraining task {task_name!r}: chunks of {objective.chunk_length(sequence_length)}"
          f" tokens need {needed} sentinels, the vocabulary has {available}",
          where=str(vocabulary),
          fix="raise mean_noise_span_length (ByT5 uses 20), shorten the features,"
              " or add extra ids to the vocabulary")
    dataset = _chunk(dataset, objective.chunk_length(sequence_length))

    @seqio.map_over_dataset(num_seeds=1)
    @_plain_tf
    def corrupt(ex, seed):
      inputs, targets = objective.apply(ex["targets"], seed, first_sentinel)
      return {"inputs": inputs, "targets": targets}

    return corrupt(dataset)

  preprocess.__name__ = f"{objective.name}_preprocessor"
  return preprocess


class TextSource(seqio.DataSource):
  """Documents from a t5tune source (JSONL/CSV/TSV records or a function), read once into memory."""

  def __init__(self, task_name: str, source: sources_lib.Source, text_field: str,
               splits: Sequence[str]):
    super().__init__(splits=splits)
    self.task_name = task_name
    self.source = source
    self.text_field = text_field
    self._texts: dict[str, list[str]] = {}
    self._lock = threading.Lock()

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return [f"{self.task_name}:{split}"]

  def texts(self, split: str) -> list[str]:
    with self._lock:
      if split not in self._texts:
        texts = []
        for location, record in self.source.records(split):
          if isinstance(record, sources_lib.BadRecord):
            raise errors.InputError(record.message, where=location,
                                    fix="fix or remove the record")
          text = record.get(self.text_field)
          if not isinstance(text, str):
            raise errors.InputError(
                f"record has no string field {self.text_field!r} (fields: {sorted(record)})",
                where=location, fix=f"add it, or pass text_field= naming the field that holds the text")
          if text.strip():
            texts.append(text)
        if not texts:
          raise errors.InputError(f"pretraining task {self.task_name!r}: no text in split {split!r}",
                                  where=self.source.describe(), fix="point the source at non-empty files")
        self._texts[split] = texts
      return self._texts[split]

  def num_input_examples(self, split: str) -> int:
    return len(self.texts(split))

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                  use_cached=False, num_epochs=1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # seqio's signature; unused here
    texts = self.texts(split)
    dataset = tf.data.Dataset.from_tensor_slices({"targets": tf.constant(texts, tf.string)})
    if shard_info is not None and shard_info.num_shards > 1:
      dataset = dataset.shard(shard_info.num_shards, shard_info.index)
    if shuffle:
      # Document order; the task shuffles examples again after preprocessing.
      dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return dataset


def _is_text_files(source) -> bool:
  if not isinstance(source, Mapping) or not source:
    return False
  patterns = []
  for value in source.values():
    if not isinstance(value, (str, os.PathLike, list, tuple)):
      return False
    patterns.extend([value] if isinstance(value, (str, os.PathLike)) else value)
  return all(str(p).endswith(".txt") for p in patterns)


def _text_line_source(files: Mapping[str, Any]) -> seqio.DataSource:
  for split, value in files.items():
    for pattern in [value] if isinstance(value, (str, os.PathLike)) else value:
      if not glob.glob(os.path.expanduser(str(pattern))):
        raise errors.InputError(f"split {split!r}: no file matches {str(pattern)!r}",
                                where=f"cwd {os.getcwd()}", fix="give an existing path or glob")
  files = {k: [os.path.expanduser(str(p)) for p in ([v] if isinstance(v, (str, os.PathLike)) else v)]
           for k, v in files.items()}
  return seqio.TextLineDataSource(files)


def register_pretraining_task(
    name: str, *, source, objective=None,
    vocabulary: str | seqio.Vocabulary = vocab_lib.BYTE,
    text_field: str = TEXT_FIELD, splits: Sequence[str] | None = None,
    shuffle_buffer_size: int = 10_000, metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False) -> seqio.Task:
  """Registers a seqio task applying a pretraining objective to text; returns it.

  Args:
    name: the seqio task name; mix it with instruction tasks by rate.
    source: {split: glob(s)} of `.txt` files (one document per line, streamed),
      of JSONL/CSV/TSV files, a `t5tune.data.sources.Source`, or {split:
      records or a function} (records carry `text_field`).
    objective: `SpanCorruption(...)` (default) or `PrefixLM()`.
    vocabulary: "byte", or a SentencePiece vocabulary with extra ids
      (`get_vocabulary(PATH, extra_ids=100)`); the same object the mixed tasks use.
    text_field: the record field holding the text (JSONL/CSV/TSV/functions).
    splits: splits to expose (default: all the source has).
    shuffle_buffer_size: seqio's shuffle buffer over the corrupted chunks.
    metadata: free-form, e.g. {"domain": "legal"}; mixtures can select on it
      (`tasks.get_info(name)` has it, with `kind="pretraining"` and the objective).
    overwrite: replace a task of the same name instead of failing.
  """
  objective = SpanCorruption() if objective is None else objective
  if not hasattr(objective, "chunk_length"):
    raise errors.UsageError(f"objective {objective!r} is not a pretraining objective",
                            where=f"task {name!r}", fix="pass data.SpanCorruption(...) or data.PrefixLM()")
  vocabulary = vocab_lib.as_vocabulary(vocabulary)
  check_vocabulary(objective, vocabulary, where=f"pretraining task {name!r}")
  if _is_text_files(source):
    data_source = _text_line_source(source)
    # TextLineDataSource yields plain strings: name them like the other sources.
    reader = [_text_to_targets]
  else:
    src = sources_lib.as_source(source)
    data_source = TextSource(name, src, text_field, splits or src.splits)
    reader = []
  if splits is not None:
    tasks_lib.check_splits(splits, data_source.splits, where=f"pretraining task {name!r}")
  tasks_lib.claim_name(seqio.TaskRegistry, "task", name, overwrite=overwrite,
                       where="register_pretraining_task")
  output_features = {
      "inputs": seqio.Feature(vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary, add_eos=True),
  }
  task = seqio.TaskRegistry.add(
      name, source=data_source, output_features=output_features,
      preprocessors=reader + [
          seqio.preprocessors.tokenize,
          # Cached: the tokenized documents. The chunk length depends on the feature lengths and
          # the objective draws new noise per epoch, so both stay after the placeholder.
          seqio.CacheDatasetPlaceholder(),
          make_preprocessor(objective, vocabulary, name),
          seqio.preprocessors.append_eos_after_trim],
      shuffle_buffer_size=shuffle_buffer_size)
  tasks_lib.add_info(tasks_lib.TaskInfo(
      name, name, "", dict(metadata or {}), data_source,
      kind=tasks_lib.PRETRAINING, objective=objective))
  return task


def _text_to_targets(dataset: tf.data.Dataset) -> tf.data.Dataset:
  return dataset.map(_plain_tf(lambda line: {"targets": line})).filter(
      _plain_tf(lambda ex: tf.strings.length(tf.strings.strip(ex["targets"])) > 0))
