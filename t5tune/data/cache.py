"""`t5tune data cache`: registered tasks written in seqio's cached-task layout by Apache Beam.

    from t5tune.data import cache
    cache.run(cache.select(mixture="t5tune_demo_mix"), "/data/cache",
              beam_args=["--runner=DirectRunner"], num_shards=64)

Per task and split, in `OUTPUT/<task dir>/` (seqio's names): TFRecord shards
of tf.Examples after a global shuffle (`<split>.tfrecord-SSSSS-of-NNNNN`),
`info.<split>.json` (features, `num_shards`, and t5tune's fingerprint under
`t5tune`, see `t5tune.data.cache_check`), `stats.<split>.json` (examples and
token counts), and `COMPLETED`, written last, only when every other file of
the task is final. seqio reads it with `use_cached=True` once the directory is
a cache dir (`seqio.add_global_cache_dirs`); t5tune's pipeline does so for
`config.data.cache_dir`.

The Beam transforms are seqio's own (`seqio.beam_utils`): `PreprocessTask`
runs each task's preprocessors up to its `seqio.CacheDatasetPlaceholder`
(t5tune's tasks place it after templating and tokenization, see
`t5tune.data.tasks`), `WriteExampleTfRecord`, `GetInfo`, `GetStats` and
`WriteJson` write the files. They fit t5tune's tasks unchanged (a t5tune task
is an ordinary seqio Task), and reusing them keeps the layout byte-for-byte
what seqio's reader expects; t5tune adds the task selection, the fingerprint,
the overwrite/resume rules and the one-line errors.

Safety: a task whose directory has `COMPLETED` is skipped when its
fingerprint matches (rerunning an interrupted command resumes it) and
refused when it differs, unless `overwrite`; a directory without `COMPLETED`
(an interrupted run) is removed and written again; seqio never reads it.

Workers (Dataflow, Flink, Spark) import t5tune and the modules that register
the tasks (`modules`): install t5tune on them (`--setup_file=./setup.py` from
a checkout, or `--requirements_file`); see docs/data.md.
"""
from __future__ import annotations

import json
import os
import re
from typing import Sequence

import seqio
import tensorflow as tf

from t5tune import errors
from t5tune.data import cache_check
from t5tune.data import mixtures

DEFAULT_NUM_SHARDS = 64  # seqio's cache_tasks_main default (--min_shards): divisible by most host counts


def select(mixture: str | None = None, tasks: str | None = None) -> list[str]:
  """The task names to cache: a mixture's tasks, or the registered tasks matching a regex."""
  if bool(mixture) == bool(tasks):
    raise errors.UsageError("give exactly one of --mixture and --tasks", where="--mixture/--tasks",
                            fix="--mixture=NAME (its tasks) or --tasks=REGEX (task names)")
  if mixture:
    return mixtures.leaf_task_names([mixture])
  try:
    pattern = re.compile(tasks)
  except re.error as e:
    raise errors.UsageError(f"--tasks={tasks} is not a regular expression ({e})",
                            where="--tasks", fix="give a Python regex, e.g. 'flan_.*'") from None
  names = [n for n in sorted(seqio.TaskRegistry.names()) if pattern.fullmatch(n)]
  if not names:
    raise errors.UsageError(f"--tasks={tasks} matches no registered task", where="--tasks",
                            fix="check `t5tune data list` (and --module)")
  return names


def task_dir(output: str, name: str) -> str:
  """The directory of task `name`'s cache under `output` (seqio's name for it)."""
  return os.path.join(output, seqio.utils.get_task_dir_from_name(name))


def _cached_fingerprint(directory: str, split: str) -> dict | None:
  """The fingerprint a complete cache's split was written with; None if it has none."""
  path = cache_check.info_path(directory, split)
  with tf.io.gfile.GFile(path) as f:
    return json.load(f).get(cache_check.FINGERPRINT_KEY)


