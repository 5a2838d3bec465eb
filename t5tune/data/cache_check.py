"""What a cached task must match to be read: its fingerprint, its COMPLETED marker, its shard count.

`t5tune data cache` (`t5tune.data.cache`) writes seqio's cached-task layout
and adds a `t5tune` key to every `info.<split>.json`: the fingerprint of what
produced the examples before the task's `seqio.CacheDatasetPlaceholder`
(t5tune version, cache format, vocabulary, templates and rendering settings,
pretraining reader, the preprocessors before the placeholder). seqio ignores
the key; `check_readable` compares it with the task as registered now, so a
cache made with another vocabulary or template set is refused in one line
naming the difference instead of training on stale tokens.

seqio reads a task directory only when it holds `COMPLETED` (the marker the
Beam pipeline writes last); `check_readable` says so in one line where seqio
would fail with a bare assertion, and checks the shard count against the
number of hosts (each host reads whole shards: `num_shards % hosts == 0`).

This module imports neither Apache Beam nor the writer: reading needs neither.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence

import seqio
import tensorflow as tf

import t5tune
from t5tune import errors

# The layout t5tune writes beside seqio's (the `t5tune` key); bump when it changes.
CACHE_FORMAT = 1
FINGERPRINT_KEY = "t5tune"
COMPLETED = "COMPLETED"


def _digest(value: Any) -> str:
  text = json.dumps(value, sort_keys=True, default=repr)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_vocabulary(vocabulary: seqio.Vocabulary) -> str:
  """The vocabulary as a short string that changes when its ids change (a model file's hash)."""
  extra = f" extra_ids={vocabulary.extra_ids}"
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    model = hashlib.sha256(vocabulary.sp_model).hexdigest()[:16]
    return f"sentencepiece sha256:{model}{extra}"
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return "byte" + extra
  return f"{type(vocabulary).__name__} size={vocabulary.vocab_size}{extra}"


def fingerprint(task: seqio.Task) -> dict[str, Any]:
  """What produced `task`'s cached examples, as a flat dict of short strings."""
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  vocabularies = sorted({describe_vocabulary(f.vocabulary) for f in task.output_features.values()})
  step = task._cache_step_idx or 0  # pylint: disable=protected-access
  out = {
      "t5tune_version": t5tune.__version__,
      "cache_format": CACHE_FORMAT,
      "vocabulary": ", ".join(vocabularies),
      "preprocessors": ",".join(getattr(p, "__name__", type(p).__name__)
                                for p in task.preprocessors[:step]),
  }
  try:
    info = tasks_lib.get_info(task.name)
  except KeyError:  # a plain seqio task: version, vocabulary and preprocessors only
    return out
  if info.kind == tasks_lib.INSTRUCTION:
    spec = info.source.spec
    out["templates"] = _digest([(t.name, t.kind, t.inputs, t.targets) for t in spec.templates])
    out["rendering"] = _digest({
        "seed": spec.seed, "few_shot": spec.few_shot, "no_template": spec.no_template,
        "options_style": spec.options_style, "formats": spec.formats, "dedup": spec.dedup,
        "max_input_tokens": spec.max_input_tokens, "max_target_tokens": spec.max_target_tokens})
  else:
    out["text_source"] = type(info.source).__name__
  return out


def info_path(task_dir: str, split: str) -> str:
  """seqio's `info.<split>.json` of a cached task."""
  return seqio.utils.get_cached_info_path(task_dir, split)


def read_info(task_dir: str, split: str) -> dict[str, Any]:
  """The split's info dict; an InputError naming the file if the split was not cached."""
  path = info_path(task_dir, split)
  if not tf.io.gfile.exists(path):
    raise errors.InputError(f"the cache has no split {split!r}", where=path,
                            fix=f"cache that split: t5tune data cache ... --splits={split}")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def difference(cached: dict[str, Any], current: dict[str, Any]) -> str | None:
  """The first fingerprint entry that differs, as 'KEY: cache has A, this run has B'; or None."""
  for key in sorted(set(cached) | set(current)):
    if cached.get(key) != current.get(key):
      return f"{key}: the cache has {cached.get(key)!r}, this run has {current.get(key)!r}"
  return None


def check_fingerprint(task: seqio.Task, task_dir: str, split: str) -> dict[str, Any]:
  """The split's info dict; an InputError in one line if it was made by something else."""
  info = read_info(task_dir, split)
  where = info_path(task_dir, split)
  cached = info.get(FINGERPRINT_KEY)
  if cached is None:
    raise errors.InputError(f"task {task.name!r}: the cache was not written by t5tune data cache"
                            " (no fingerprint)", where=where,
                            fix="rebuild it with `t5tune data cache --overwrite`")
  diff = difference(cached, fingerprint(task))
  if diff:
    raise errors.InputError(f"task {task.name!r} was cached with other settings ({diff})",
                            where=where, fix="rebuild it with `t5tune data cache --overwrite`"
                            " or read it with the settings it was made with")
  return info


def use_cache_dir(cache_dir: str) -> None:
  """Makes seqio look for cached tasks in `cache_dir` (idempotent)."""
  if cache_dir and cache_dir not in seqio.utils.get_global_cache_dirs():
    seqio.add_global_cache_dirs([cache_dir])


def check_readable(task_names: Sequence[str], split: str, cache_dir: str,
                   process_count: int = 1) -> None:
  """Every task of `task_names` has a complete cache of `split` in `cache_dir`, made with its
  current settings, in a number of shards the hosts divide; else one InputError."""
  use_cache_dir(cache_dir)
  for name in task_names:
    task = seqio.TaskRegistry.get(name)
    task_dir = os.path.join(cache_dir, seqio.utils.get_task_dir_from_name(name))
    if not task.supports_caching:
      raise errors.UsageError(f"task {name!r} has no seqio.CacheDatasetPlaceholder: it cannot"
                              " be read from a cache", where="config.data.cache_dir",
                              fix="clear config.data.cache_dir, or add the placeholder")
    if not tf.io.gfile.exists(os.path.join(task_dir, COMPLETED)):
      state = ("is incomplete (no COMPLETED: the cache run was interrupted or is running)"
               if tf.io.gfile.exists(task_dir) else "is missing")
      raise errors.InputError(f"the cache of task {name!r} {state}", where=task_dir,
                              fix=f"run `t5tune data cache --tasks={name} --output={cache_dir}`")
    info = check_fingerprint(task, task_dir, split)
    if task.cache_dir != task_dir:  # seqio keeps the first cache it found for a task
      raise errors.UsageError(f"task {name!r} is read from another cache ({task.cache_dir})",
                              where="config.data.cache_dir",
                              fix="name one cache directory per process")
    shards = int(info["num_shards"])
    if shards % process_count:
      raise errors.UsageError(
          f"task {name!r} has {shards} cache shards, not divisible by the {process_count} hosts"
          " (each host reads whole shards)", where=info_path(task_dir, split),
          fix=f"rebuild with `t5tune data cache --num_shards=` a multiple of {process_count}")
