"""t5tune.progress: bars and timed statuses on a terminal; nothing when piped, quiet or in CI."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = """
import time
from t5tune import progress
with progress.status("compile train step"):
  time.sleep(0.05)
bar = progress.bar(total=3, desc="predict", unit="line")
bar.update(3)
bar.close()
"""


def _on_a_terminal(**env) -> str:
  """stderr of SCRIPT run on a pseudo-terminal 100 columns wide."""
  master, slave = pty.openpty()
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
  base = {k: v for k, v in os.environ.items() if k not in ("CI", "T5TUNE_QUIET")}
  proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=dict(base, PYTHONPATH=ROOT, **env),
                          stdin=slave, stdout=slave, stderr=slave)
  os.close(slave)
  out = b""
  while True:
    try:
      data = os.read(master, 4096)
    except OSError:  # the child closed the terminal
      break
    if not data:
      break
    out += data
  os.close(master)
  assert proc.wait(timeout=60) == 0, out
  return out.decode("utf-8", "replace")


def test_shown_on_a_terminal():
  out = _on_a_terminal(T5TUNE_QUIET="")
  assert "compile train step: done in 00:0" in out
  assert "predict: 100%" in out and "3/3" in out


def test_silent_when_quiet_or_ci():
  assert "predict" not in _on_a_terminal(T5TUNE_QUIET="1")
  assert "predict" not in _on_a_terminal(T5TUNE_QUIET="", CI="true")


def test_silent_when_stderr_is_not_a_terminal():
  env = {k: v for k, v in os.environ.items() if k not in ("CI", "T5TUNE_QUIET")}
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=dict(env, PYTHONPATH=ROOT),
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0 and proc.stderr == "", proc.stderr
