"""Checkpoints through the command line: exact resume after kill -9, partial saves, SIGTERM, other meshes.

One uninterrupted reference run; the other runs are compared with it bitwise
(same mesh, same batches). Fault injection stalls the synthetic data iterator
(tests/train/synthetic.py) at a chosen batch or save, and the test kills there.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from t5tune import sharding
from t5tune.convert import loading
from t5tune.convert import model_dir
from t5tune.train import experiment
from t5tune.train import trainer
from tests import cli
from tests.faults import quiet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 8
ARGS = [
    "--config=configs/experiments/tiny.py",
    "--config.data.iterator_factory=tests.train.synthetic:make_iterator",
    "--config.data.modules=()",  # the synthetic batches need no task modules (nor seqio)
    "--config.data.inputs_length=16", "--config.data.targets_length=8",
    f"--config.train.steps={STEPS}", "--config.train.log_every=1",
    "--config.checkpoint.every=2", "--config.checkpoint.keep=10",
    "--config.eval.every=0", "--config.mesh.shape=(2,2,2)",
]


def _env(**extra):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu",
             TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  env.update(extra)
  return env


def _start(workdir, fresh=False, **env):
  """`t5tune train` into `workdir`: a fresh process, or a fork of the pre-imported tests/cli.py."""
  # Output goes to a file: a full pipe would block the child while we poll.
  log = open(os.path.join(os.path.dirname(workdir), f"{os.path.basename(workdir)}.log"), "a+")
  if fresh:
    proc = subprocess.Popen(
        [sys.executable, "-m", "t5tune.main", "train", f"--workdir={workdir}", *ARGS],
        cwd=REPO, env=_env(**env), stdout=log, stderr=subprocess.STDOUT, text=True)
  else:
    proc = cli.start(["train", f"--workdir={workdir}", *ARGS], log=log.name,
                     env=dict(cli.ENV, **env))
  proc.log = log
  proc.log_start = log.tell()
  return proc


def _output(proc):
  proc.log.flush()
  proc.log.seek(proc.log_start)
  return proc.log.read()


def _finish(proc, timeout=300):
  proc.wait(timeout=timeout)
  return proc.returncode, _output(proc)


def _wait_for(predicate, proc, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      raise AssertionError(f"training exited early:\n{_output(proc)[-3000:]}")
    time.sleep(0.1)
  raise AssertionError("timed out waiting for the training process")


def _ckpt(workdir, step):
  return os.path.join(workdir, "checkpoints", str(step))


def _params(workdir, step):
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(os.path.join(_ckpt(workdir, step), "params"))
  return jax.tree.map(np.asarray, restored)


def _position(workdir, step):
  with open(os.path.join(_ckpt(workdir, step), "data", "process_0", "iterator.json")) as f:
    return json.load(f)["position"]


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  code, out = _finish(_start(workdir, fresh=True))  # its stderr as a user sees it
  assert code == 0, out[-3000:]
  # Quiet by default: no orbax/clu/absl INFO chatter, no bar (the log is not a terminal).
  quiet.assert_quiet(out, "train")
  assert "train step compiled" in out  # t5tune's own lines stay
  return workdir


def _assert_same_as_reference(workdir, reference):
  ref, got = _params(reference, STEPS), _params(workdir, STEPS)
  jax.tree.map(np.testing.assert_array_equal, got, ref)  # bitwise
  assert _position(workdir, STEPS) == _position(reference, STEPS) == STEPS


def test_reference_run_writes_everything(reference):
  steps = sorted(int(d) for d in os.listdir(os.path.join(reference, "checkpoints")) if d.isdigit())
  assert steps == [2, 4, 6, 8]
  for item in ("params", "state", "data", "experiment", "config.json"):
    assert os.path.exists(os.path.join(_ckpt(reference, 8), item)), item
  assert os.path.exists(os.path.join(reference, "config.json"))
  assert glob.glob(os.path.join(reference, "tb", "events.out.tfevents.*"))
  assert sorted(_losses(reference)) == list(range(1, STEPS + 1))
  assert cli.wrong_modes(reference) == []  # the user's modes under umask 022 (issue 43)
  # A training checkpoint is a t5tune model directory.
  model = loading.load_model(_ckpt(reference, 8))
  assert model.config.num_heads == 4


def test_kill_9_part_way_and_during_async_save_resume_exactly(tmp_path, reference):
  workdir = str(tmp_path)
  # 1. kill -9 while training (stalled fetching batch 5; step 4 is saved).
  proc = _start(workdir, SYNTHETIC_STALL_AT_NEXT="5")
  _wait_for(lambda: os.path.isdir(_ckpt(workdir, 4)), proc)  # renamed = finalised
  time.sleep(1.0)
  # A second `t5tune train` in the same workdir meanwhile: refused at once, naming the
  # first run, writing nothing (the end of this test shows the workdir equals a run alone).
  def written():  # what a second run would write first: config.json, checkpoints, the log
    return (os.path.getmtime(os.path.join(workdir, "config.json")),
            sorted(os.listdir(os.path.join(workdir, "checkpoints"))),
            os.path.getsize(os.path.join(workdir, "metrics.jsonl")))

  before = written()
  second = cli.run(["train", f"--workdir={workdir}", *ARGS], timeout=300)
  assert second.returncode == 2, second.stderr[-2000:]
  assert f"the workdir is in use by pid {proc.pid}" in second.stderr.strip().splitlines()[-1]
  assert "Traceback" not in second.stderr
  assert written() == before
  proc.kill()  # the lock file stays behind: the resume below shows it does not block
  proc.wait()
  assert os.path.exists(os.path.join(workdir, ".t5tune.lock"))
  # 2. resume; kill -9 in the middle of the asynchronous save of step 6.
  proc = _start(workdir, SYNTHETIC_STALL_AT_SAVE="6")
  ckpts = os.path.join(workdir, "checkpoints")
  _wait_for(lambda: glob.glob(os.path.join(ckpts, "6.orbax-checkpoint-tmp*")), proc)
  time.sleep(1.0)
  proc.kill()
  proc.wait()
  assert not os.path.exists(_ckpt(workdir, 6))  # only a partial save exists
  # The latest complete step is 4, and whole: its array files match their checksums.
  assert model_dir.verify_checksums(_ckpt(workdir, 4))
  # 3. resume again: from step 4 (the partial step 6 is ignored), to the end.
  code, out = _finish(_start(workdir))
  assert code == 0, out[-3000:]
  assert "resumed from" in out and os.path.join("checkpoints", "4") in out
  _assert_same_as_reference(workdir, reference)
  ref_losses, losses = _losses(reference), _losses(workdir)
  for step in (5, 6, 7, 8):
    assert losses[step] == ref_losses[step]
  # Steps 5 and 6 were logged by the killed run and again after the resume from 4:
  # each step's row is in metrics.jsonl once.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [json.loads(line)["step"] for line in f if "train/loss" in line]
  assert logged == list(range(1, STEPS + 1))


def test_sigterm_saves_current_step_exits_0_and_resumes_exactly(tmp_path, reference):
  workdir = str(tmp_path)
  proc = _start(workdir, SYNTHETIC_SLOW_FROM="3")  # one second per batch from batch 3
  _wait_for(lambda: os.path.isdir(_ckpt(workdir, 2)), proc)
  time.sleep(1.5)
  proc.send_signal(signal.SIGTERM)
  code, out = _finish(proc)
  assert code == 0, out[-3000:]
  summary = json.loads(out.strip().splitlines()[-1])
  stopped = summary["step"]
  assert summary["stop_reason"] == "preempted" and 2 < stopped < STEPS
  assert os.path.isfile(os.path.join(_ckpt(workdir, stopped), "config.json"))  # finalised
  assert _position(workdir, stopped) == stopped
  code, out = _finish(_start(workdir))
  assert code == 0, out[-3000:]
  _assert_same_as_reference(workdir, reference)


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 1, 1)])
def test_checkpoint_from_2x2x2_restores_on_other_meshes(tmp_path, reference, shape):
  config = experiment.default_config()
  config.data.iterator_factory = "t5tune.train.synthetic:make_iterator"
  config.mesh.shape = shape
  config.data.batch_size = 8
  mesh = (sharding.single_device_mesh() if shape == (1, 1, 1) else sharding.make_mesh(shape))
  tr = trainer.Trainer(config, str(tmp_path), mesh=mesh)
  tr.checkpointer.close()
  tr.checkpointer = type(tr.checkpointer)(
      os.path.join(reference, "checkpoints"), model_config=tr.model_cfg.to_dict())
  state, resumed = tr.initial_state()
  assert resumed and int(state["step"]) == STEPS
  kernel = state["params"]["decoder"]["layers"][0]["mlp"]["wo"]["kernel"]
  assert kernel.sharding.mesh.shape_tuple == mesh.shape_tuple
  got, want = _flat(jax.device_get(state["params"])), _flat(_params(reference, STEPS))
  assert got.keys() == want.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _flat(tree):
  """{'decoder/layers/0/...': array}, whether keys are ints or strs, with or without nnx's '/value'."""
  return {"/".join(str(getattr(k, "key", k)) for k in path).removesuffix("/value"): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
