"""Token lengths of a task's examples and the truncation they meet at given feature lengths.

    inputs, targets, examples = lengths.token_lengths(tasks.get_info("my_qa"), "train")
    lengths.truncation("my_mix", "train", {"inputs": 512, "targets": 128})
    # {"my_qa": {"inputs": 0.03, "targets": 0.0, "examples": 2000}, ...}

Lengths count the EOS the task appends. The input pipeline logs the
truncation of every task it feeds; the data report (`t5tune.quality.report`)
shows the lengths' percentiles and histograms.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import seqio

from t5tune.data import mixtures
from t5tune.data import tasks as tasks_lib


def token_lengths(info: tasks_lib.TaskInfo, split: str, max_examples: int | None = None):
  """(input lengths, target lengths, examples) of an instruction task's split, EOS included."""
  examples = info.source.prepared(split).examples
  if max_examples is not None:
    examples = examples[:max_examples]
  encode = info.source.vocabulary.encode
  inputs = np.array([len(encode(ex["inputs"])) + 1 for ex in examples])
  targets = np.array([len(encode(ex["targets"])) + 1 for ex in examples])
  return inputs, targets, examples


def cached_token_lengths(task_name: str, split: str, max_examples: int | None = None):
  """(input lengths, target lengths) of a cached task's split, EOS included, read from the cache
  (the training host may not have the source data)."""
  ds = seqio.get_mixture_or_task(task_name).get_dataset(
      None, split=split, use_cached=True, shuffle=False, num_epochs=1)
  if max_examples is not None:
    ds = ds.take(max_examples)
  pairs = [(len(ex["inputs"]), len(ex["targets"])) for ex in ds.as_numpy_iterator()]
  inputs, targets = (np.array(side, dtype=np.int64) for side in zip(*pairs)) if pairs else (
      np.zeros(0, np.int64), np.zeros(0, np.int64))
  return inputs, targets


def truncation(name: str, split: str, feature_lengths: Mapping[str, int],
               max_examples: int | None = None,
               use_cached: bool = False) -> dict[str, dict[str, float]]:
  """Per t5tune task of `name`: the share of inputs/targets longer than feature_lengths.

  A pretraining task's objective cuts its text into chunks that fit, so
  nothing is truncated: its entry names the objective and the chunk length.
  With `use_cached` the lengths are measured on the tasks' offline caches.
  """
  out = {}
  ours = set(tasks_lib.task_names())
  for task_name in mixtures.leaf_task_names([name]):
    if task_name not in ours or split not in seqio.get_mixture_or_task(task_name).splits:
      continue
    info = tasks_lib.get_info(task_name)
    if info.kind == tasks_lib.PRETRAINING:
      out[task_name] = {"inputs": 0.0, "targets": 0.0, "objective": info.objective.name,
                        "chunk_tokens": info.objective.chunk_length(feature_lengths)}
      continue
    if use_cached:
      inputs, targets = cached_token_lengths(task_name, split, max_examples)
    else:
      inputs, targets, _ = token_lengths(info, split, max_examples)
    out[task_name] = {
        "inputs": float(np.mean(inputs > feature_lengths["inputs"])),
        "targets": float(np.mean(targets > feature_lengths["targets"])),
        "examples": int(len(inputs))}
  return out
