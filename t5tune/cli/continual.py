"""`t5tune continual`: trains a config's stages in sequence in one workdir and prints the accuracy matrix.

    t5tune continual --config=experiments/continual/config.py --workdir=runs/continual
    t5tune continual --config=experiments/continual/config.py --workdir=runs/continual \\
        --export_to=exported --merge=s1,s3        # per-stage LoRA: merge the chosen stages

Rerunning in the same workdir resumes: finished stages are skipped, an
unfinished one resumes from its last checkpoint (see t5tune.train.continual).
"""
from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from t5tune import errors
from t5tune.cli import arguments
from t5tune.cli import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Continual config file (with stages), e.g. experiments/continual/config.py.",
    lock_config=True, allow_override=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run (stages/NAME/... inside).", allow_override=True)
_EXPORT_TO = flags.DEFINE_string(
    "export_to", None, "After the run, write a Hugging Face T5 directory here (per-stage LoRA).", allow_override=True)
_MERGE = flags.DEFINE_list("merge", None, "Stages whose LoRA the export merges (default: all).", allow_override=True)


def main(argv):
  arguments.no_extra_args(argv, "continual")
  arguments.require([_CONFIG, _WORKDIR], "continual")
  import jax
  from t5tune.train import continual
  config = _CONFIG.value
  common.import_modules(config.experiment.data.modules, where="config.experiment.data.modules")
  run = continual.Continual(config, _WORKDIR.value)  # checks the stages before anything runs
  if _EXPORT_TO.value and not config.lora_per_stage:
    raise errors.UsageError("there is no per-stage LoRA to merge", where="--export_to",
                            fix="set config.lora_per_stage (or convert a stage's final/ directory)")
  summary = run.run()
  if _EXPORT_TO.value:
    run.export(_EXPORT_TO.value, _MERGE.value or run.order)
  if jax.process_index() == 0:
    print(summary["table"])
    print(json.dumps({k: summary[k] for k in ("acc", "bwt", "fwt", "forgetting", "R", "initial")}))
