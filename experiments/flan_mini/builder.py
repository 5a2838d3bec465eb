"""The TFDS dataset builder of the flan_mini collection: builds offline, from a seed.

One builder config per task. `flan_mini/sent_movie` is seed 0;
`flan_mini/sent_movie_seed3` is the same task generated from seed 3 (any
seed, made on request). Nothing is downloaded: records come from
`experiments.flan_mini.collection`.

    from experiments.flan_mini import builder
    builder.build(["sent_movie"], seed=0, data_dir="~/tensorflow_datasets")
    tfds.load("flan_mini/sent_movie", split="test", data_dir=...)  # after importing builder

Importing this module registers the builder with TFDS.
"""
from __future__ import annotations

import dataclasses
import os
import re

import tensorflow_datasets as tfds

from experiments.flan_mini import collection

VERSION_STR = "1.1.0"
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")
_SEEDED = re.compile(r"^(?P<task>[a-z0-9_]+?)_seed(?P<seed>\d+)$")


@dataclasses.dataclass(eq=False)
class FlanMiniConfig(tfds.core.BuilderConfig):
  """A task of the collection and the seed it is generated from."""
  task: str = ""
  seed: int = 0


def config_name(task: str, seed: int) -> str:
  return task if seed == 0 else f"{task}_seed{seed}"


def _config(task: str, seed: int) -> FlanMiniConfig:
  spec = collection.TASKS[task]
  return FlanMiniConfig(
      name=config_name(task, seed), version=VERSION_STR, task=task, seed=seed,
      description=f"{spec.cluster}: {spec.description} (seed {seed})")


class FlanMini(tfds.core.GeneratorBasedBuilder):
  """flan_mini: FLAN in miniature, a generated instruction collection (30 tasks, 10 clusters)."""

  VERSION = tfds.core.Version(VERSION_STR)
  RELEASE_NOTES = {"1.0.0": "30 tasks in 10 clusters; 800/50/100 records per split at most.",
                   VERSION_STR: "34 tasks; 800/50/400 records per split at most (train and"
                                " validation as in 1.0.0)."}
  BUILDER_CONFIGS = [_config(task, 0) for task in collection.TASKS]

  @classmethod
  def get_builder_config(cls, name, version=None):
    # Seeds other than 0 are configs made on request: `TASK_seedN`.
    found = super().get_builder_config(name, version)
    if found is not None:
      return found
    m = _SEEDED.match(name)
    if m and m.group("task") in collection.TASKS:
      return _config(m.group("task"), int(m.group("seed")))
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    fields = collection.TASKS[self.builder_config.task].fields
    features = {f: (tfds.features.Sequence(tfds.features.Text()) if f == "options"
                    else tfds.features.Text()) for f in fields}
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(seed=self.builder_config.seed,
                                        cluster=collection.TASKS[self.builder_config.task].cluster),
        homepage="https://example.invalid/t5tune/experiments/flan_mini")

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    records = collection.generate(self.builder_config.task, self.builder_config.seed)
    return {split: self._generate_examples(records[split]) for split in collection.SPLITS}

  def _generate_examples(self, records):
    for i, record in enumerate(records):
      yield i, record


def tfds_name(task: str, seed: int) -> str:
  return f"flan_mini/{config_name(task, seed)}:{VERSION_STR}"


def build(tasks, seed: int = 0, data_dir: str | None = None) -> list[str]:
  """Builds (if not yet built) the tasks' datasets; returns their TFDS names."""
  data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
  # A build takes about a second per task; a bar per split is noise.
  tfds.disable_progress_bar()
  names = []
  for task in tasks:
    b = FlanMini(config=config_name(task, seed), data_dir=data_dir)
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            try_download_gcs=False,
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
    names.append(tfds_name(task, seed))
  return names
