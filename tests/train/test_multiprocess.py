"""Two local processes (jax.distributed on 127.0.0.1, 4 CPU devices each) train like one process."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = [
    "--config=configs/experiments/tiny.py",
    "--config.data.iterator_factory=t5tune.train.synthetic:make_iterator",
    "--config.data.modules=()",  # the synthetic batches need no task modules (nor seqio)
    "--config.data.inputs_length=16", "--config.data.targets_length=8",
    "--config.train.steps=3", "--config.train.log_every=1", "--config.checkpoint.every=3",
    "--config.eval.every=0", "--config.mesh.shape=(2,2,2)",
]


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return np.array([r["train/loss"] for r in rows if "train/loss" in r])


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  one = str(tmp_path / "one")
  two = str(tmp_path / "two")
  cmd = [sys.executable, "-m", "t5tune.main", "train", *ARGS]
  port = _free_port()
  procs = [subprocess.Popen(
      cmd + [f"--workdir={two}", f"--coordinator_address=127.0.0.1:{port}",
             "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=dict(env, JAX_NUM_CPU_DEVICES="4"), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  single = subprocess.run(cmd + [f"--workdir={one}"], cwd=REPO, capture_output=True,
                          text=True, env=dict(env, JAX_NUM_CPU_DEVICES="8"), timeout=600)
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert single.returncode == 0, single.stderr[-3000:]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)
  assert len(_losses(two)) == 3
  # Each process saved its own data-iterator position in the shared checkpoint.
  for i in range(2):
    assert os.path.isdir(os.path.join(two, "checkpoints", "3", "data", f"process_{i}"))
