"""Runs several `t5tune` command lines of ONE sub-command in this process and prints their results.

    python -m tests.faults.runner CASES.json   ->  one JSON line: [{"code", "stderr"}, ...]

Each sub-command defines its own absl flags, so one process serves one
sub-command; it imports the command once and runs each case in a fork, so
every case starts from the same fresh flag state. stderr is captured at the file
descriptor, so library noise printed by C++ (TensorFlow, XLA) is seen too.
"""
import importlib
import json
import os
import sys
import tempfile
import warnings

from t5tune import main


def run_case(argv, cwd):
  os.chdir(cwd)
  sys.argv = ["t5tune"] + list(argv)
  with tempfile.TemporaryFile(mode="w+") as err:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(err.fileno(), 2)
    code = 0
    try:
      main.run(["t5tune"] + list(argv))
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
    err.seek(0)
    return {"code": code, "stderr": err.read()}


def _forked(case):
  """Runs a case in a fork of this process: the libraries are imported once, the state is fresh."""
  read, write = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read)
    warnings.simplefilter("ignore")  # jax's note about fork() is not the command's output
    result = run_case(case["argv"], case["cwd"])
    os.write(write, json.dumps(result).encode())
    os._exit(0)
  os.close(write)
  with os.fdopen(read) as f:
    data = f.read()
  os.waitpid(pid, 0)
  return json.loads(data)


def main_(path):
  with open(path) as f:
    cases = json.load(f)
  command = cases[0]["argv"][0]
  if command in main.COMMANDS and command not in ("train", "evaluate"):
    # The heavy imports, once, before forking. (ml_collections' config flags read
    # sys.argv when they are defined, so those commands are imported per case.)
    importlib.import_module(main.COMMANDS[command])
  if command in ("data", "evaluate", "train", "predict", "serve"):
    importlib.import_module("t5tune.data.tasks")  # seqio + TensorFlow
  if command in ("convert", "evaluate", "train", "predict", "serve"):
    importlib.import_module("t5tune.convert.loading")  # jax, flax, orbax
  if command == "serve":  # what serve's main imports once its flags are checked
    for module in ("t5tune.serve.server", "t5tune.infer.api", "t5tune.sharding"):
      importlib.import_module(module)
  results = [_forked(c) for c in cases]
  sys.stdout.write("\nRESULTS " + json.dumps(results) + "\n")


if __name__ == "__main__":
  main_(sys.argv[1])
