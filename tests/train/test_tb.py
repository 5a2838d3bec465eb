"""The trainer's TensorBoard files: what TensorBoard reads back, written without importing TensorFlow."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_logger_writes_scalars_and_hparams_tensorboard_reads_without_tensorflow(tmp_path):
  # A fresh process: the test process has TensorFlow imported already.
  script = textwrap.dedent(f"""
      import sys
      from t5tune.train import hooks
      logger = hooks.Logger({str(tmp_path)!r})
      logger.start_at(0)
      logger.hparams({{"train.steps": 3, "optimizer.name": "adamw", "model.dropout": 0.1,
                       "train.remat": None, "data.packing": True}})
      for step in (1, 2, 3):
        logger.scalars(step, {{"train/loss": 4.0 / step, "train/accuracy": 0.25 * step}})
      logger.close()
      print("TENSORFLOW_IMPORTED" if "tensorflow" in sys.modules else "NO_TENSORFLOW")
      """)
  env = dict(os.environ, PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split()[-1] == "NO_TENSORFLOW"

  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
  acc.Reload()
  for tag in ("train/loss", "train/accuracy"):
    events = acc.Tensors(tag)
    assert [e.step for e in events] == [r["step"] for r in rows] == [1, 2, 3]
    got = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
    assert got == [np.float32(r[tag]) for r in rows]  # TensorBoard's scalars are float32

  content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
  hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
  assert hparams["train.steps"].number_value == 3
  assert hparams["optimizer.name"].string_value == "adamw"
  assert hparams["model.dropout"].number_value == 0.1
  assert hparams["train.remat"].string_value == "None"  # not bool/int/float/str: as text
  assert hparams["data.packing"].bool_value is True
