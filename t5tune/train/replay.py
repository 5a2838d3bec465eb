"""Replay for continual tuning: a bounded buffer of each earlier task, mixed in by rate as a seqio mixture.

A stage with `replay_rate` r trains on a seqio Mixture in which the stage's
own tasks share 1 - r of the examples and the replay tasks share r (equally
within each group). A replay task is a seqio Task with the earlier task's
preprocessors (templates, tokenisation) whose train split is the buffer: the
first `cap` raw records of the earlier task's train split after a shuffle
with a fixed seed, so the same seed always replays the same examples.
Its validation split is the earlier task's own.
"""
from __future__ import annotations

from typing import Sequence

import seqio
import tensorflow as tf

from t5tune import data
from t5tune import errors


def replay_task_name(task: str, cap: int, seed: int) -> str:
  return f"{task}__replay_cap{cap}_seed{seed}"


def buffer_dataset(task: str, cap: int, seed: int) -> tf.data.Dataset:
  """The replay buffer: `cap` raw train records of `task` chosen by `seed` (all if cap is 0)."""
  source = seqio.get_mixture_or_task(task).source
  ds = source.get_dataset("train", shuffle=False)
  if cap:
    # A full shuffle of the source (the buffer holds all of it): which records
    # are chosen depends on the seed alone, never on a shuffle window.
    n = source.num_input_examples("train") or 1 << 20
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=False).take(cap)
  return ds


def register_replay_task(task: str, cap: int, seed: int) -> str:
  """Registers (once) the replay task of `task`; returns its name."""
  name = replay_task_name(task, cap, seed)
  buffer_seed = seed
  if name in seqio.TaskRegistry.names():
    return name
  original = seqio.get_mixture_or_task(task)

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed  # the mixture shuffles; the buffer is fixed by the outer `seed`
    if split == "train":
      return buffer_dataset(task, cap, buffer_seed)
    return original.source.get_dataset(split, shuffle=False)

  # No metric functions: replay tasks are trained on; the earlier task itself is evaluated.
  seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=tuple(original.splits)),
      preprocessors=list(original.preprocessors), output_features=original.output_features)
  return name


def register_stage_mixture(name: str, tasks: Sequence[str], earlier: Sequence[str], *,
                           replay_rate: float, cap: int, seed: int) -> str:
  """The stage's mixture: `tasks` at 1 - replay_rate, replays of `earlier` at replay_rate."""
  if not 0.0 <= replay_rate < 1.0:
    raise errors.UsageError(f"replay_rate={replay_rate} is outside [0, 1)",
                            where=f"the stage of mixture {name}", fix="use a rate in [0, 1)")
  rates = {t: (1.0 - replay_rate) / len(tasks) for t in tasks}
  if replay_rate and earlier:
    for task in earlier:
      rates[register_replay_task(task, cap, seed)] = replay_rate / len(earlier)
  data.register_mixture(name, list(rates), rate=rates, overwrite=True)
  return name
