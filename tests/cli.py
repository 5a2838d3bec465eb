"""Runs `t5tune` command lines for the tests in forks of one process that imported the libraries.

    result = cli.run(["train", "--config=..."], cwd=..., env=..., timeout=600)
    result.returncode, result.stdout, result.stderr   # as subprocess.run(..., text=True) gives
    command = cli.start(["train", ...], log="run.log")  # both streams appended to run.log
    command.pid, command.poll(), command.send_signal(signal.SIGTERM), command.wait(timeout=300)

A fresh `python -m t5tune` spends ~4 s of CPU importing TensorFlow, seqio, jax,
flax and orbax before the command starts, and the suite runs dozens of
command lines. Here a server process (`python -m tests.cli`, one per set of
import-time variables, started on first use in each pytest worker) imports
those libraries once and forks a child per command line. The child is a real
process of its own: its own working directory, environment, argv and file
descriptors 0-2 (stdin /dev/null; stdout and stderr to files, so what C++
libraries print is captured too), and it ends the way `python -m t5tune`
ends (SystemExit, atexit handlers, non-daemon threads joined). What the fork
cannot give is a different value of a variable the libraries read when they
are imported (JAX_*, TF_*, HF_*, ...): those variables choose the server.

Writing a fork server by hand: pytest-xdist and multiprocessing's forkserver
start children that run Python functions, not a command's `main` with its own
argv, environment and file descriptors, and neither keeps the parent's imports.
Tests that read a command's output while it runs, or check what a user sees
from a fresh interpreter (its imports, its stderr from the first line), still
start a real `python -m t5tune`.
"""
from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = os.path.join(REPO, "t5tune", "__main__.py")  # sys.argv[0] of `python -m t5tune`
# As a user runs a command: TensorFlow's log level left to the command's quiet default.
# Offline for the datasets library too (the harness's commands; nothing else reads it).
ENV = {k: v for k, v in dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
                             HF_DATASETS_OFFLINE="1").items()
       if k not in ("TF_CPP_MIN_LOG_LEVEL", "T5TUNE_VERBOSE")}
# Variables read when a library is imported or when the interpreter starts: a
# child cannot change them, so each distinct set has its own server. The two
# set in the child instead (jax's device count, before its backend starts) are not.
_IMPORT_TIME = ("JAX_", "TF_", "XLA_", "HF_", "TRANSFORMERS_", "CUDA_", "PYTHON", "MIMALLOC_",
                "LD_PRELOAD")
_SET_IN_CHILD = ("JAX_NUM_CPU_DEVICES", "PYTHONDONTWRITEBYTECODE")
# Set in a command's env, the largest file (bytes) the command may write: a full disk (RLIMIT_FSIZE).
FILE_SIZE_LIMIT = "T5TUNE_TEST_FILE_SIZE_LIMIT"
# What each command imports anyway, imported by the server before its first fork.
_HEAVY = ("t5tune.data.tasks", "t5tune.convert.loading")  # seqio + TensorFlow; jax, flax, orbax
_PRELOAD = {
    "info": ("t5tune.models.t5",),
    "convert": ("t5tune.convert.loading",),
    "harness": _HEAVY + ("lm_eval.__main__", "t5tune.infer.harness"),
}


def _key(env):
  return tuple(sorted((k, v) for k, v in env.items()
                      if k.startswith(_IMPORT_TIME) and k not in _SET_IN_CHILD))


class _Server:
  """One `python -m tests.cli` process and its request and reply pipes."""

  def __init__(self, env):
    self.log = tempfile.NamedTemporaryFile(prefix="t5tune-cli-server-", suffix=".log")
    self.proc = subprocess.Popen([sys.executable, "-m", "tests.cli"], cwd=REPO, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=self.log, text=True)

  def call(self, request):
    self.proc.stdin.write(json.dumps(request) + "\n")
    self.proc.stdin.flush()
    reply = self.proc.stdout.readline()
    if not reply:
      self.log.seek(0)
      raise RuntimeError("the command server (tests/cli.py) died:\n"
                         + self.log.read().decode(errors="replace")[-3000:])
    return json.loads(reply)

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)
    self.log.close()


_SERVERS: dict[tuple, _Server] = {}


@atexit.register
def _close_all():
  for server in _SERVERS.values():
    server.close()
  _SERVERS.clear()


class Command:
  """A started command line: the parts of subprocess.Popen the tests use."""

  def __init__(self, server, pid, args):
    self.server, self.pid, self.args = server, pid, args
    self.returncode = None

  def poll(self):
    if self.returncode is None:
      self.returncode = self.server.call({"op": "wait", "pid": self.pid, "timeout": 0})["code"]
    return self.returncode

  def wait(self, timeout=None):
    if self.returncode is None:
      reply = self.server.call({"op": "wait", "pid": self.pid,
                                "timeout": 1e9 if timeout is None else timeout})
      if reply["code"] is None:
        raise subprocess.TimeoutExpired(self.args, timeout)
      self.returncode = reply["code"]
    return self.returncode

  def send_signal(self, sig):
    if self.returncode is None:
      os.kill(self.pid, sig)

  def kill(self):
    self.send_signal(signal.SIGKILL)


def start(argv, log=None, stdout=os.devnull, stderr=os.devnull, cwd=REPO, env=None) -> Command:
  """Starts `python -m t5tune ARGV`; its stdout and stderr are appended to `log` (or to the two
  files named)."""
  env = dict(ENV if env is None else env)
  key = _key(env)
  if key not in _SERVERS:
    _SERVERS[key] = _Server(env)
  argv = [str(a) for a in argv]
  stdout, stderr = (log, log) if log is not None else (stdout, stderr)
  reply = _SERVERS[key].call({"op": "start", "argv": argv, "cwd": str(cwd), "env": env,
                              "stdout": str(stdout), "stderr": str(stderr)})
  return Command(_SERVERS[key], reply["pid"], ["python", "-m", "t5tune"] + argv)


