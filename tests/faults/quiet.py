"""What counts as library log noise in a command's stderr (tests of the quiet default).

t5tune's own log lines (and the continuation lines of a multi-line one) may
appear; lines logged by TensorFlow, absl, orbax, clu or jax, and progress bars
(stderr is not a terminal in tests), may not.
"""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LOG_HEADER = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\] ")
_NOISE = ("orbax", "tensorflow", "cuda", "absl::", "All log messages before", "Hyperparameters",
          "xla_bridge", "Warning:", "%|")  # the last: a progress bar


def _own_files() -> set[str]:
  return {n for _, _, ns in os.walk(os.path.join(REPO, "t5tune")) for n in ns
          if n.endswith(".py") and n != "__init__.py"}


def assert_quiet(stderr: str, command: str) -> None:
  """Fails naming the first line of `stderr` that a library, not t5tune, printed."""
  own = _own_files()
  for line in stderr.splitlines():
    header = _LOG_HEADER.match(line)
    assert not header or header.group(1) in own, (command, line[:300])
    assert not any(n in line for n in _NOISE), (command, line[:300])


def not_own_log_lines(stderr: str) -> list[str]:
  """The non-blank lines of `stderr` that are not log records of t5tune's own files."""
  own = _own_files()
  return [line for line in stderr.splitlines() if line.strip()
          and not ((h := _LOG_HEADER.match(line)) and h.group(1) in own)]
