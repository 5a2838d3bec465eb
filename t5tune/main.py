"""The `t5tune` command line: dispatches a sub-command to its module in t5tune/cli/.

Each sub-command module defines its own absl flags and a `main(argv)`; only
the chosen one is imported, so `t5tune info` never pays for TensorFlow.
Errors, help and quiet start-up are `t5tune.cli.common`'s.
"""
import sys

from t5tune import allocator

COMMANDS = {
    "info": "t5tune.cli.info",
    "convert": "t5tune.cli.convert",
    "train": "t5tune.cli.train",
    "continual": "t5tune.cli.continual",
    "evaluate": "t5tune.cli.evaluate",
    "predict": "t5tune.cli.predict",
    "data": "t5tune.cli.data",
    "serve": "t5tune.cli.serve",
    "harness": "t5tune.cli.harness",
}

USAGE = """usage: t5tune COMMAND [flags]

commands:
  info      parameter count, per-component breakdown and FLOPs of a model config
  convert   hf-to-t5tune | t5tune-to-hf | t5x-to-t5tune weight conversion
  train     train from an experiment config
  continual train a config's stages in sequence; accuracy matrix, BWT, FWT
  evaluate  evaluate a checkpoint on tasks or mixtures
  predict   decode instructions from a JSONL file
  data      list | report | train-vocab | cache | near-duplicates | contamination | label-issues | generate
  serve     HTTP inference server: OpenAI-compatible completions, scoring, metrics
  harness   lm-evaluation-harness (MMLU, BBH, ...) with the `t5tune` model: the harness's own arguments

`t5tune COMMAND --help` shows a command's flags."""


def run(argv=None):
  from_command_line = argv is None
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  from t5tune import errors
  from t5tune.cli import common
  command = argv[1]
  if command not in COMMANDS:
    error = errors.UsageError(f"unknown command {command!r}.{errors.did_you_mean(command, COMMANDS)}",
                              fix="`t5tune --help` lists the commands")
    print(f"t5tune: error: {error}", file=sys.stderr)
    sys.exit(error.exit_code)
  if from_command_line:
    allocator.ensure(argv)  # before jax starts; see t5tune/allocator.py
    from t5tune import targets
    targets.quiet_without_tpu()  # before jax picks a backend; see that function
    from t5tune.cli import lean_imports
    lean_imports.install()  # before TensorFlow loads Keras; see that module
  if command == "harness":  # the harness parses its own arguments (argparse, not absl)
    from t5tune.cli import harness
    harness.run(argv[2:])
    return
  common.run(command, COMMANDS[command], argv[2:])


if __name__ == "__main__":
  run()
