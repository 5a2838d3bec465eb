"""`t5tune data prepare`: prepared datasets found, missing ones named in one line offline, nothing written by a check;
the same checks by `t5tune train` before it starts (the data prepared, the vocabulary init_from's)."""
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from t5tune import errors
from t5tune.data.collections import flan2021
from t5tune.data.collections import prepare
from tests import cli

ENV = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")


def _fresh(*args):
  """A fresh `python -m t5tune data prepare`: its stderr is all a user sees, import-time output too."""
  return subprocess.run([sys.executable, "-m", "t5tune.main", "data", "prepare", *args], env=ENV,
                        capture_output=True, text=True, timeout=300)


def _cli(*args):
  return cli.run(["data", "prepare", *args], timeout=300)


def _store_rte(data_dir, n=12):
  """A tiny real super_glue/rte with the builder's features (what `tfds build` would leave)."""
  features = tfds.builder("super_glue/rte:1.0.2", data_dir=data_dir).info.features
  tfds.dataset_builders.store_as_tfds_dataset(
      name="super_glue", config="rte", version="1.0.2", features=features, data_dir=data_dir,
      split_datasets={split: [(f"{split}{i}", {"premise": f"p {i}", "hypothesis": f"h {i}", "idx": i,
                                               "label": i % 2}) for i in range(n)]
                      for split in ("train", "validation")})


def _tree(path):
  return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)


def test_check_names_the_missing_datasets_in_one_line_and_writes_nothing(tmp_path):
  data_dir = str(tmp_path / "tfds")
  proc = _fresh("--collection=flan2021", "--tasks=rte,flan2021_story_cloze",
                f"--data_dir={data_dir}", "--check")
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in proc.stderr
  assert "rte (super_glue/rte:1.0.2)" in lines[0] and "story_cloze (story_cloze/2016:1.0.0)" in lines[0]
  assert f"t5tune data prepare --collection=flan2021 --tasks=rte,story_cloze --data_dir={data_dir}" in lines[0]
  assert "downloads/manual" in lines[0]  # story_cloze is a manual-download dataset in TFDS
  assert not os.path.exists(data_dir)


def test_offline_prepare_fails_in_one_line_without_downloading(tmp_path):
  data_dir = str(tmp_path)
  before = _tree(data_dir)
  with pytest.raises(errors.MissingInputError) as e:
    prepare.run("flan2021", ["cb", "snli"], data_dir, is_online=lambda: False, log=lambda _: None)
  assert e.value.exit_code == 2 and "\n" not in str(e.value)
  assert "cannot reach the internet: cb (super_glue/cb:1.0.2), snli (snli:1.1.0)" in str(e.value)
  assert _tree(data_dir) == before


def test_prepared_data_is_found_and_left_alone(tmp_path):
  data_dir = str(tmp_path)
  _store_rte(data_dir)
  before = {p: os.path.getmtime(p) for p in _tree(data_dir)}
  proc = _cli("--collection=flan2021", "--tasks=flan2021_rte", f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stderr
  assert "prepared  flan2021_rte  tfds=super_glue/rte:1.0.2" in proc.stdout
  assert "all 1 flan2021 dataset(s) are prepared" in proc.stdout
  assert {p: os.path.getmtime(p) for p in _tree(data_dir)} == before
  # and the collection reads it
  names = flan2021.register(data_dir=data_dir, mixtures=False, template_counts=(10,))
  assert "flan2021_rte" in names


def test_online_prepare_goes_through_the_tfds_builder(tmp_path, monkeypatch):
  data_dir = str(tmp_path)
  prepared, original = [], tfds.core.DatasetBuilder.download_and_prepare

  def download_and_prepare(builder, *args, **kwargs):
    if prepared:  # store_as_tfds_dataset's own builder: the real method
      return original(builder, *args, **kwargs)
    prepared.append(builder.name)
    _store_rte(data_dir)  # stands in for the download; the real builder writes the same layout

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)
  assert prepare.run("flan2021", ["rte"], data_dir, is_online=lambda: True,
                     log=lambda _: None) == ["rte"]
  assert prepared == ["super_glue"] and prepare.is_prepared(prepare.select(flan2021, ["rte"])[0], data_dir)
  # A second run finds it prepared and calls nothing.
  prepared.append("second run")  # from here on, any call would be recorded as a third entry
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda *a, **k: prepared.append("called"))
  prepare.run("flan2021", ["rte"], data_dir, is_online=lambda: True, log=lambda _: None)
  assert prepared == ["super_glue", "second run"]


