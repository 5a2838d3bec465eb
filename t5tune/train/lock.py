"""One writer per workdir: an exclusive lock held for the life of a run.

    with lock.hold(workdir, "train"):
      ...  # nothing else can train or continue in workdir meanwhile

The lock is `fcntl.flock` on WORKDIR/.t5tune.lock, so the operating system
releases it when the process dies however it dies (kill -9 included): a stale
lock file never blocks the next run. The file records the holder's pid, host
and command, which a refused run names. A second run fails at once, before it
writes anything, with a one-line error (exit 2).

In a multi-process (multi-host) run only process 0 takes the lock: every
process of one run shares the workdir.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

from t5tune import errors

LOCK_NAME = ".t5tune.lock"


def _holder(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, since {info.get('since')})"
  except (OSError, ValueError):
    return "another process"


@contextlib.contextmanager
def hold(workdir: str, command: str, *, process_index: int = 0) -> Iterator[None]:
  """Holds the workdir's lock while the block runs; refuses at once if another run holds it."""
  if process_index != 0:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise errors.UsageError(
          f"the workdir is in use by {_holder(path)}", where=workdir,
          fix="wait for that run to finish, stop it, or choose another --workdir") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "argv": sys.argv, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock; the file stays (it holds nothing once unlocked)
