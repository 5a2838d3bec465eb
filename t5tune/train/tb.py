"""TensorBoard event files (scalars, hyperparameters) written with tensorboard's own writer, no TensorFlow.

Why not clu's metric writers (used here before): importing `clu.metric_writers`
imports TensorFlow, 5.6 s of a 19 s two-step tiny training run on synthetic
batches (cProfile, 2-core CPU), in a process that otherwise never needs it.
tensorboard ships the writer and the summary protos TensorBoard itself reads
(`EventFileWriter` queues events and writes them from a background thread, as
clu's asynchronous writer did); this module only turns a step's metrics into
its protos. The scalars are the same "scalars"-plugin tensors `tf.summary.scalar`
writes, and the hyperparameters the hparams plugin's session-start summary.

tensorboard's file layer (`tensorboard.compat.tf`) is TensorFlow when it can be
imported, else tensorboard's own stub, the path every PyTorch user without
TensorFlow takes. When this process has not imported TensorFlow, the stub is
chosen through tensorboard's own switch (the module `tensorboard.compat.notf`
exists), so that writing a file does not import it.
"""
from __future__ import annotations

import sys
import time
import types
from typing import Any, Mapping

if "tensorflow" not in sys.modules:
  sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from tensorboard.compat.proto import event_pb2  # noqa: E402
from tensorboard.plugins.hparams import summary_v2 as hparams_summary  # noqa: E402
from tensorboard.plugins.scalar import summary_v2 as scalar_summary  # noqa: E402
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: E402


class Writer:
  """One run's event file in `logdir` (created if missing)."""

  def __init__(self, logdir: str):
    self._events = EventFileWriter(logdir)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    for tag, value in values.items():
      self._add(step, scalar_summary.scalar_pb(tag, float(value)))

  def hparams(self, flat: Mapping[str, Any]) -> None:
    """Hyperparameters for TensorBoard's HPARAMS tab; values that are not bool/int/float/str as text."""
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}
    self._add(0, hparams_summary.hparams_pb(values))

  def flush(self) -> None:
    self._events.flush()

  def close(self) -> None:
    self._events.close()

  def _add(self, step: int, summary) -> None:
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
