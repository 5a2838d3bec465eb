"""Crash-safe appends of whole lines to a JSONL output (predictions, evaluation metrics, generated data).

Top level (beside errors.py) because t5tune.data and t5tune.infer both use it
and neither may import the other.

Lines are appended in one write followed by fsync, so a file only grows by
whole lines; a partial last line (the system died mid-write) is cut before the
next append or read, so it is never merged with the rows that follow.
"""
from __future__ import annotations

import contextlib
import os
from typing import Sequence

from t5tune import errors


def drop_torn_tail(path: str) -> bytes:
  """Cuts a partial last line off `path`; returns the whole lines ("" if there is no file)."""
  if not os.path.exists(path):
    return b""
  with open(path, "rb") as f:
    data = f.read()
  end = data.rfind(b"\n") + 1
  if end < len(data):
    with open(path, "r+b") as f:
      f.truncate(end)
  return data[:end]


def append_lines(path: str, lines: Sequence[str]) -> None:
  """Appends `lines` (each ending in a newline) in one write, then fsyncs."""
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # less the umask, as open() gives
  data = memoryview("".join(lines).encode("utf-8"))
  size = os.fstat(fd).st_size
  try:
    while data:  # a full disk may take part of a write before it refuses the rest
      data = data[os.write(fd, data):]
    os.fsync(fd)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.ftruncate(fd, size)  # no partial line left behind (and the space it took is free)
    full = errors.disk_full(e, where=path)
    if full is None:
      raise
    raise full from e
  finally:
    os.close(fd)
