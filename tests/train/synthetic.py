"""The package's synthetic iterator plus fault-injection hooks for the subprocess tests.

    --config.data.iterator_factory=tests.train.synthetic:make_iterator

Environment variables make a child process stall (so the test can kill it
there): SYNTHETIC_STALL_AT_NEXT=N before handing out batch N,
SYNTHETIC_STALL_AT_SAVE=N while saving at position N, and
SYNTHETIC_SLOW_FROM=N sleeps a second before every batch from N on.
"""
from __future__ import annotations

import os
import time

from t5tune.train import synthetic


class SyntheticIterator(synthetic.SyntheticIterator):
  """`t5tune.train.synthetic.SyntheticIterator` that can stall on request."""

  def __next__(self):
    if os.environ.get("SYNTHETIC_STALL_AT_NEXT") == str(self.position):
      time.sleep(600)
    if self.position >= int(os.environ.get("SYNTHETIC_SLOW_FROM", 1 << 30)):
      time.sleep(1.0)
    return super().__next__()

  def save(self, directory: str) -> None:
    if os.environ.get("SYNTHETIC_STALL_AT_SAVE") == str(self.position):
      time.sleep(600)
    super().save(directory)


def make_iterator(config, mesh, split: str) -> SyntheticIterator:
  """The `config.data.iterator_factory` entry point."""
  return synthetic.make_iterator(config, mesh, split, cls=SyntheticIterator)
