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
