"""Registers the flan_mini collection as seqio tasks and mixtures through `t5tune.data`.

Importing this module registers seed 0 (the TFDS datasets are built on first
read, offline, under `FLAN_MINI_DATA_DIR` or ~/tensorflow_datasets):

    t5tune data report flan_mini_all --module=experiments.flan_mini.tasks \\
        --inputs_length=256 --targets_length=64

Per task TASK (see `collection.TASKS`) and seed 0 the names are

    flan_mini_TASK               training: all templates, zero-shot
    flan_mini_TASK_fs2           training: the same with 2 exemplars before the query
    flan_mini_TASK_no_template   training: raw input fields, no instruction (FLAN's baseline)
    flan_mini_TASK_eval          evaluation: zero-shot, answer templates (zs_opt, zs_noopt)
    flan_mini_TASK_eval_fs2      evaluation: the same, few-shot
    flan_mini_TASK_unseen        evaluation: instruction wordings never trained on

(`flan_mini_s3_TASK...` for seed 3, after `register(seed=3)`), and the
mixtures `flan_mini_all` (every training task) and `flan_mini_eval` (every
evaluation task). Experiments make their own mixtures with
`training_mixture(clusters, style)`.
"""
from __future__ import annotations

import functools
import os
import threading

import seqio

from t5tune import data

from experiments.flan_mini import builder
from experiments.flan_mini import collection
from experiments.flan_mini import corpus
from experiments.flan_mini import metrics
from experiments.flan_mini import templates

DATA_DIR_ENV = "FLAN_MINI_DATA_DIR"
FEW_SHOT_K = collection.FEW_SHOT_K
# Few-shot inputs are kept under this many tokens (exemplars dropped to fit).
FEW_SHOT_MAX_TOKENS = 480
# Training styles of a mixture: which variant of each task it trains on.
STYLES = {"zero_shot": "", "mixed": None, "no_template": "_no_template", "few_shot": "_fs2"}
EVAL_KINDS = (data.ZERO_SHOT_OPTIONS, data.ZERO_SHOT)
PRIMARY_METRIC = metrics.PRIMARY_METRIC

_lock = threading.Lock()
_registered: set[int] = set()


def data_dir() -> str:
  return os.path.expanduser(os.environ.get(DATA_DIR_ENV) or builder.DEFAULT_DATA_DIR)


@functools.lru_cache(maxsize=None)
def prefix(seed: int = 0, vocabulary: str = data.vocab.BYTE) -> str:
  """flan_mini, flan_mini_s3 (seed 3), flan_mini_v1a2b3c (a SentencePiece vocabulary)."""
  name = "flan_mini" if seed == 0 else f"flan_mini_s{seed}"
  if vocabulary != data.vocab.BYTE:
    name += "_v" + corpus.vocabulary_tag(vocabulary)
  return name


def task_name(task: str, variant: str = "", seed: int = 0,
              vocabulary: str = data.vocab.BYTE) -> str:
  return f"{prefix(seed, vocabulary)}_{task}{variant}"


class CollectionSource(data.sources.Source):
  """A task's TFDS dataset, built on first read and kept in memory for its variants."""

  _cache: dict = {}

  def __init__(self, task: str, seed: int, directory: str):
    super().__init__(collection.SPLITS)
    self.task, self.seed, self.directory = task, seed, directory
    self.name = builder.tfds_name(task, seed)

  def describe(self) -> str:
    return f"tfds {self.name} in {self.directory}"

  def records(self, split):
    key = (self.name, self.directory, split)
    with _lock:
      if key not in self._cache:
        builder.build([self.task], self.seed, self.directory)
        source = data.sources.tfds(self.name, data_dir=self.directory)
        self._cache[key] = list(source.records(split))
    return iter(self._cache[key])


# The seqio tasks score with the functions the portable path calls too.
postprocess = metrics.postprocess