def run(argv, cwd=REPO, env=None, timeout=600) -> subprocess.CompletedProcess:
  """`python -m t5tune ARGV` in `cwd` with `env` (default ENV), as subprocess.run(text=True)."""
  with tempfile.TemporaryDirectory(prefix="t5tune-cli-") as tmp:
    out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    command = start(argv, stdout=out, stderr=err, cwd=cwd, env=env)
    try:
      command.wait(timeout)
      timed_out = False
    except subprocess.TimeoutExpired:
      command.kill()
      command.wait()
      timed_out = True
    with open(out, errors="replace") as f, open(err, errors="replace") as g:
      stdout, stderr = f.read(), g.read()
  if timed_out:
    raise subprocess.TimeoutExpired(command.args, timeout, stdout, stderr)
  return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


def wrong_modes(root) -> list:
  """(path, mode) of what under `root` lacks the mode any file (0666) or directory (0777) the
  user creates gets under the process's umask (the tests run under 022, set in conftest)."""
  mask = os.umask(0o022)
  os.umask(mask)
  wrong = []
  for directory, dirs, names in os.walk(root):
    for name in dirs + names:
      path = os.path.join(directory, name)
      mode = os.lstat(path).st_mode & 0o777
      want = (0o777 if os.path.isdir(path) else 0o666) & ~mask
      if mode != want and not os.path.islink(path):
        wrong.append((path, oct(mode)))
  return wrong


# --- the server ---------------------------------------------------------------------------------


def _child(request):
  """In the fork: becomes `python -m t5tune ARGV`; never returns."""
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  opened = {}
  for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
    if path not in opened:
      opened[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(opened[path], fd)
  for fd in (null, *opened.values()):
    os.close(fd)
  os.chdir(request["cwd"])
  os.environ.clear()
  os.environ.update(request["env"])
  sys.dont_write_bytecode = bool(request["env"].get("PYTHONDONTWRITEBYTECODE"))
  if "jax" in sys.modules:  # what jax reads from JAX_NUM_CPU_DEVICES when it is imported
    sys.modules["jax"].config.update("jax_num_cpu_devices",
                                     int(request["env"].get("JAX_NUM_CPU_DEVICES", -1)))
  limit = request["env"].get(FILE_SIZE_LIMIT)
  if limit:  # a full disk, as the tests make one: every file the command writes stops at LIMIT
    import resource  # pylint: disable=g-import-not-at-top
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then the write fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.RLIM_INFINITY))
    if "jax" in sys.modules:  # its cache of compiled programs is no output of the command
      sys.modules["jax"].config.update("jax_enable_compilation_cache", False)
  sys.path.insert(0, request["cwd"])  # as `python -m` puts the current directory first
  sys.argv = [ENTRY] + request["argv"]
  from t5tune import main  # pylint: disable=g-import-not-at-top
  try:
    main.run(list(sys.argv))
    code = 0
  except SystemExit as e:  # as the interpreter treats it at the top
    code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    if not isinstance(e.code, (int, type(None))):
      print(e.code, file=sys.stderr)
  except BaseException:  # pylint: disable=broad-except
    sys.excepthook(*sys.exc_info())
    code = 1
  _end(code)


def _end(code):
  """Ends the child as the interpreter ends a program: non-daemon threads joined, then the atexit
  handlers (orbax's pending saves, the workdir lock), streams flushed. What it leaves out is
  tearing down every module and object inherited from the server: that would touch each of
  their pages and copy it (seconds a child, all of it thrown away by the exit)."""
  threading._shutdown()  # pylint: disable=protected-access  # what Py_FinalizeEx calls first
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code)


def _wait(pid, timeout, ended):
  """The child's exit code (-N for signal N, as subprocess gives), or None if it runs on after
  `timeout` seconds. `ended` keeps the codes of children already reaped."""
  deadline = time.monotonic() + timeout
  while pid not in ended:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      ended[pid] = os.waitstatus_to_exitcode(status)
    elif time.monotonic() >= deadline:
      return None
    else:
      time.sleep(0.02)
  return ended[pid]


def _serve():
  # Replies go to a private copy of stdout; what libraries print goes to the server's log.
  replies = os.fdopen(os.dup(1), "w")
  requests = os.fdopen(os.dup(0), "r")
  os.dup2(2, 1)
  # A command line's non-verbose start-up sets this before TensorFlow loads (t5tune.cli.common).
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from t5tune.cli import lean_imports  # pylint: disable=g-import-not-at-top
  lean_imports.install()  # as t5tune.main does for a command line
  loaded, started, ended = set(), set(), {}
  for line in requests:
    request = json.loads(line)
    if request["op"] == "wait":
      reply = {"code": _wait(request["pid"], request["timeout"], ended)}
    else:  # start
      for module in _PRELOAD.get(request["argv"][0] if request["argv"] else "", _HEAVY):
        if module not in loaded:
          importlib.import_module(module)
          loaded.add(module)
      sys.stdout.flush()
      sys.stderr.flush()
      gc.freeze()  # the server's objects: never collected in a child, so their pages stay shared
      pid = os.fork()
      if pid == 0:
        requests.close()
        replies.close()
        _child(request)
      started.add(pid)
      reply = {"pid": pid}
    replies.write(json.dumps(reply) + "\n")
    replies.flush()
  for pid in started - set(ended):  # the tests are over: nothing they started outlives them
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


if __name__ == "__main__":
  _serve()
