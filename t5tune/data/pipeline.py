"""The input pipeline: a mixture or task to global, sharded `jax.Array` batches, resumably.

    it = pipeline.make_iterator("flan_mini", split="train",
                                feature_lengths={"inputs": 512, "targets": 128},
                                batch_size=64, pack=True, seed=0, mesh=mesh)
    batch = next(it)          # dict of global jax.Arrays, batch over ('data', 'fsdp')
    it.save(ckpt_dir / "data")     # next to the model checkpoint, every process
    it.restore(ckpt_dir / "data")  # ValueError naming what changed, if anything did

Path of one batch: `seqio` mixture/task `get_dataset` (this process's shard,
`seqio.ShardInfo(jax.process_index(), jax.process_count())`, shuffled with
`seed`, repeated `num_epochs` times or forever) -> `seqio.EncDecFeatureConverter`
(packing on or off) -> tf.data batches of `batch_size / process_count` ->
`jax.make_array_from_process_local_data` with `t5tune.sharding.batch_sharding`.

Keys: `encoder_input_tokens`, `decoder_target_tokens`, `decoder_input_tokens`,
`decoder_loss_weights`, and when packed also `encoder_segment_ids`,
`encoder_positions`, `decoder_segment_ids`, `decoder_positions`.

Cached tasks: with `cache_dir=` (`config.data.cache_dir`) the tasks are read
from the offline cache `t5tune data cache` wrote there (seqio's
`use_cached=True`: TFRecord shards, each host reading whole shards), after
`t5tune.data.cache_check` confirmed each is complete, made with the task's
current vocabulary and templates, and in a shard count the hosts divide.
The examples and their templates are the uncached ones; their order is not
(the cache's shards were shuffled by Beam, and seqio shuffles the shard files
with the seed), so one epoch holds the same examples in another order.

Resuming: `save` writes the tf.data iterator state (`tf.train.Checkpoint`,
which includes shuffle and prefetch buffers) per process plus `spec.json`
(mixture, split, lengths, batch size, seed, packing, process count, batches
served). `restore` refuses a different spec, so a changed batch size or seed
is reported at once instead of failing late or being ignored.
`benchmarks/input_pipeline.py` measures the cost against replaying with
`.skip` (replay grows with the step; the checkpoint does not). Most of its size
is seqio's in-memory cache of small tasks and the per-task shuffle buffers.

Truncation is never silent: on creation the share of examples longer than
`feature_lengths` is measured per task (on up to `truncation_sample`
examples) and logged, once per process for a mixture, split and lengths (the
trainer builds a new evaluation iterator at every evaluation: measured and
logged again, a long run repeated the same lines every `eval_every` steps); it
is available as `iterator.truncation`.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator, Mapping

from absl import logging
import jax
import numpy as np
import seqio
import tensorflow as tf

from t5tune import atomic
from t5tune import sharding
from t5tune.data import cache_check
from t5tune.data import lengths
from t5tune.data import mixtures

SPEC_FILE = "spec.json"


def local_dataset(name: str, *, split: str, feature_lengths: Mapping[str, int],
                  local_batch_size: int, pack: bool, seed: int, shard: seqio.ShardInfo,
                  shuffle: bool = True, num_epochs: int | None = None,
                  cache_dir: str = "") -> tf.data.Dataset:
  """One process's batches as a tf.data.Dataset of numpy-able dicts (before jax).

  With `cache_dir`, the tasks are read from their offline cache there (`t5tune data cache`),
  after `cache_check.check_readable` (complete, same fingerprint, shards divisible by hosts).
  """
  provider = mixtures.get_provider(name)
  if cache_dir:
    cache_check.check_readable(mixtures.leaf_task_names([name]), split, cache_dir,
                               shard.num_shards)
  ds = provider.get_dataset(
      sequence_length=dict(feature_lengths), split=split, use_cached=bool(cache_dir),
      shuffle=shuffle, seed=seed, shard_info=shard, num_epochs=num_epochs)
  converter = seqio.EncDecFeatureConverter(pack=pack)
  ds = converter(ds, task_feature_lengths=dict(feature_lengths))
  return ds.batch(local_batch_size, drop_remainder=True).prefetch(2)


# (name, split, feature lengths, sample) -> `lengths.truncation`'s answer, measured once per process.
_TRUNCATION: dict[tuple, dict[str, dict[str, float]]] = {}


def _truncation(name: str, split: str, feature_lengths: Mapping[str, int],
                sample: int, use_cached: bool = False) -> dict[str, dict[str, float]]:
  """`lengths.truncation` of a mixture's split, logged as a warning the first time only."""
  key = (name, split, tuple(sorted(feature_lengths.items())), sample, use_cached)
  if key in _TRUNCATION:
    return _TRUNCATION[key]
  measured = _TRUNCATION[key] = lengths.truncation(name, split, feature_lengths,
                                                   max_examples=sample, use_cached=use_cached)
  for task, t in measured.items():
    if t["inputs"] or t["targets"]:
      logging.warning(
          "%s (%s): truncating %.1f%% of inputs at %d tokens and %.1f%% of"
          " targets at %d tokens (measured on %d examples)", task, split,
          100 * t["inputs"], feature_lengths["inputs"], 100 * t["targets"],
          feature_lengths["targets"], t["examples"])
  return measured