def plan(names: Sequence[str], output: str, splits: Sequence[str] | None,
         overwrite: bool) -> list[tuple[seqio.Task, list[str], str]]:
  """(task, splits, what to do) per task: "write", "skip" (complete, same fingerprint) or a
  refusal as an InputError before anything is written."""
  out = []
  for name in names:
    task = seqio.TaskRegistry.get(name)
    if not task.supports_caching:
      raise errors.UsageError(f"task {name!r} has no seqio.CacheDatasetPlaceholder",
                              where=f"task {name!r}", fix="leave it out of --tasks/--mixture")
    wanted = list(task.splits) if not splits else [s for s in splits if s in task.splits]
    if not wanted:
      raise errors.UsageError(f"task {name!r} has none of --splits={','.join(splits)}",
                              where="--splits", fix=f"its splits are {list(task.splits)}")
    directory = task_dir(output, name)
    action = "write"
    if tf.io.gfile.exists(os.path.join(directory, cache_check.COMPLETED)) and not overwrite:
      missing = [s for s in wanted if not tf.io.gfile.exists(cache_check.info_path(directory, s))]
      if missing:  # COMPLETED covers the whole task: its splits are written together
        raise errors.InputError(f"task {name!r} is already cached without splits {missing}",
                                where=directory, fix="pass --overwrite to write it again with"
                                f" --splits={','.join(wanted)}")
      for split in wanted:
        diff = cache_check.difference(_cached_fingerprint(directory, split) or {},
                                      cache_check.fingerprint(task))
        if diff:
          raise errors.InputError(f"task {name!r} is already cached with other settings ({diff})",
                                  where=directory, fix="pass --overwrite to replace it")
      action = "skip"
    out.append((task, wanted, action))
  return out


def _add_fingerprint(info: dict, fingerprint: dict) -> dict:
  return {**info, cache_check.FINGERPRINT_KEY: fingerprint}


def _add_task(pipeline, task: seqio.Task, splits: Sequence[str], directory: str,
              num_shards: int, modules: Sequence[str]) -> None:
  """The Beam transforms that write one task's splits and, after all of them, COMPLETED."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from seqio import beam_utils  # pylint: disable=g-import-not-at-top
  fingerprint = cache_check.fingerprint(task)
  done = []
  for split in splits:
    label = f"{task.name}_{split}"
    examples = (
        pipeline
        | f"{label}_preprocess" >> beam_utils.PreprocessTask(task, split,
                                                             modules_to_import=list(modules))
        | f"{label}_global_shuffle" >> beam.Reshuffle())
    done.append(examples | f"{label}_tfrecords" >> beam_utils.WriteExampleTfRecord(
        seqio.utils.get_cached_tfrecord_prefix(directory, split), num_shards=num_shards))
    done.append(
        examples
        | f"{label}_info" >> beam_utils.GetInfo(num_shards)
        | f"{label}_fingerprint" >> beam.Map(_add_fingerprint, fingerprint)
        | f"{label}_write_info" >> beam_utils.WriteJson(cache_check.info_path(directory, split)))
    done.append(
        examples
        | f"{label}_stats" >> beam_utils.GetStats(task.output_features)
        | f"{label}_write_stats" >> beam_utils.WriteJson(
            seqio.utils.get_cached_stats_path(directory, split)))
  # Each write emits its final file names only after it has finalized them, so this marker
  # (a file of no lines) cannot appear before the rest of the task's files.
  _ = (done
       | f"{task.name}_all_written" >> beam.Flatten()
       | f"{task.name}_no_lines" >> beam.Filter(lambda _: False)
       | f"{task.name}_completed" >> beam.io.WriteToText(
           os.path.join(directory, cache_check.COMPLETED), num_shards=1,
           shard_name_template="", append_trailing_newlines=False))


def run(names: Sequence[str], output: str, *, splits: Sequence[str] | None = None,
        beam_args: Sequence[str] = (), overwrite: bool = False, modules: Sequence[str] = (),
        num_shards: int = DEFAULT_NUM_SHARDS) -> dict[str, str]:
  """Caches tasks `names` into `output` with Beam (`beam_args`: its pipeline options, unchanged).

  Returns {task: "written" | "skipped"}. Errors before the pipeline starts are
  t5tune errors naming the flag or directory; nothing is written then.
  """
  if num_shards < 1:
    raise errors.UsageError(f"--num_shards={num_shards} must be at least 1", where="--num_shards",
                            fix="give the number of TFRecord files per split, e.g. 64")
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  options = beam.options.pipeline_options.PipelineOptions(list(beam_args))
  work = plan(names, output, splits, overwrite)
  todo = [(task, s) for task, s, action in work if action == "write"]
  if todo:
    tf.io.gfile.makedirs(output)
    for task, _ in todo:  # an interrupted run's files, or a cache --overwrite replaces
      directory = task_dir(output, task.name)
      if tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(directory)
    with beam.Pipeline(options=options) as pipeline:
      for task, task_splits in todo:
        _add_task(pipeline, task, task_splits, task_dir(output, task.name), num_shards, modules)
  return {task.name: ("written" if action == "write" else "skipped") for task, _, action in work}


def unknown_beam_options(args: Sequence[str]) -> list[str]:
  """The `--name`s of `args` that Beam's PipelineOptions do not know (to refuse them in one line)."""
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  options = pipeline_options.PipelineOptions(list(args))
  known = options.get_all_options(drop_default=False, retain_unknown_options=False)
  every = options.get_all_options(drop_default=False, retain_unknown_options=True)
  return sorted(set(every) - set(known))