def test_a_failed_preparation_is_one_line_naming_it(tmp_path, monkeypatch):
  def fail(builder, *args, **kwargs):
    raise ConnectionError("host unreachable")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
  logged = []
  with pytest.raises(errors.MissingInputError, match=r"could not be prepared here.*: cb \("):
    prepare.run("flan2021", ["cb"], str(tmp_path), is_online=lambda: True, log=logged.append)
  assert any("ConnectionError: host unreachable" in line for line in logged)


def test_bad_names_are_usage_errors():
  with pytest.raises(errors.UsageError, match="Did you mean 'rte'"):
    prepare.run("flan2021", ["rtx"], "/tmp/unused", check_only=True)
  with pytest.raises(errors.UsageError, match="Did you mean 'flan2021'"):
    prepare.run("flan2020", None, "/tmp/unused", check_only=True)
  proc = _cli("--collection=flan2021")
  assert proc.returncode == 2 and "--data_dir is required" in proc.stderr


def test_train_refuses_unprepared_data_before_tfds_or_the_workdir_is_touched(tmp_path):
  """`t5tune train` of the real collection offline: `data prepare --check`'s one line at once,
  no TFDS download (it retried for minutes) and no TFDS directory or workdir left behind."""
  from t5tune.data.collections import heldout
  data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
  proc = cli.run(["train", "--config=configs/experiments/flan2021_heldout.py:nli",
                  f"--workdir={workdir}"], env=dict(cli.ENV, TFDS_DATA_DIR=str(data_dir)), timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert not data_dir.exists() and not workdir.exists()
  trained = [s.name for s in heldout.training_datasets(flan2021.DATASETS, flan2021.CLUSTERS, "nli",
                                                       flan2021.OVERLAPS)]
  with pytest.raises(errors.MissingInputError) as check:
    prepare.run("flan2021", trained, str(data_dir), check_only=True, log=lambda _: None)
  what = check.value.what.replace("--check downloads nothing", "training downloads nothing")
  assert lines[0].startswith(f"t5tune train: error: {what} (") and lines[0].endswith(check.value.fix)


def _spm(prefix, vocab_size=40):
  from t5tune.data import vocab
  texts = [f"the cat {i} sat on a mat of {i * 7} red dogs" for i in range(60)]
  return vocab.train_sentencepiece(texts, str(prefix), vocab_size=vocab_size)


def test_train_refuses_tasks_whose_vocabulary_is_not_init_froms(tmp_path):
  """t5tune.flan_tasks tokenised with bytes when T5TUNE_FLAN_VOCAB was unset, even when init_from
  carries its own spiece.model: one line naming both, before anything is read or written."""
  from t5tune.convert import loading
  from t5tune.models import config as model_config
  from t5tune.models import t5
  model_dir, workdir = tmp_path / "model", tmp_path / "run"
  loading.save_model(t5.build_model(model_config.preset("tiny"), seed=0), str(model_dir))
  own = str(model_dir / "spiece.model")
  os.replace(_spm(tmp_path / "spm"), own)
  env = {k: v for k, v in cli.ENV.items() if k != "T5TUNE_FLAN_VOCAB"}
  proc = cli.run(["train", "--config=configs/experiments/flan2021_heldout.py:nli",
                  f"--workdir={workdir}", f"--config.init_from={model_dir}"],
                 env=dict(env, TFDS_DATA_DIR=str(tmp_path / "tfds")), timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert f"tokenises with byte but config.init_from={model_dir} has its own vocabulary {own}" in lines[0]
  assert f"T5TUNE_FLAN_VOCAB={own}" in lines[0]
  assert not workdir.exists() and not (tmp_path / "tfds").exists()


def test_vocabulary_agreement_is_by_contents():
  """The same SentencePiece model elsewhere agrees; another model, or bytes, is refused."""
  import seqio
  from t5tune.data import vocab
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    first = _spm(os.path.join(tmp, "a"))
    model_dir = os.path.join(tmp, "model")
    os.makedirs(model_dir)
    with open(first, "rb") as f, open(os.path.join(model_dir, "spiece.model"), "wb") as g:
      g.write(f.read())
    other = _spm(os.path.join(tmp, "b"), vocab_size=48)
    vocab.check_agrees_with_model_dir("t", seqio.SentencePieceVocabulary(first), model_dir, "init_from")
    for wrong, named in ((seqio.SentencePieceVocabulary(other), other),
                         (seqio.ByteVocabulary(), "byte")):
      with pytest.raises(errors.UsageError, match=f"tokenises with {named} but init_from="):
        vocab.check_agrees_with_model_dir("t", wrong, model_dir, "init_from")
    vocab.check_agrees_with_model_dir("t", seqio.ByteVocabulary(), tmp, "init_from")  # carries none
