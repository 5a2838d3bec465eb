"""Non-finite losses (stop / skip), bad configs failing before compilation, losses and schedules."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

from t5tune import sharding
from t5tune.train import experiment
from t5tune.train import losses
from t5tune.train import optimizers
from t5tune.train import trainer
from t5tune.train import synthetic
from tests import cli


def _config(**changes):
  config = experiment.default_config()
  config.data.iterator_factory = "t5tune.train.synthetic:make_iterator"
  config.data.inputs_length, config.data.targets_length = 16, 8
  config.data.batch_size = 8
  config.train.steps, config.train.log_every = 6, 1
  config.checkpoint.every, config.checkpoint.async_save = 2, False
  config.mesh.shape = (2, 1, 1)
  # One layer a stack: non-finite handling, early stopping and checkpoints do not
  # depend on depth (the file: 45.8 s instead of 58.5 s with two layers).
  config.model.overrides.num_encoder_layers = config.model.overrides.num_decoder_layers = 1
  for key, value in changes.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def _nan_iterator(config, mesh):
  return synthetic.SyntheticIterator(
      batch_size=8, inputs_length=16, targets_length=8,
      vocab_size=experiment.resolve_model(config).vocab_size, seed=0, mesh=mesh, nan_at=4)


@pytest.fixture(scope="module")
def mesh():
  import jax
  return sharding.make_mesh((2, 1, 1), devices=jax.devices()[:2])


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, mesh):
  config = _config()
  with pytest.raises(trainer.NonFiniteError, match=r"at step 5 .*last good checkpoint is step 4"):
    trainer.train(config, str(tmp_path), train_iter=_nan_iterator(config, mesh), mesh=mesh)
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps == [2, 4]
  assert os.path.isfile(tmp_path / "checkpoints" / "4" / "config.json")


def test_nan_skip_mode_continues_and_counts(tmp_path, mesh):
  config = _config(**{"train.nonfinite": "skip"})
  result = trainer.train(config, str(tmp_path), train_iter=_nan_iterator(config, mesh), mesh=mesh)
  assert result.step == 6 and result.stop_reason == "completed"
  assert result.train_metrics["skipped_steps"] == 1.0
  assert np.all(np.isfinite(np.asarray(
      result.state["params"]["decoder"]["layers"][0]["mlp"]["wo"]["kernel"])))


@pytest.mark.parametrize("override, message", [
    ("--config.train.stepz=3", "closest: train.steps"),
    ("--config.train.steps=many", "invalid literal for int"),
    ("--config.mesh.shape=(3,1,1)", "config.mesh.shape"),
    ("--config.data.batch_size=12", "change config.data.batch_size or config.mesh.shape"),
    ("--config.optimizer.name=adamx", "Did you mean 'adamw'"),
])
def test_bad_configs_fail_before_compiling(tmp_path, override, message):
  proc = cli.run(
      ["train", "--config=configs/experiments/tiny.py",
       f"--workdir={tmp_path}", "--config.data.iterator_factory=t5tune.train.synthetic:make_iterator",
       override],
      timeout=120)
  assert proc.returncode != 0
  assert message in proc.stdout + proc.stderr
  assert not os.path.exists(tmp_path / "checkpoints")  # nothing was built


def test_config_values_are_checked_before_the_task_modules_are_imported(tmp_path):
  # Importing the task modules loads TensorFlow and seqio (seconds): a bad value is
  # reported first, so here the optimizer's name, not the module that does not exist.
  proc = cli.run(
      ["train", "--config=configs/experiments/tiny.py",
       f"--workdir={tmp_path}", "--config.optimizer.name=adamx",
       "--config.data.modules=('no_such_task_module',)"],
      timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Did you mean 'adamw'" in proc.stderr and "no_such_task_module" not in proc.stderr
  assert not os.listdir(tmp_path)


def test_loss_normalizations_and_smoothing():
  logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                              [[0.3, 0.3, 0.4], [1 / 3, 1 / 3, 1 / 3]]]))
  targets = jnp.array([[0, 1], [2, 0]])
  weights = jnp.array([[1.0, 1.0], [1.0, 0.0]])
  nll = -np.log([0.7, 0.8, 0.4])
  tok, stats = losses.cross_entropy(logits, targets, weights)
  np.testing.assert_allclose(tok, nll.sum() / 3, rtol=1e-6)
  assert float(stats["correct"]) == 3.0 and float(stats["weight_sum"]) == 3.0
  seq, _ = losses.cross_entropy(logits, targets, weights, normalization="sequences")
  np.testing.assert_allclose(seq, (nll[:2].mean() + nll[2]) / 2, rtol=1e-6)
  const, _ = losses.cross_entropy(logits, targets, weights, normalization="constant", constant=10.0)
  np.testing.assert_allclose(const, nll.sum() / 10, rtol=1e-6)
  # A prediction equal to the smoothed target distribution has zero smoothed loss.
  eps = 0.3
  smooth = jnp.log(jnp.array([[[1 - eps, eps / 2, eps / 2]]]))
  value, _ = losses.cross_entropy(smooth, jnp.array([[0]]), jnp.ones((1, 1)),
                                  label_smoothing=eps)
  np.testing.assert_allclose(value, 0.0, atol=1e-6)
  z, _ = losses.cross_entropy(logits + 2.0, targets, weights, z_loss=1e-4)
  np.testing.assert_allclose(z, tok + 1e-4 * 4.0, rtol=1e-5)  # log Z = 2


def test_schedules():
  def sched(name, warmup=10, **kw):
    cfg = {"name": name, "warmup_steps": warmup, "decay_steps": 0, "end_learning_rate": 0.0, **kw}
    return optimizers.make_schedule(cfg, 1e-3, total_steps=110)
  assert float(sched("constant", warmup=0)(50)) == pytest.approx(1e-3)
  assert float(sched("rsqrt")(5)) == pytest.approx(5e-4)
  assert float(sched("rsqrt")(10)) == pytest.approx(1e-3)
  assert float(sched("rsqrt")(40)) == pytest.approx(1e-3 * np.sqrt(10 / 40))
  assert float(sched("cosine")(110)) == pytest.approx(0.0, abs=1e-9)
  assert float(sched("linear")(60)) == pytest.approx(5e-4)


def test_early_stopping_and_keep_best(tmp_path, mesh):
  # An eval hook whose score gets worse at every evaluation after the first:
  # with patience 2 the run stops at the third evaluation, and keep_best keeps
  # the first step's checkpoint besides the latest.
  config = _config(**{"train.steps": 10, "eval.every": 1, "eval.metric": "eval/score",
                      "eval.mode": "max", "eval.patience": 2, "checkpoint.every": 1,
                      "checkpoint.keep": 1, "checkpoint.keep_best": 1})
  seen = []

  def score(model, step):
    seen.append(step)
    return {"score": -float(step)}

  it = synthetic.SyntheticIterator(batch_size=8, inputs_length=16, targets_length=8,
                                   vocab_size=experiment.resolve_model(config).vocab_size,
                                   seed=0, mesh=mesh)
  result = trainer.train(config, str(tmp_path), train_iter=it, eval_fns=(score,), mesh=mesh)
  assert result.stop_reason == "early_stopping"
  assert seen == [1, 2, 3] and result.step == 3
  assert result.eval_metrics["eval/score"] == -3.0
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps == [1, 3]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A t5tune model directory of the tiny model (4 heads), one layer per stack."""
  from t5tune.convert import loading
  from t5tune.models import config as model_config
  from t5tune.models import t5
  path = str(tmp_path_factory.mktemp("init") / "model")
  cfg = model_config.preset("tiny", num_encoder_layers=1, num_decoder_layers=1)
  loading.save_model(t5.build_model(cfg, seed=0), path)
  return path


