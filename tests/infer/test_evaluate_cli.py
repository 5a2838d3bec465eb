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
