"""t5tune.data.tokenizers against seqio's vocabularies: the same ids and strings, no TensorFlow imported."""
import os
import subprocess
import sys
import textwrap

import pytest
import seqio

from t5tune import errors
from t5tune.data import tokenizers
from t5tune.data import vocab as vocab_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = ["Translate to German: the cat sat on the mat.", "Héllo wörld, ça va ?", "数据 和 模型",
         "emoji 🙂 and tabs\tand  double spaces", "", " leading space", "ünïcödé " * 3,
         "Is the review positive? yes / no", "2 + 2 = 4"]


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
  corpus = [t for t in TEXTS if t] * 20 + ["the quick brown fox jumps over the lazy dog"] * 20
  return vocab_lib.train_sentencepiece(corpus, str(tmp_path_factory.mktemp("spm") / "spm"),
                                       vocab_size=80)


def _id_lists(vocab_size):
  eos, unk = 1, 2
  return [
      [], [eos], [0, 0], [7, 8, 9, eos, 10, 11],  # text after EOS is dropped
      [vocab_size, vocab_size + 5, 7, eos],  # past the vocabulary: UNK
      list(range(vocab_size + 3)), [unk, 5, unk], [0, 5, 0, 6],
  ]


def test_bytes_equal_seqio_byte_vocabulary():
  ours, theirs = tokenizers.Bytes(), seqio.ByteVocabulary()
  assert (ours.eos_id, ours.unk_id, ours.pad_id, ours.vocab_size) == (
      theirs.eos_id, theirs.unk_id, theirs.pad_id, theirs.vocab_size)
  for text in TEXTS:
    assert ours.encode(text) == list(theirs.encode(text)), text
    assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text)) == text
  cut = list("é".encode("utf-8"))[:1]  # half a UTF-8 character: both drop it
  for ids in _id_lists(theirs.vocab_size) + [[b + 3 for b in b"ok" + bytes(cut)]]:
    assert ours.decode(ids) == theirs.decode(ids), ids


def test_sentencepiece_equals_seqio_sentencepiece_vocabulary(spm_path):
  ours, theirs = tokenizers.load(spm_path), seqio.SentencePieceVocabulary(spm_path)
  assert isinstance(ours, tokenizers.SentencePiece)
  assert (ours.eos_id, ours.unk_id, ours.pad_id, ours.vocab_size) == (
      theirs.eos_id, theirs.unk_id, theirs.pad_id, theirs.vocab_size)
  for text in TEXTS:
    assert ours.encode(text) == list(theirs.encode(text)), text
    assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text)), text
  for ids in _id_lists(theirs.vocab_size):
    assert ours.decode(ids) == theirs.decode(ids), ids


def test_bad_specs_are_one_line_errors_naming_the_file(tmp_path):
  with pytest.raises(errors.MissingInputError, match="no such SentencePiece model file"):
    tokenizers.load(str(tmp_path / "missing.model"))
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"not a model")
  with pytest.raises(errors.InputError, match="not a SentencePiece model") as e:
    tokenizers.load(str(bad))
  assert e.value.where == str(bad)
  with pytest.raises(TypeError):
    tokenizers.load(3)
  # seqio's loader goes through the same checks.
  with pytest.raises(errors.InputError, match="not a SentencePiece model"):
    vocab_lib.get_vocabulary(str(bad))


def test_loading_and_using_them_imports_neither_seqio_nor_tensorflow(spm_path):
  script = textwrap.dedent(f"""
      import sys
      from t5tune.data import tokenizers
      from t5tune.infer import api
      for spec in ("byte", {spm_path!r}):
        v = tokenizers.load(spec)
        assert v.decode(v.encode("the cat")) == "the cat"
      print(sorted(m for m in ("seqio", "tensorflow") if m in sys.modules))
      """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split("\n")[-2] == "[]"
