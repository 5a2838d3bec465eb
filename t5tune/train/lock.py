"""One writer per workdir: an exclusive lock held for the life of a run.

    with lock.hold(workdir, "train"):
      ...  # no other process can train or continue in workdir meanwhile

The lock is `fcntl.flock` on WORKDIR/.t5tune.lock, so the operating system
releases it when the process dies however it dies (kill -9 included): a stale
lock file never blocks the next run. The file records the holder's pid, host
and command, which a refused run names. A second run fails at once, before it
writes anything, with a one-line error (exit 2).

The lock is per process and re-entrant within it (a continual run's stages, or
a script that builds a second Trainer on the same workdir, do not lock
themselves out). In a multi-process (multi-host) run only process 0 takes it:
every process of one run shares the workdir.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Iterator

from t5tune import errors

LOCK_NAME = ".t5tune.lock"
_HELD: dict[str, list[int]] = {}  # lock path -> [fd, holders in this process]
_MUTEX = threading.Lock()


def _holder(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    return (f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')},"
            f" since {info.get('since')})")
  except (OSError, ValueError):
    return "another process"


class Held:
  """A taken lock; `release()` gives it back (also done by the OS when the process ends)."""

  def __init__(self, path: str | None):
    self.path = path

  def release(self) -> None:
    if self.path is None:
      return
    with _MUTEX:
      entry = _HELD.get(self.path)
      if entry is not None:
        entry[1] -= 1
        if entry[1] == 0:
          os.close(entry[0])  # unlocks; the file stays (it holds nothing once unlocked)
          del _HELD[self.path]
    self.path = None


def acquire(workdir: str, command: str, *, process_index: int = 0) -> Held:
  """Takes the workdir's lock or raises a UsageError naming the run that holds it."""
  if process_index != 0:
    return Held(None)
  path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
  with _MUTEX:
    if path in _HELD:
      _HELD[path][1] += 1
      return Held(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise errors.UsageError(
          f"the workdir is in use by {_holder(path)}", where=os.path.dirname(path),
          fix="wait for that run to finish, stop it, or choose another --workdir") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "argv": sys.argv, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD[path] = [fd, 1]
  return Held(path)


@contextlib.contextmanager
def hold(workdir: str, command: str, *, process_index: int = 0) -> Iterator[None]:
  """Holds the workdir's lock while the block runs (see `acquire`)."""
  held = acquire(workdir, command, process_index=process_index)
  try:
    yield
  finally:
    held.release()
