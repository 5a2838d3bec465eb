"""The `t5tune` command line: dispatches a sub-command to its module in t5tune/cli/.

Each sub-command module defines its own absl flags and a `main(argv)`; only
the chosen one is imported, so `t5tune info` never pays for TensorFlow.
"""
import difflib
import importlib
import logging
import os
import sys

COMMANDS = {
    "info": "t5tune.cli.info",
    "convert": "t5tune.cli.convert",
    "train": "t5tune.cli.train",
    "evaluate": "t5tune.cli.evaluate",
    "predict": "t5tune.cli.predict",
    "data": "t5tune.cli.data",
}

USAGE = """usage: t5tune COMMAND [flags]

commands:
  info      parameter count, per-component breakdown and FLOPs of a model config
  convert   hf-to-t5tune | t5tune-to-hf weight conversion
  train     train from an experiment config
  evaluate  evaluate a checkpoint on tasks or mixtures
  predict   decode instructions from a JSONL file
  data      list | report | train-vocab

`t5tune COMMAND --help` shows a command's flags."""


def run(argv=None):
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    close = difflib.get_close_matches(command, COMMANDS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    print(f"t5tune: unknown command {command!r}.{hint}\n\n{USAGE}", file=sys.stderr)
    sys.exit(2)
  # Quiet start-up: TensorFlow's C++ banner and jax's "no TPU found" notice.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  module = importlib.import_module(COMMANDS[command])
  from absl import app
  app.run(module.main, argv=[f"t5tune {command}"] + argv[2:], flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's flag parsing, with one-line errors for bad flags and config overrides.

  ml_collections reports a misspelt `--config.a.b` key as an AttributeError
  (with the closest valid key) and a wrong type as a TypeError/ValueError;
  those happen while parsing, before anything runs, and are the user's to fix.
  """
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"{argv[0]}: {e}\nPass --help to see the flags.")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
    message = " ".join(part.strip(" '\"") for part in text.splitlines() if part.strip(" '\""))
    sys.exit(f"{argv[0]}: bad --config override: {message}")


if __name__ == "__main__":
  run()
