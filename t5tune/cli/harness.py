"""`t5tune harness ARGS...`: lm-evaluation-harness's own command line, with the `t5tune` model registered.

    t5tune harness --model t5tune --model_args checkpoint=runs/x/model,vocab=spiece.model \\
        --tasks mmlu,bbh_fewshot --num_fewshot 5 --output_path out/ [--log_samples] \\
        [--include_path my_tasks/]

Every argument is the harness's (`lm_eval --help` lists them; `t5tune harness
--help` prints the same). The harness's own CLI finds only the models of its
own package, so this command registers t5tune's backend
(`t5tune.infer.harness`) first and then runs the harness's entry point
unchanged: outputs, `--log_samples` and `--include_path` behave as in
`lm_eval`. absl flags are not parsed here: the arguments belong to the harness.
Two of the harness's failures become t5tune's one-line errors: t5tune's own
(a bad checkpoint, vocabulary or model_args) and a --tasks name it has no
task for (with the closest name it has, instead of its traceback).
"""
from __future__ import annotations

import sys
from typing import Sequence


def run(args: Sequence[str]) -> None:
  from t5tune import errors  # pylint: disable=g-import-not-at-top
  from t5tune.cli import common  # pylint: disable=g-import-not-at-top
  verbose = common.verbose_requested(args)
  args = [a for a in args if a not in ("--verbose", "--verbose=true", "--verbose=1")]
  common.quiet_start_up(verbose)
  try:
    from lm_eval import __main__ as lm_eval_main  # pylint: disable=g-import-not-at-top
    from t5tune.infer import harness  # pylint: disable=g-import-not-at-top
    harness.register()
    sys.argv = ["t5tune harness"] + list(args)
    lm_eval_main.cli_evaluate()
  except errors.T5tuneError as e:  # a bad checkpoint or vocabulary: the one-line error
    sys.exit(common.report("harness", e, verbose))
  except ValueError as e:
    if not str(e).startswith(_NOT_FOUND):
      raise
    sys.exit(common.report("harness", unknown_tasks(str(e)[len(_NOT_FOUND):], args,
                                                    _task_manager_of(e)), verbose))


# How lm-eval's config refuses task names it has no definition for (lm_eval.config.evaluate_config).
_NOT_FOUND = "Tasks not found: "


def _task_manager_of(error: BaseException):
  """The TaskManager lm-eval matched the names with, from the frames `error` passed through (its
  index of ~14,000 task files takes seconds to build again), or None."""
  from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top
  tb = error.__traceback__
  while tb is not None:
    found = tb.tb_frame.f_locals.get("task_manager")
    if isinstance(found, TaskManager):
      return found
    tb = tb.tb_next
  return None


def unknown_tasks(missing: str, args: Sequence[str], task_manager=None):
  """The UsageError for --tasks names lm-eval does not know, each with its closest known name
  (the harness's own tasks, groups and tags and those under --include_path)."""
  from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top
  from t5tune import errors  # pylint: disable=g-import-not-at-top
  if task_manager is None:
    task_manager = TaskManager(include_path=_option(args, "--include_path"))
  known = task_manager.all_tasks
  names = [n.strip() for n in missing.split(",") if n.strip()]
  hints = [errors.did_you_mean(n, known) for n in names]
  said = "; ".join(f"{n!r}.{hint}" if hint else repr(n) for n, hint in zip(names, hints))
  return errors.UsageError(
      f"lm-eval has no task {said}", where="--tasks",
      fix="`t5tune harness ls tasks` lists them (with --include_path DIR for your own)")


def _option(args: Sequence[str], name: str) -> str | None:
  """The value of `name` among the harness's arguments (`--name VALUE` or `--name=VALUE`)."""
  for i, arg in enumerate(args):
    if arg == name and i + 1 < len(args):
      return args[i + 1]
    if arg.startswith(name + "="):
      return arg[len(name) + 1:]
  return None