def register(seed: int = 0, directory: str | None = None,
             vocabulary: str = data.vocab.BYTE) -> list[str]:
  """Registers every task variant of one seed and vocabulary (idempotent).

  `vocabulary` is "byte" or the path of a SentencePiece model (the one of the
  checkpoint a run starts from). Returns the training task names.
  """
  directory = os.path.expanduser(directory or data_dir())
  key = (seed, vocabulary)
  names = [task_name(t, "", seed, vocabulary) for t in collection.TASKS]
  with _lock:
    if key in _registered:
      return names
    _registered.add(key)
  name = functools.partial(task_name, seed=seed, vocabulary=vocabulary)
  # A SentencePiece vocabulary carries T5's sentinels, so these tasks mix with
  # the corpus's span corruption (seqio mixes only equal vocabularies).
  vocab = (vocabulary if vocabulary == data.vocab.BYTE
           else corpus.get_vocabulary(vocabulary))
  for task, spec in collection.TASKS.items():
    source = CollectionSource(task, seed, directory)
    train_templates = templates.training(task)
    common = dict(
        source=source, fields=list(spec.fields), postprocess_fn=postprocess,
        metric_fns=metrics.metric_fns(spec.cluster), seed=seed, vocabulary=vocab,
        metadata={"cluster": spec.cluster, "task": task, "seed": seed})
    few_shot = data.FewShot(k=0, max_tokens=FEW_SHOT_MAX_TOKENS)
    data.register_variants(
        name(task, ""), ["", f"fs{FEW_SHOT_K}"], templates=train_templates,
        few_shot=few_shot, **common)
    # The "no template" baseline renders the raw input fields; it must not be
    # given inversion templates, whose targets name input fields.
    answer_templates = [t for t in train_templates if t.kind != data.INVERTED]
    data.register_task(name(task, "_no_template"), templates=answer_templates,
                       no_template=True, **common)
    data.register_variants(
        name(task, "_eval"), ["", f"fs{FEW_SHOT_K}"],
        templates=[t for t in train_templates if t.kind in EVAL_KINDS],
        few_shot=few_shot, **common)
    data.register_task(
        name(task, "_unseen"),
        templates=[t for t in templates.unseen(task) if t.kind in EVAL_KINDS], **common)
  data.register_mixture(f"{prefix(seed, vocabulary)}_all", names,
                        rate=data.examples_proportional(1000))
  data.register_mixture(
      f"{prefix(seed, vocabulary)}_eval", [name(t, "_eval") for t in collection.TASKS],
      rate=data.examples_proportional(1000))
  return names


def training_mixture(clusters, style: str = "zero_shot", seed: int = 0,
                     vocabulary: str = data.vocab.BYTE) -> str:
  """Registers (once) and names the mixture training on `clusters` in a style of `STYLES`."""
  if style not in STYLES:
    raise ValueError(f"style {style!r} is not one of {sorted(STYLES)}")
  register(seed, vocabulary=vocabulary)
  unknown = sorted(set(clusters) - set(collection.CLUSTERS))
  if unknown:
    raise ValueError(f"clusters {unknown} are not flan_mini clusters {collection.CLUSTERS}")
  tasks = [t for t, spec in collection.TASKS.items() if spec.cluster in clusters]
  if style == "mixed":
    names = [task_name(t, v, seed, vocabulary) for t in tasks for v in ("", f"_fs{FEW_SHOT_K}")]
  else:
    names = [task_name(t, STYLES[style], seed, vocabulary) for t in tasks]
  short = "-".join(str(i) for i in sorted(collection.CLUSTERS.index(c) for c in clusters))
  name = f"{prefix(seed, vocabulary)}_train_{style}_c{short}"
  if name not in seqio.MixtureRegistry.names():
    data.register_mixture(name, names, rate=data.examples_proportional(1000))
  return name


cluster_tasks = collection.cluster_tasks


register(0)
