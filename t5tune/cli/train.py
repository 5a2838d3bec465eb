"""`t5tune train`: trains from an experiment config file, resuming if the workdir has checkpoints.

    t5tune train --config=configs/experiments/tiny.py --workdir=runs/tiny \\
        --config.train.steps=200 --config.mesh.shape='(2,2,2)' \\
        --config.optimizer.name=adamw --config.model.overrides.dropout_rate=0.1

`--config=FILE:ARG` passes ARG to the file's `get_config(arg)`. Overrides are
checked against the locked config before anything runs: a misspelt key fails
with the closest valid one, a wrong type with the expected one. Several
processes (multi-host) pass --coordinator_address, --num_processes and
--process_id (or nothing on platforms where jax.distributed finds them).
"""
from __future__ import annotations

import json

from absl import flags
from absl import logging
from ml_collections import config_flags

from t5tune.cli import arguments
from t5tune.cli import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/experiments/NAME.py[:ARG]).",
    lock_config=True, allow_override=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for config.json, metrics.jsonl, tb/ and checkpoints/.", allow_override=True)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-process training.", allow_override=True)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.", allow_override=True)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.", allow_override=True)
_SHOW_CONFIG = flags.DEFINE_bool(
    "show_config", False, "Print the resolved config (file + overrides), one key a line with its"
    " meaning, and exit without training.", allow_override=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with auto-detected settings"
    " (TPU pods, SLURM) even without --coordinator_address.", allow_override=True)


def show_config(config) -> str:
  from t5tune.cli import config_help
  from t5tune.infer import evaluation
  from t5tune.train import experiment
  table = config_help.descriptions(experiment.default_config, evaluation.default_config)
  return "\n".join(config_help.render(config, table))


def _check_data(config) -> None:
  """The mixture is registered (did-you-mean) and its tasks have the train and eval splits."""
  if not config.data.get("mixture") or config.data.get("iterator_factory"):
    return
  import seqio
  from t5tune import errors
  from t5tune.data import mixtures
  provider = mixtures.get_provider(config.data.mixture)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  splits = [("train", "config.data.mixture")]
  if config.eval.every and config.data.get("eval_split"):
    splits.append((config.data.eval_split, "config.data.eval_split"))
  for task in tasks:
    for split, key in splits:
      if split not in task.splits:
        raise errors.UsageError(
            f"task {task.name!r} of {config.data.mixture!r} has no {split!r} split"
            f" (it has {list(task.splits)})", where=key,
            fix="give a split its tasks have (or --config.eval.every=0 to skip evaluation)")
  # The tasks' vocabulary is init_from's (when it carries one): t5tune.flan_tasks tokenises with
  # bytes unless told otherwise, and a run would tune a SentencePiece checkpoint on byte ids.
  if config.init_from:
    from t5tune.data import vocab
    for task in tasks:
      for feature in task.output_features.values():
        vocab.check_agrees_with_model_dir(task.name, feature.vocabulary, config.init_from,
                                          where="config.init_from")
  # A collection's TFDS data must be prepared: otherwise TFDS would try a download (minutes
  # of retries offline) and leave a partial TFDS directory and a workdir behind.
  from t5tune.data.collections import prepare
  prepare.check_tasks([task.name for task in tasks])


def main(argv):
  arguments.no_extra_args(argv, "train")
  arguments.require([_CONFIG], "train")
  if _SHOW_CONFIG.value:
    print(show_config(_CONFIG.value))
    return
  arguments.require([_WORKDIR], "train")
  import jax
  if _COORDINATOR.value or _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from t5tune.train import build
  from t5tune.train import trainer
  config = _CONFIG.value
  # Everything is checked before the trainer writes the workdir: the config's values
  # first (build.resolve: pure, and quick, where importing the task modules loads
  # TensorFlow and seqio, seconds), then the modules and the mixture and split they
  # must register. The Trainer is handed the mesh built here.
  mesh, _ = build.resolve(config)
  common.import_modules(config.data.modules, where="config.data.modules")
  _check_data(config)
  tr = trainer.Trainer(config, _WORKDIR.value, mesh=mesh)
  logging.debug("config:\n%s", config)  # the workdir's config.json has it; --show_config prints it
  result = tr.run()
  if jax.process_index() == 0:
    print(json.dumps({"step": result.step, "stop_reason": result.stop_reason,
                      "compile_seconds": round(result.compile_seconds, 3),
                      **result.train_metrics, **result.eval_metrics}))
