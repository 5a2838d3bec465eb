"""Continual tuning: two stages through the CLI, the matrix and BWT/FWT, exact resume, replay, penalties, per-stage LoRA.

One two-stage CLI run of the experiment's own config
(experiments/continual/config.py, made tiny by the overrides in TINY),
killed with SIGKILL in stage 2 and rerun, is checked against the
hand-computed transfer metrics and, bitwise, against uninterrupted plain
fine-tuning from stage 1's weights.
"""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5tune.train import regularizers
from t5tune.train import replay
from tests import cli
from tests.models import jitted

CONFIG = "experiments/continual/config.py"

# The experiment's config shrunk for the tests: its first two stages, 4 steps
# each on 8 examples of 32/16 tokens, a checkpoint every 2 steps, 8 examples
# evaluated per task; stage 2 replays stage 1 at half its examples. Stage 2's
# penalties and distillation are 0 (the bitwise test below relies on that).
# continual_stall lets a test stop the child in stage 2 (see that module).
TINY = {
    "order": ("sentiment", "qa"),
    "experiment.data.modules": ("t5tune.demo_tasks", "tests.train.continual_stall"),
    "experiment.data.inputs_length": 32, "experiment.data.targets_length": 16,
    "experiment.data.batch_size": 8,
    "experiment.optimizer.learning_rate": 1e-3,
    "experiment.train.log_every": 1,
    "experiment.checkpoint.every": 2, "experiment.checkpoint.async_save": False,
    "eval.batch_size": 8, "eval.num_examples": 8, "eval.max_decode_len": 8,
    "stages.sentiment.steps": 4, "stages.qa.steps": 4,
    "stages.qa.replay_rate": 0.5, "stages.qa.replay_cap": 16,
    "stages.qa.l2sp": 0.0, "stages.qa.ewc": 0.0, "stages.qa.distill": 0.0,
}
# Per-stage LoRA: the experiment's lora run (its own learning rate), 2 steps a stage.
TINY_LORA = {**{k: v for k, v in TINY.items() if k != "experiment.optimizer.learning_rate"},
             "stages.sentiment.steps": 2, "stages.qa.steps": 2}


def tiny_config(arg="naive", overrides=None):
  """The experiment's config for `arg` with TINY (or `overrides`) applied, as the CLI's flags would."""
  from experiments.continual import config as config_lib
  config = config_lib.get_config(arg)
  config.update_from_flattened_dict(dict(overrides or TINY))
  return config


def _command(workdir, *extra):
  flags = [f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}"
           for k, v in TINY.items()]
  return ["continual", f"--config={CONFIG}:naive", *flags,
          f"--workdir={workdir}", *extra]


def _params(model_dir):
  from t5tune.convert import loading
  return loading.params_as_numpy(loading.load_model(str(model_dir)))


