"""Two local processes (jax.distributed on 127.0.0.1, 4 CPU devices each) train like one process."""
import json
import os
import socket

import numpy as np

from tests import cli
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
  one = str(tmp_path / "one")
  two = str(tmp_path / "two")
  port = _free_port()
  # Each a fork of tests/cli.py's pre-imported process (jax imported, its backend not started).
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = [cli.start(["train", *ARGS, f"--workdir={two}",
                      f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                      f"--process_id={i}"], log=logs[i],
                     env=dict(cli.ENV, JAX_NUM_CPU_DEVICES="4")) for i in range(2)]
  single = cli.run(["train", *ARGS, f"--workdir={one}"],
                   env=dict(cli.ENV, JAX_NUM_CPU_DEVICES="8"))
  codes = [p.wait(timeout=600) for p in procs]
  assert single.returncode == 0, single.stderr[-3000:]
  for code, log in zip(codes, logs):
    assert code == 0, log.read_text()[-3000:]
  np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)
  assert len(_losses(two)) == 3
  # Each process saved its own data-iterator position in the shared checkpoint.
  for i in range(2):
    assert os.path.isdir(os.path.join(two, "checkpoints", "3", "data", f"process_{i}"))
