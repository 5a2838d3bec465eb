"""The byte and SentencePiece vocabularies for inference, without seqio or TensorFlow.

    tokenizers.load("byte")            -> Bytes()        (seqio.ByteVocabulary's ids)
    tokenizers.load("spiece.model")    -> SentencePiece  (seqio.SentencePieceVocabulary's ids)

Why not seqio's classes: `import seqio` imports TensorFlow and tensorflow_text,
about 6 s of CPU before a `predict` run or a server can start, for `encode`,
`decode` and `eos_id`, which need only the `sentencepiece` library (or
nothing, for bytes). Training and evaluation keep seqio's vocabularies (the
tasks are seqio's); these give the same ids and the same strings as seqio's
with no extra ids, the vocabulary `t5tune.infer.api.resolve_vocabulary`
makes from a string. tests/data/test_tokenizers.py compares both ways on
ASCII, accents, CJK, emoji, control ids, EOS in the middle and ids past the
end of the vocabulary.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from t5tune import errors

BYTE = "byte"
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
_BYTE_OFFSET = 3  # seqio.ByteVocabulary: pad 0, eos 1, unk 2, then the 256 bytes


def _through_eos(ids: Iterable[int], vocab_size: int, unk_id: int, eos_id: int) -> list[int]:
  """seqio.Vocabulary.decode's cleaning: ids past the vocabulary become UNK; cut after the first EOS."""
  ids = [unk_id if int(i) >= vocab_size else int(i) for i in ids]
  return ids[:ids.index(eos_id) + 1] if eos_id in ids else ids


class Bytes:
  """UTF-8 bytes as ids 3-258 (ByT5's vocabulary)."""
  pad_id, eos_id, unk_id = PAD_ID, EOS_ID, UNK_ID
  vocab_size = _BYTE_OFFSET + 256

  def encode(self, text: str | bytes) -> list[int]:
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    return [b + _BYTE_OFFSET for b in data]

  def decode(self, ids: Iterable[int]) -> str:
    ids = _through_eos(ids, self.vocab_size, self.unk_id, self.eos_id)
    return bytes(i - _BYTE_OFFSET for i in ids
                 if _BYTE_OFFSET <= i < self.vocab_size).decode("utf-8", errors="ignore")


class SentencePiece:
  """A SentencePiece .model's pieces (T5's spiece.model: pad 0, eos 1, unk 2)."""

  def __init__(self, spec: str):
    self.path = os.path.expanduser(spec)
    self._sp = _processor(spec)
    self.pad_id, self.eos_id, self.unk_id = self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id()
    self.vocab_size = self._sp.GetPieceSize()

  def encode(self, text: str) -> list[int]:
    return self._sp.EncodeAsIds(text)

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.DecodeIds(_through_eos(ids, self.vocab_size, self.unk_id, self.eos_id))


_FIX = ("pass 'byte' or the path of a T5 spiece .model (or train one with"
        " `t5tune data train-vocab`)")


def _processor(spec: str):
  """The loaded SentencePiece model `spec` names; a one-line error for a missing or bad file."""
  path = os.path.expanduser(spec)
  if not os.path.exists(path):
    raise errors.MissingInputError(f"vocabulary {spec!r}: no such SentencePiece model file",
                                   where=spec, fix=_FIX)
  import sentencepiece  # pylint: disable=g-import-not-at-top
  try:  # seqio loads the file lazily, where a bad file is a protobuf error deep in a pipeline
    return sentencepiece.SentencePieceProcessor(model_file=path)
  except (RuntimeError, OSError, ValueError) as e:
    raise errors.InputError(f"not a SentencePiece model ({str(e).splitlines()[0]})",
                            where=path, fix=_FIX) from None


def check_spec(spec: str) -> str:
  """BYTE, or the path of the SentencePiece model `spec` names once it loads."""
  if _is_byte(spec):
    return BYTE
  _processor(spec)
  return os.path.expanduser(spec)


def check_fits(vocabulary: Any, model_vocab_size: int, where: str,
               fix: str = "give the vocabulary the model was trained with") -> None:
  """An InputError naming both sizes when `vocabulary` has ids the model's embedding lacks.

  JAX gathers give NaN (or a clamped row) for an id past the embedding instead of
  failing, so a larger vocabulary would decode and score garbage silently; every
  place a model meets a vocabulary (predict, serve, the harness, generate/score,
  train's, evaluate's and continual's tasks) checks it here first.
  """
  size = getattr(vocabulary, "vocab_size", None)
  if size is not None and int(size) > int(model_vocab_size):
    raise errors.InputError(
        f"the vocabulary has {int(size)} ids but the model's embedding has {int(model_vocab_size)}",
        where=where, fix=fix)


# The SentencePiece file a model directory carries its vocabulary in (Hugging Face T5 names it
# spiece.model), first found first.
MODEL_DIR_FILES = ("spiece.model", "vocab.model", "sentencepiece.model")


def model_dir_vocabulary(directory: str) -> str | None:
  """The path of the SentencePiece model a model directory carries, or None (none there)."""
  for name in MODEL_DIR_FILES:
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def load(spec: str) -> Bytes | SentencePiece:
  """The vocabulary named by `spec`: "byte" or a SentencePiece .model path."""
  return Bytes() if _is_byte(spec) else SentencePiece(spec)


def _is_byte(spec: str) -> bool:
  if not isinstance(spec, str):
    raise TypeError(f"vocabulary spec must be a string, got {type(spec).__name__}")
  return spec == BYTE
