"""Vocabularies: `get_vocabulary(spec)` and training a SentencePiece model from task text.

    get_vocabulary("byte")                 -> seqio.ByteVocabulary()   (ByT5; 259 ids + extras)
    get_vocabulary("path/to/spiece.model") -> seqio.SentencePieceVocabulary(path)  (T5)
    get_vocabulary("path/to/spiece.model", extra_ids=100)  -> with T5's 100 sentinels

`train_sentencepiece` writes `PREFIX.model`/`PREFIX.vocab` with the ids T5
expects (pad 0, eos 1, unk 2, no bos), so the result loads with
`get_vocabulary(PREFIX + ".model")`.
"""
from __future__ import annotations

import functools
import io
import os
from typing import Iterable, Sequence

import seqio

from t5tune import atomic
from t5tune import errors
from t5tune.data import tokenizers

BYTE = tokenizers.BYTE


@functools.lru_cache(maxsize=None)
def get_vocabulary(spec: str, extra_ids: int = 0) -> seqio.Vocabulary:
  """The vocabulary named by `spec`: "byte" or a SentencePiece .model path.

  `extra_ids` appends that many ids after the pieces (T5's sentinels,
  `extra_id_0` = the last id), as seqio does; span corruption needs them.
  """
  path = tokenizers.check_spec(spec)
  if path == tokenizers.BYTE:
    return seqio.ByteVocabulary(extra_ids=extra_ids)
  return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)


def as_vocabulary(vocab: str | seqio.Vocabulary) -> seqio.Vocabulary:
  return get_vocabulary(vocab) if isinstance(vocab, str) else vocab


def describe(vocabulary: seqio.Vocabulary) -> str:
  """'byte', or the SentencePiece model file a vocabulary reads (for messages)."""
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return BYTE
  return str(getattr(vocabulary, "sentencepiece_model_file", None) or type(vocabulary).__name__)


def agrees(vocabulary: seqio.Vocabulary, model_file: str) -> bool:
  """Whether `vocabulary` tokenises with the SentencePiece model in `model_file` (the same
  file contents, wherever each lies)."""
  path = getattr(vocabulary, "sentencepiece_model_file", None)
  if not path:
    return False
  if os.path.abspath(path) == os.path.abspath(model_file):
    return True
  with open(path, "rb") as a, open(model_file, "rb") as b:
    return a.read() == b.read()


def check_agrees_with_model_dir(task: str, vocabulary: seqio.Vocabulary, model_dir: str,
                                where: str) -> None:
  """A UsageError naming both vocabularies when the model directory `model_dir` carries its own
  SentencePiece model and task `task` tokenises with another (a run would train or score
  the checkpoint on ids that mean other pieces, without a word)."""
  own = tokenizers.model_dir_vocabulary(model_dir)
  if own is None or agrees(vocabulary, own):
    return
  raise errors.UsageError(
      f"task {task!r} tokenises with {describe(vocabulary)} but {where}={model_dir} has its own"
      f" vocabulary {own}", where=where,
      fix=f"tokenise the tasks with it (t5tune.flan_tasks: export T5TUNE_FLAN_VOCAB={own}; a task"
      " module of your own: its vocabulary=) or start from a checkpoint of the tasks' vocabulary")


def train_sentencepiece(texts: Iterable[str], prefix: str, vocab_size: int,
                        model_type: str = "unigram",
                        character_coverage: float = 1.0,
                        input_sentence_size: int = 1_000_000) -> str:
  """Trains a T5-compatible SentencePiece model on `texts`; returns the .model path."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if vocab_size < 8:  # pad, eos, unk and a few pieces: SentencePiece's own check is a C++ abort
    raise errors.UsageError(f"vocab_size={vocab_size} is too small", where="--vocab_size",
                            fix="give at least 8 (T5 uses 32000)")
  model = io.BytesIO()
  try:
    _train(spm, texts, model, vocab_size, model_type, character_coverage, input_sentence_size)
  except RuntimeError as e:  # SentencePiece's refusals (e.g. a vocabulary the data cannot fill)
    raise errors.UsageError(f"SentencePiece refused to train: {str(e).strip()}",
                            where="--vocab_size / --tasks",
                            fix="lower --vocab_size or give more text") from None
  # Created only once there is a model to write (a refusal leaves nothing behind).
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  path = prefix + ".model"
  atomic.write_bytes(path, model.getvalue())
  return path


def _train(spm, texts, model, vocab_size, model_type, character_coverage, input_sentence_size):
  spm.SentencePieceTrainer.train(
      sentence_iterator=(t for t in texts if t.strip()),
      model_writer=model,
      vocab_size=vocab_size,
      model_type=model_type,
      character_coverage=character_coverage,
      input_sentence_size=input_sentence_size,
      shuffle_input_sentence=True,
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      # Long instructions are one "sentence" each; do not drop them.
      max_sentence_length=1 << 16,
      hard_vocab_limit=False,
  )


def check_tasks_fit(names: Sequence[str], model_vocab_size: int, where: str,
                    fix: str = "give the vocabulary the model was trained with") -> None:
  """`tokenizers.check_fits` for the vocabularies of every task of `names` (tasks or mixtures;
  a run's and a stage's tasks meet the model of the run, an evaluation's the checkpoint)."""
  for name in names:
    try:
      task_or_mixture = seqio.get_mixture_or_task(name)
    except ValueError:
      continue  # not registered: reported where the name is used, with the closest names
    members = (task_or_mixture.tasks if isinstance(task_or_mixture, seqio.Mixture)
               else [task_or_mixture])
    for task in members:
      for feature in task.output_features.values():
        tokenizers.check_fits(feature.vocabulary, model_vocab_size,
                              where=f"{where}: task {task.name}", fix=fix)