@pytest.mark.parametrize("changes, message", [
    # init_from's own architecture (4 heads) split 8 ways: checked like a preset's.
    ({"mesh.shape": (1, 1, 8)}, "splits num_heads=4 8 ways"),
    ({"data.batch_size": 12, "mesh.shape": (8, 1, 1)}, "not divisible by the data-parallel size 8"),
])
def test_init_from_that_does_not_fit_the_mesh_fails_before_writing(tmp_path, model_dir, changes,
                                                                   message):
  from t5tune import errors
  config = _config(**changes)
  config.init_from = model_dir
  workdir = tmp_path / "run"
  with pytest.raises(errors.UsageError, match=message):
    trainer.Trainer(config, str(workdir))
  assert not workdir.exists()


def test_init_from_that_does_not_fit_the_mesh_is_one_line_from_the_cli(tmp_path, model_dir):
  workdir = tmp_path / "run"
  proc = cli.run(
      ["train", "--config=configs/experiments/tiny.py",
       f"--workdir={workdir}", f"--config.init_from={model_dir}",
       "--config.data.iterator_factory=t5tune.train.synthetic:make_iterator",
       "--config.mesh.shape=(1,1,8)"],
      timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "num_heads=4" in lines[0] and "config.mesh.shape" in lines[0], lines
  assert not workdir.exists()
