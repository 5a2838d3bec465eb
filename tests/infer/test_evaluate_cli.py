"""`t5tune train` then `t5tune evaluate` with the same experiment config, as the README's tour shows."""
import os

from tests import cli


def _t5tune(*args):
  return cli.run(args)


def test_train_then_evaluate_the_experiment_mixture(tmp_path):
  # Four steps on synthetic batches: what `evaluate` reads is the checkpoint and the config's
  # mixture, and the run skips seqio, TensorFlow and the demo pipeline (test_readme trains on it).
  train = _t5tune("train", "--config=configs/experiments/tiny.py", f"--workdir={tmp_path}",
                  "--config.data.iterator_factory=t5tune.train.synthetic:make_iterator",
                  "--config.data.modules=()",
                  "--config.train.steps=4", "--config.checkpoint.every=4", "--config.eval.every=0")
  assert train.returncode == 0, train.stderr[-2000:]
  # t5tune's own log lines reach stderr also when absl was imported before the command ran.
  assert "train step compiled in" in train.stderr, train.stderr[-2000:]
  out = _t5tune("evaluate", "--config=configs/experiments/tiny.py",
                f"--checkpoint={tmp_path}/checkpoints")
  assert out.returncode == 0, out.stderr[-2000:]
  # Every task of the experiment's mixture, with its own metric functions.
  for row in ("t5tune_demo_sentiment | accuracy", "t5tune_demo_qa | f1", "t5tune_demo_reverse | rougeL"):
    assert row in out.stdout
  # Beside the checkpoints, not inside step 4's directory, which orbax deletes with all it holds
  # once the step falls out of checkpoint.keep.
  assert os.path.exists(tmp_path / "eval" / "4" / "summary.md")
  assert not os.path.exists(tmp_path / "checkpoints" / "4" / "eval")
  bad = _t5tune("evaluate", "--config=configs/experiments/tiny.py", f"--checkpoint={tmp_path}/nope")
  assert bad.returncode != 0 and "t5tune evaluate:" in bad.stderr


def test_evaluate_refuses_tasks_whose_vocabulary_is_not_the_checkpoints(tmp_path):
  """A model directory with its own spiece.model and tasks tokenised with bytes: one UsageError
  naming both, before the model loads or an output is written."""
  import pytest
  from t5tune import errors
  from t5tune.cli import evaluate as evaluate_cli
  from t5tune.data import vocab
  from t5tune.infer import evaluation
  model_dir = tmp_path / "model"  # its weights are never read: the check comes first
  model_dir.mkdir()
  spm = vocab.train_sentencepiece([f"a cat {i} on the mat {i * 3}" for i in range(60)],
                                  str(tmp_path / "spm"), vocab_size=40)
  os.replace(spm, model_dir / "spiece.model")
  config = evaluation.default_config()
  config.modules = ("tests.fixtures",)
  with pytest.raises(errors.UsageError, match=r"'t5tune_infer_cls' tokenises with byte but"
                     rf" --checkpoint={model_dir} has its own vocabulary {model_dir}/spiece.model"):
    evaluate_cli.run(config, str(model_dir), tasks=["t5tune_infer_cls"])
  assert not (model_dir / "eval").exists()
