"""Progress bars and one-line timed statuses for long steps (tqdm), on stderr, only where watched.

A bar or status is shown when stderr is a terminal and neither `--quiet`
(which sets T5TUNE_QUIET=1) nor the CI environment variable asks for silence,
so logs and redirected output stay free of carriage-return noise. Top level
(beside errors.py) because train, infer and convert all use it and none may
import another.

    with progress.bar(total=len(rows), desc="predict", unit="line") as b:
      ...; b.update(n)
    with progress.status("compile train step"):   # no total: shows the elapsed time
      compiled = lowered.compile()
"""
from __future__ import annotations

import contextlib
import os
import sys

QUIET_ENV = "T5TUNE_QUIET"


def enabled() -> bool:
  """True when a person is likely watching stderr (a TTY) and nobody asked for quiet."""
  if os.environ.get(QUIET_ENV, "").lower() in ("1", "true", "yes") or os.environ.get("CI"):
    return False
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):  # a replaced or closed stream
    return False


def bar(total: int | None = None, *, desc: str, unit: str = "it", initial: int = 0):
  """A tqdm bar on stderr (disabled off a terminal or when quiet); use as a context or close()."""
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
              file=sys.stderr, disable=not enabled(), leave=True)


@contextlib.contextmanager
def status(desc: str):
  """`desc ...` while the block runs, then `desc: done in 0:12` (a step with no total)."""
  from tqdm import tqdm
  line = tqdm(total=1, desc=desc, bar_format="{desc} ... {elapsed}", file=sys.stderr,
              disable=not enabled(), leave=True)
  try:
    yield line
    line.bar_format = "{desc}: done in {elapsed}"
    line.update(1)
  finally:
    line.close()