def _assert_trees_equal(a, b):
  flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
  """A two-stage CLI run killed with SIGKILL after stage 2's step-2 checkpoint, then rerun.

  Returns (workdir, stdout of the rerun, stage 1's metrics.jsonl before the rerun).
  """
  tmp = tmp_path_factory.mktemp("continual")
  workdir = tmp / "run"
  proc = cli.start(_command(workdir), log=tmp / "child.log",
                   env=dict(cli.ENV, CONTINUAL_STALL="qa:2"))
  ckpt = workdir / "stages" / "qa" / "checkpoints" / "2"
  deadline = time.time() + 900
  try:
    while not ckpt.is_dir():  # orbax renames the step directory once it is complete
      assert proc.poll() is None, (tmp / "child.log").read_text()[-3000:]
      assert time.time() < deadline, "timed out waiting for stage 2's checkpoint"
      time.sleep(0.2)
  finally:
    proc.kill()
    proc.wait()
  assert not (workdir / "stages" / "qa" / "done.json").exists()
  s1_metrics = (workdir / "stages" / "sentiment" / "metrics.jsonl").read_text()
  again = cli.run(_command(workdir), timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  return workdir, again.stdout, s1_metrics


def test_two_stages_through_the_cli_matrix_and_transfer(resumed):
  workdir, stdout, _ = resumed
  out = json.loads((workdir / "continual.json").read_text())
  R, b = out["R"], out["initial"]
  assert out["stages"] == ["sentiment", "qa"] and len(R) == 2 and all(len(row) == 2 for row in R)
  # Every cell is the task's metric after that stage, as evaluated then.
  for i, name in enumerate(("sentiment", "qa")):
    results = json.loads((workdir / "stages" / name / "eval.json").read_text())
    assert R[i][0] == results["t5tune_demo_sentiment"]["accuracy"]
    assert R[i][1] == next(iter(results["t5tune_demo_qa"].values()))
    # Each example's score, for the paired statistics: its mean is the cell.
    per_example = json.loads((workdir / "stages" / name / "per_example.json").read_text())
    assert len(per_example["t5tune_demo_sentiment"]) == 8
    assert np.mean(per_example["t5tune_demo_sentiment"]) == pytest.approx(R[i][0])
    assert np.mean(per_example["t5tune_demo_qa"]) == pytest.approx(R[i][1])
  # Lopez-Paz & Ranzato (2017) for T = 2, by hand.
  assert out["acc"] == pytest.approx((R[1][0] + R[1][1]) / 2)
  assert out["bwt"] == pytest.approx(R[1][0] - R[0][0])
  assert out["fwt"] == pytest.approx(R[0][1] - b[1])
  assert out["forgetting"][0] == pytest.approx(R[0][0] - R[1][0])  # max over stages before the last
  assert out["forgetting"][1] is None
  assert (workdir / "continual.png").stat().st_size > 1000
  assert "| qa |" in stdout and "BWT" in stdout
  assert cli.wrong_modes(workdir) == []  # the user's modes under umask 022 (issue 43)


def test_kill_9_in_stage_two_resumed_stage_two_only(resumed):
  workdir, _, s1_metrics = resumed
  assert (workdir / "stages" / "sentiment" / "metrics.jsonl").read_text() == s1_metrics  # not redone
  steps = [json.loads(l)["step"] for l in (workdir / "stages" / "qa" / "metrics.jsonl").open()
           if "train/loss" in l]
  assert steps == [1, 2, 3, 4]  # steps 1-2 before the kill, 3-4 after it: none twice


def test_stage_two_equals_uninterrupted_plain_tuning_from_stage_one(resumed, tmp_path):
  # Stage 2 has l2sp = ewc = distill = 0. Plain fine-tuning of stage 1's final weights
  # on stage 2's mixture, uninterrupted and in this process, must give stage
  # 2's final weights bitwise: stage 2 started from stage 1's weights, the
  # zero-weight penalties change nothing, and the resume after kill -9 was exact.
  from t5tune.train import continual
  from t5tune.train import trainer
  workdir, _, _ = resumed
  run = continual.Continual(tiny_config(), str(workdir))
  config = run.stage_config(1)
  config.init_from = str(workdir / "stages" / "sentiment" / "final")
  result = trainer.train(config, str(tmp_path / "plain"))
  plain = jax.tree.map(np.asarray, jax.device_get(result.state["params"]))
  _assert_trees_equal(plain, _params(workdir / "stages" / "qa" / "final"))
  s1 = _params(workdir / "stages" / "sentiment" / "final")
  assert not np.array_equal(plain["decoder"]["layers"][0]["mlp"]["wo"]["kernel"],
                            s1["decoder"]["layers"][0]["mlp"]["wo"]["kernel"])


def _pairs(ds):
  return [(ex["inputs"].decode(), ex["targets"].decode()) for ex in ds.as_numpy_iterator()]


def test_replay_rate_and_buffer():
  import seqio
  import t5tune.demo_tasks  # noqa: F401  (registers the tasks)
  buffer = _pairs(replay.buffer_dataset("t5tune_demo_sentiment", 16, seed=3))
  assert len(buffer) == 16
  assert _pairs(replay.buffer_dataset("t5tune_demo_sentiment", 16, seed=3)) == buffer
  assert _pairs(replay.buffer_dataset("t5tune_demo_sentiment", 16, seed=4)) != buffer
  rate, n = 0.3, 1500
  name = replay.register_stage_mixture("t5tune_test_replay_mix", ["t5tune_demo_qa"],
                                       ["t5tune_demo_sentiment"], replay_rate=rate, cap=16, seed=3)
  mixture = seqio.get_mixture_or_task(name)
  vocab = mixture.output_features["inputs"].vocabulary
  ds = mixture.get_dataset({"inputs": 512, "targets": 256}, split="train", shuffle=True, seed=0)
  replayed = 0
  for ex in ds.take(n).as_numpy_iterator():
    pair = tuple(vocab.decode([t for t in ex[k].tolist() if t != vocab.eos_id])
                 for k in ("inputs", "targets"))
    if "review" in pair[0].lower():  # every sentiment template says "review"; QA's never do
      replayed += 1
      assert pair in buffer, pair  # drawn from the buffer only
  assert abs(replayed / n - rate) < 4 * np.sqrt(rate * (1 - rate) / n), replayed / n


@pytest.fixture(scope="module")
def tiny_model():
  """(config, graphdef, params) of the tiny model with one layer a stack, built once for the numeric tests.

  One layer: what these tests compare (terms, their gradients, bitwise steps) does not depend
  on depth, and each of the bitwise tests runs in about 20% less time than with two.
  """
  import dataclasses
  from flax import nnx
  from t5tune.models import config as model_config
  from t5tune.models import t5
  cfg = dataclasses.replace(model_config.preset("tiny"), num_encoder_layers=1, num_decoder_layers=1)
  graphdef, state = nnx.split(t5.build_model(cfg, seed=0), nnx.Param)
  return cfg, graphdef, nnx.to_pure_dict(state)


def test_penalties_and_fisher_equal_a_direct_computation(tiny_model):
  rng = np.random.default_rng(0)
  shapes = {"a": (3, 4), "b": {"c": (5,)}}
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                        is_leaf=lambda x: isinstance(x, tuple))
  anchor = jax.tree.map(lambda x: x + jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
  fisher = jax.tree.map(lambda x: jnp.asarray(rng.uniform(size=x.shape), jnp.float32), params)
  def both(p, reg):  # the two terms as the train step adds them
    return (regularizers.L2SP(0.3).params_term(reg, p)
            + regularizers.EWC(2.0, fisher=None).params_term(reg, p))
  value, grad = jax.value_and_grad(both)(params, {"anchor": anchor, "fisher": fisher})
  d = jax.tree.map(lambda p, a: np.asarray(p, np.float64) - np.asarray(a, np.float64), params, anchor)
  f = jax.tree.map(np.asarray, fisher)
  expected = sum(0.15 * np.sum(x ** 2) + 1.0 * np.sum(w * x ** 2)
                 for x, w in zip(jax.tree.leaves(d), jax.tree.leaves(f)))
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)
  for g, x, w in zip(jax.tree.leaves(grad), jax.tree.leaves(d), jax.tree.leaves(f)):
    np.testing.assert_allclose(np.asarray(g), 0.3 * x + 2.0 * w * x, rtol=1e-5, atol=1e-6)
  l2_only = regularizers.L2SP(0.3).params_term({"anchor": anchor}, params)
  np.testing.assert_allclose(float(l2_only), sum(0.15 * np.sum(x ** 2) for x in jax.tree.leaves(d)),
                             rtol=1e-5)

  # Fisher: mean over examples of the squared gradient of each example's
  # summed target log-likelihood, against one jax.grad per example through
  # the training loss (summed token NLL, normalised by 1).
  from flax import nnx
  from t5tune.train import losses
  from t5tune.train import optimizers
  from t5tune.train import synthetic
  cfg, graphdef, params = tiny_model
  mask = optimizers.trainable_mask(params, "", "")
  it = synthetic.SyntheticIterator(batch_size=3, inputs_length=8, targets_length=4,
                                   vocab_size=cfg.vocab_size, seed=0, mesh=None)
  batch = it.host_batch(0)
  got = jax.jit(regularizers.make_fisher_fn(graphdef, mask))(params, batch)

  def nll(p, example):
    m = nnx.merge(graphdef, p)
    one = jax.tree.map(lambda x: x[None], example)
    logits = m(one["encoder_input_tokens"], one["decoder_input_tokens"])
    loss, _ = losses.cross_entropy(logits, one["decoder_target_tokens"],
                                   one["decoder_loss_weights"],
                                   normalization="constant", constant=1.0)
    return loss
  # One gradient per example (vmapped, jitted once: op-by-op it took minutes).
  grads = jax.jit(jax.vmap(jax.grad(nll), in_axes=(None, 0)))(params, batch)
  want = jax.tree.map(lambda g: np.sum(np.square(np.asarray(g, np.float64)), axis=0), grads)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(x), y, rtol=2e-4, atol=1e-9)