class BatchIterator:
  """Global-array batches from a seqio mixture or task; `save`/`restore` its position."""

  def __init__(self, name: str, *, split: str, feature_lengths: Mapping[str, int],
               batch_size: int, pack: bool, seed: int, mesh: jax.sharding.Mesh,
               shuffle: bool = True, num_epochs: int | None = None,
               truncation_sample: int = 2000, cache_dir: str = ""):
    if not isinstance(seed, int):
      raise TypeError(f"seed must be an int (the pipeline is deterministic for a seed), got {seed!r}")
    num_processes = jax.process_count()
    dp = sharding.data_parallel_size(mesh)
    multiple = math.lcm(num_processes, dp)
    if batch_size <= 0 or batch_size % multiple:
      raise ValueError(
          f"batch_size={batch_size} must be a positive multiple of both the number"
          f" of processes ({num_processes}, each feeds its own shard) and the"
          f" data-parallel size ({dp} = mesh 'data' x 'fsdp'); use a multiple of"
          f" {multiple}")
    missing = {"inputs", "targets"} - set(feature_lengths)
    if missing:
      raise ValueError(f"feature_lengths needs {sorted(missing)}; got {dict(feature_lengths)}")
    self.name = name
    self.mesh = mesh
    self.batch_size = batch_size
    self.local_batch_size = batch_size // num_processes
    self.spec = {
        "name": name, "split": split,
        "feature_lengths": {k: int(v) for k, v in sorted(feature_lengths.items())},
        "batch_size": batch_size, "pack": bool(pack), "seed": seed,
        "shuffle": bool(shuffle), "num_epochs": num_epochs,
        "process_count": num_processes,
    }
    if cache_dir:  # only then: iterators saved before caches existed still resume
      self.spec["cache_dir"] = cache_dir
    self.step = 0
    shard = seqio.ShardInfo(index=jax.process_index(), num_shards=num_processes)
    self.dataset = local_dataset(
        name, split=split, feature_lengths=feature_lengths,
        local_batch_size=self.local_batch_size, pack=pack, seed=seed,
        shard=shard, shuffle=shuffle, num_epochs=num_epochs, cache_dir=cache_dir)
    self._tf_iterator = iter(self.dataset)
    self.truncation = _truncation(name, split, self.spec["feature_lengths"], truncation_sample,
                                  use_cached=bool(cache_dir))

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    local = next(self._tf_iterator)  # StopIteration ends a finite epoch count
    self.step += 1
    return {k: self._to_global(np.asarray(v)) for k, v in local.items()}

  def _to_global(self, local: np.ndarray) -> jax.Array:
    global_shape = (self.batch_size,) + local.shape[1:]
    return jax.make_array_from_process_local_data(
        sharding.batch_sharding(self.mesh, local.ndim), local, global_shape)

  def _prefix(self, directory: str) -> str:
    return os.path.join(directory, f"process_{jax.process_index()}", "iterator")

  def save(self, directory: str | os.PathLike) -> None:
    """Writes this process's iterator state and (process 0) the spec into `directory`."""
    directory = os.fspath(directory)
    os.makedirs(os.path.dirname(self._prefix(directory)), exist_ok=True)
    tf.train.Checkpoint(iterator=self._tf_iterator).write(self._prefix(directory))
    if jax.process_index() == 0:
      atomic.write_json(os.path.join(directory, SPEC_FILE), {**self.spec, "step": self.step},
                        indent=1, sort_keys=True)

  def restore(self, directory: str | os.PathLike) -> None:
    """Continues from a saved position; ValueError naming what differs from the save."""
    directory = os.fspath(directory)
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no saved data iterator here")
    with open(path) as f:
      saved = json.load(f)
    changed = [f"{k}: saved {saved.get(k)!r}, now {self.spec.get(k)!r}"
               for k in [*self.spec, *({"cache_dir"} - set(self.spec))]
               if saved.get(k) != self.spec.get(k)]
    if changed:
      raise ValueError(
          f"cannot resume the data iterator from {directory}: "
          + "; ".join(changed)
          + ". Resume with the saved settings, or start the data from scratch"
          " (a changed batch size or seed would not replay the same batches)")
    tf.train.Checkpoint(iterator=self._tf_iterator).read(
        self._prefix(directory)).assert_consumed()
    self.step = int(saved["step"])


def make_iterator(name: str, *, split: str, feature_lengths: Mapping[str, int],
                  batch_size: int, pack: bool, seed: int, mesh: jax.sharding.Mesh,
                  shuffle: bool = True, num_epochs: int | None = None,
                  **kwargs: Any) -> BatchIterator:
  """The `BatchIterator` for a registered mixture or task (see the module docstring)."""
  return BatchIterator(name, split=split, feature_lengths=feature_lengths,
                       batch_size=batch_size, pack=pack, seed=seed, mesh=mesh,
                       shuffle=shuffle, num_epochs=num_epochs, **kwargs)
