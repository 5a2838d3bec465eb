"""Deterministic random-token batches with the data layer's save/restore protocol.

Batch k depends only on (seed, k), so a resumed run sees exactly the batches
an uninterrupted one does. For benchmarks and smoke runs that should not wait
for the input pipeline:

    --config.data.iterator_factory=t5tune.train.synthetic:make_iterator
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from t5tune import atomic
from t5tune import sharding


class SyntheticIterator:
  """Unpacked encoder-decoder batches of random tokens with random lengths."""

  def __init__(self, *, batch_size: int, inputs_length: int, targets_length: int,
               vocab_size: int, seed: int, mesh, nan_at: int | None = None):
    self.batch_size = batch_size
    self.inputs_length = inputs_length
    self.targets_length = targets_length
    self.vocab_size = vocab_size
    self.seed = seed
    self.mesh = mesh
    self.nan_at = nan_at  # a batch whose loss weights are NaN (fault injection)
    self.position = 0

  def __iter__(self):
    return self

  def host_batch(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, index])
    b, l, t = self.batch_size, self.inputs_length, self.targets_length
    enc = rng.integers(2, self.vocab_size, (b, l), dtype=np.int32)
    enc[np.arange(l)[None] >= rng.integers(l // 2, l + 1, (b, 1))] = 0
    tgt = rng.integers(2, self.vocab_size, (b, t), dtype=np.int32)
    tgt[np.arange(t)[None] >= rng.integers(2, t + 1, (b, 1))] = 0
    dec_in = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], axis=1)
    weights = (tgt > 0).astype(np.float32)
    if self.nan_at is not None and index == self.nan_at:
      weights[0, 0] = np.nan
    return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
            "decoder_target_tokens": tgt, "decoder_loss_weights": weights}

  def __next__(self):
    host = self.host_batch(self.position)
    self.position += 1
    return {k: jax.make_array_from_callback(
        v.shape, sharding.batch_sharding(self.mesh, v.ndim), lambda idx, v=v: v[idx])
            for k, v in host.items()}

  def save(self, directory: str) -> None:
    atomic.write_json(os.path.join(directory, "iterator.json"),
                      {"position": self.position, "seed": self.seed, "batch_size": self.batch_size})

  def restore(self, directory: str) -> None:
    with open(os.path.join(directory, "iterator.json")) as f:
      saved = json.load(f)
    for key in ("seed", "batch_size"):
      if saved[key] != getattr(self, key):
        raise ValueError(f"data iterator: {key} changed from {saved[key]} to {getattr(self, key)}")
    self.position = saved["position"]


def make_iterator(config, mesh, split: str, *, cls=SyntheticIterator) -> SyntheticIterator:
  """The `config.data.iterator_factory` entry point (the eval split gets another seed)."""
  from t5tune.train import experiment
  return cls(
      batch_size=config.data.batch_size, inputs_length=config.data.inputs_length,
      targets_length=config.data.targets_length,
      vocab_size=experiment.resolve_model(config).vocab_size,
      seed=config.seed + (0 if split == "train" else 1000), mesh=mesh)