def test_per_stage_lora_freezes_earlier_adapters_and_exports_chosen_ones(tmp_path):
  import safetensors.numpy
  import torch
  import transformers
  from t5tune.convert import loading
  from t5tune.train import continual
  from t5tune.train import experiment
  config = tiny_config("lora", TINY_LORA)
  run = continual.Continual(config, str(tmp_path / "run"))
  run.run()
  stages = tmp_path / "run" / "stages"
  s1, s2 = _params(stages / "sentiment" / "final"), _params(stages / "qa" / "final")
  adapter1 = safetensors.numpy.load_file(str(stages / "sentiment" / "adapter.safetensors"))
  model_cfg = experiment.resolve_model(config.experiment)
  scale = model_cfg.lora_alpha / model_cfg.lora_rank
  assert adapter1
  for key, value in adapter1.items():
    *path, leaf = key.split("/")
    node1, node2 = s1, s2
    for p in path:  # layer indices are int keys in the parameter tree
      p = int(p) if p.isdigit() else p
      node1, node2 = node1[p], node2[p]
    np.testing.assert_array_equal(node1[leaf], value)  # the adapter file is stage 1's LoRA
    if leaf == "lora_b":
      assert np.any(value != 0)  # stage 1 trained its LoRA
      assert not np.array_equal(node2["lora_b"], value)  # stage 2 trained a new one
      # Stage 1's adapter is frozen inside stage 2's kernel: exactly the fold.
      folded = jnp.asarray(node1["kernel"]) + scale * (jnp.asarray(node1["lora_a"])
                                                      @ jnp.asarray(node1["lora_b"]))
      np.testing.assert_array_equal(node2["kernel"], np.asarray(folded))

  tokens = np.random.default_rng(0).integers(2, 300, (2, 12)).astype(np.int32)
  dec = np.random.default_rng(1).integers(2, 300, (2, 6)).astype(np.int32)
  for merge, final in ((["sentiment"], "sentiment"), (["sentiment", "qa"], "qa")):
    out = tmp_path / f"hf_{final}"
    run.export(str(out), merge)
    ours = np.asarray(jitted.forward(loading.load_model(str(stages / final / "final")), tokens, dec))
    hf = transformers.T5ForConditionalGeneration.from_pretrained(str(out)).eval()
    with torch.no_grad():
      theirs = hf(input_ids=torch.tensor(tokens, dtype=torch.long),
                  decoder_input_ids=torch.tensor(dec, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(theirs, ours, atol=2e-4, rtol=1e-4)


def test_a_trainer_anchored_on_its_own_parameters_runs_with_penalty_and_distillation(tmp_path):
  # A stage's anchor (and teacher) is its starting parameters (the terms' aux
  # state, made by the trainer from the parameters it starts from); the train step
  # donates the whole state, so the anchor must not share their buffers
  # (jax refuses a buffer donated twice). At step 1 the model is its own
  # anchor and teacher: both terms are 0; after one update both are positive.
  from t5tune.train import trainer
  from tests.train import test_train_step
  # The train-step tests' tiny synthetic-data config, 2 steps.
  config = test_train_step._config(**{"train.steps": 2, "train.log_every": 1})
  tr = trainer.Trainer(config, str(tmp_path),
                       terms=regularizers.stage_terms(l2sp=1.0, distill=1.0))
  assert tr.run().step == 2
  logged = [json.loads(l) for l in (tmp_path / "metrics.jsonl").open() if "train/penalty" in l]
  assert [m["step"] for m in logged] == [1, 2]
  assert logged[0]["train/penalty"] == 0.0 and logged[0]["train/distill"] == pytest.approx(0.0, abs=1e-7)
  assert logged[1]["train/penalty"] > 0.0 and logged[1]["train/distill"] > 0.0


def _log_softmax64(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.sum(np.exp(x - m), -1, keepdims=True))


def test_distillation_loss_and_gradient_equal_a_direct_computation(tiny_model):
  # One train step of a tiny model with distillation (SGD at rate 1, so the
  # update is minus the gradient) against float64 numpy on the same logits:
  # `distill` = weight * T^2 * sum_tokens w * KL(teacher || student at T) /
  # tokens, `loss` stays the task loss, and the gradient is the VJP of the
  # model's logits with the two losses' logit gradients:
  # (softmax(z) - onehot) * w / tokens and weight * T * w * (q - p) / tokens.
  import optax
  from flax import nnx
  from t5tune.train import optimizers
  from t5tune.train import steps
  from t5tune.train import synthetic
  cfg, graphdef, params = tiny_model
  rng = np.random.default_rng(1)  # the teacher: the model moved a little
  teacher = jax.tree.map(lambda x: x + jnp.asarray(0.05 * rng.normal(size=x.shape), x.dtype), params)
  batch = synthetic.SyntheticIterator(batch_size=3, inputs_length=8, targets_length=5,
                                      vocab_size=cfg.vocab_size, seed=0, mesh=None).host_batch(0)
  batch["decoder_loss_weights"][1, 3:] = 0.0  # masked positions must not count
  w = batch["decoder_loss_weights"].astype(np.float64)
  tokens = w.sum()
  weight, t = 0.7, 2.0

  mask = optimizers.trainable_mask(params, "", "")
  tx = optax.sgd(1.0)
  step = jax.jit(steps.make_train_step(
      graphdef, tx, mask, lambda s: 1.0, loss=steps.LossOptions(),
      terms=[regularizers.Distill(weight, t)]))
  state0 = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
            "rng": jax.random.PRNGKey(0), "reg": {"anchor": teacher}}
  new, metrics = step(state0, {k: jnp.asarray(v) for k, v in batch.items()})

  def logits_of(p):
    return nnx.merge(graphdef, p)(batch["encoder_input_tokens"], batch["decoder_input_tokens"])
  logits = jax.jit(logits_of)
  z = np.asarray(logits(params), np.float64)
  log_p = _log_softmax64(np.asarray(logits(teacher), np.float64) / t)
  log_q = _log_softmax64(z / t)
  kl = np.sum(np.exp(log_p) * (log_p - log_q), -1)
  np.testing.assert_allclose(float(metrics["distill"]), weight * t * t * np.sum(w * kl) / tokens,
                             rtol=1e-5)
  log_s = _log_softmax64(z)
  target = batch["decoder_target_tokens"]
  nll = -np.take_along_axis(log_s, target[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(metrics["loss"]), np.sum(w * nll) / tokens, rtol=1e-5)

  g_z = np.exp(log_s)
  np.put_along_axis(g_z, target[..., None], np.take_along_axis(g_z, target[..., None], -1) - 1, -1)
  g_z = g_z * (w[..., None] / tokens)
  g_z += weight * t * (w[..., None] / tokens) * (np.exp(log_q) - np.exp(log_p))
  (want,) = jax.jit(lambda p, g: jax.vjp(logits_of, p)[1](g))(params, jnp.asarray(g_z, jnp.float32))
  for p1, p0, g in zip(jax.tree.leaves(new["params"]), jax.tree.leaves(params),
                       jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(p0) - np.asarray(p1), np.asarray(g), rtol=1e-4, atol=1e-6)
  _assert_trees_equal(jax.device_get(new["reg"]["anchor"]), jax.device_get(teacher))  # frozen


def _main_train_step(graphdef, tx, mask, schedule, *, loss, microbatches=1, penalty=None,
                     distill=None):
  """The train step of main before the loss terms (issue 20), penalty and distillation written
  into it, as it was (dropout off): the reference the plug-in terms must equal bitwise."""
  from t5tune.train import losses
  from t5tune.train import optimizers
  from t5tune.train import steps
  import optax

  def train_step(state, batch):
    params = state["params"]
    trainable, frozen = optimizers.split_trainable(params, mask)
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    denominator = losses.normalizer(batch["decoder_loss_weights"], loss.normalization,
                                    loss.constant)
    teacher = (optimizers.merge_trainable(state["reg"]["anchor"], frozen)
               if distill is not None else None)

    def loss_fn(trainable_, mb, rng):
      logits = steps._logits(graphdef, optimizers.merge_trainable(trainable_, frozen), mb, None)
      value_, stats_ = losses.cross_entropy(
          logits, mb["decoder_target_tokens"], mb["decoder_loss_weights"],
          normalization=loss.normalization, constant=loss.constant,
          z_loss=loss.z_loss, label_smoothing=loss.label_smoothing,
          denominator=denominator)
      if distill is None:
        return value_, stats_
      teacher_logits = jax.lax.stop_gradient(steps._logits(graphdef, teacher, mb, None))
      kd = distill(logits, teacher_logits, mb["decoder_loss_weights"], denominator)
      return value_ + kd, {**stats_, "task_loss": value_, "distill": kd}

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if microbatches == 1:
      (value, stats), grads = grad_fn(trainable, batch, step_rng)
    else:
      mbs = steps._microbatches(batch, microbatches)

      def body(carry, xs):
        i, mb = xs
        (v, s), g = grad_fn(trainable, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (v, s, g)), None

      (value, stats), grads = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          grad_fn, trainable, jax.tree.map(lambda x: x[0], mbs), step_rng))
      (value, stats, grads), _ = jax.lax.scan(
          body, (value, stats, grads), (jnp.arange(microbatches), mbs))

    extra = {}
    if penalty is not None:
      pen, pen_grads = jax.value_and_grad(penalty)(trainable, state["reg"])
      grads = jax.tree.map(jnp.add, grads, pen_grads)
      extra = {"penalty": pen}
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], trainable)
    new_trainable = optax.apply_updates(trainable, updates)
    new_state = {"step": state["step"] + 1,
                 "params": optimizers.merge_trainable(new_trainable, frozen),
                 "opt_state": opt_state, "rng": state["rng"]}
    if "reg" in state:
      new_state["reg"] = state["reg"]
    tokens = jnp.maximum(stats["weight_sum"], 1.0)
    if distill is not None:
      extra["distill"] = stats["distill"]
      value = stats["task_loss"]
    metrics = {"loss": value, "token_loss": stats["loss_sum"] / tokens,
               "z_loss": stats["z_loss_sum"] / tokens, "accuracy": stats["correct"] / tokens,
               "target_tokens": stats["weight_sum"], "grad_norm": grad_norm,
               "learning_rate": schedule(state["step"]),
               "finite": jnp.isfinite(value) & jnp.isfinite(grad_norm),
               "skipped_steps": optimizers.skipped_steps(opt_state), **extra}
    return new_state, metrics

  return train_step


def _main_penalty(l2sp, ewc):
  """main's `regularizers.penalty` (L2-SP and EWC summed in one function)."""
  def penalty(trainable, reg):
    diff_sq = jax.tree.map(lambda p, a: jnp.square(p.astype(jnp.float32) - a.astype(jnp.float32)),
                           trainable, reg["anchor"])
    total = jnp.zeros((), jnp.float32)
    if l2sp:
      total = total + 0.5 * l2sp * regularizers._sum(diff_sq)
    if ewc:
      total = total + 0.5 * ewc * regularizers._sum(jax.tree.map(jnp.multiply, reg["fisher"],
                                                                 diff_sq))
    return total
  return penalty


@pytest.mark.parametrize("weights", [
    {}, {"l2sp": 0.3}, {"ewc": 2.0}, {"distill": 0.7, "temperature": 2.0},
    {"l2sp": 0.3, "distill": 0.7, "temperature": 2.0},
], ids=["weight0", "l2sp", "ewc", "distill", "l2sp+distill"])
def test_loss_terms_equal_mains_train_step_bitwise(tiny_model, weights):
  # Two steps (2 micro-batches each, the encoder frozen) through the generic
  # step with regularizers' terms, and through main's step that had the
  # penalty and distillation written into it: parameters, optimizer state
  # and every metric equal bitwise. Weight 0 adds no term (plain fine-tuning).
  # (L2-SP and EWC in one stage are two terms now, each with its own gradient,
  # where main summed their cotangents first: equal to ulps, not bitwise; the
  # direct-computation test above checks their sum.)
  import optax
  from t5tune.train import optimizers
  from t5tune.train import steps
  from t5tune.train import synthetic
  cfg, graphdef, params = tiny_model
  rng = np.random.default_rng(2)
  mask = optimizers.trainable_mask(params, r"^encoder/", "")
  trainable, _ = optimizers.split_trainable(params, mask)
  reg = {"anchor": jax.tree.map(lambda x: x + jnp.asarray(0.05 * rng.normal(size=x.shape),
                                                          x.dtype), trainable),
         "fisher": jax.tree.map(lambda x: jnp.asarray(rng.uniform(size=x.shape), jnp.float32),
                                trainable)}
  terms = regularizers.stage_terms(**weights, fisher=lambda abstract: reg["fisher"])
  assert bool(terms) == bool(weights)
  l2sp, ewc = weights.get("l2sp", 0.0), weights.get("ewc", 0.0)
  main_step = _main_train_step(
      graphdef, optax.adam(1e-2), mask, lambda s: 1e-2, loss=steps.LossOptions(),
      microbatches=2, penalty=_main_penalty(l2sp, ewc) if l2sp or ewc else None,
      distill=(lambda lg, t_lg, w, d: weights["distill"] * regularizers.kl_to_teacher(
          lg, t_lg, w, temperature=weights["temperature"], denominator=d))
      if "distill" in weights else None)
  new_step = steps.make_train_step(graphdef, optax.adam(1e-2), mask, lambda s: 1e-2,
                                   loss=steps.LossOptions(), microbatches=2, terms=terms)
  it = synthetic.SyntheticIterator(batch_size=4, inputs_length=8, targets_length=5,
                                   vocab_size=cfg.vocab_size, seed=0, mesh=None)
  batches = [{k: jnp.asarray(v) for k, v in it.host_batch(i).items()} for i in range(2)]

  def run(step):
    state = {"step": jnp.zeros((), jnp.int32), "params": params,
             "opt_state": optax.adam(1e-2).init(trainable), "rng": jax.random.PRNGKey(0)}
    if terms:
      keys = {k for t in terms for k in t.aux}
      state["reg"] = {k: reg[k] for k in keys}
    # Committed to one device as the step's outputs are: the second step then
    # reuses the first one's program instead of compiling it again.
    state = jax.device_put(state, jax.devices()[0])
    step = jax.jit(step)
    logged = []
    for batch in batches:
      state, metrics = step(state, batch)
      logged.append(metrics)
    return jax.device_get((state, logged))

  want, got = run(main_step), run(new_step)
  _assert_trees_equal(got, want)
  names = set(got[1][0])
  assert ("penalty" in names) == bool(l2sp or ewc) and ("distill" in names) == ("distill" in weights)
