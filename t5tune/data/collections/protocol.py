"""FLAN's protocol for a collection of TFDS datasets: specs, split carving, caps, held-out mixtures.

A collection module (e.g. `t5tune.data.collections.flan2021`) is data only: a
list of `DatasetSpec`s. This module turns them into seqio tasks and mixtures
through t5tune's own `register_task` / `register_mixture`, following FLAN
(Wei et al., 2021) as facts:

  splits     train capped at TRAIN_CAP (30,000) records; validation is
             VALIDATION_SIZE (200) records. A dataset with a labelled test
             split keeps it and takes validation from the head of its own
             validation split; one without takes validation from the END of
             train (train loses those records) and its original validation
             becomes the test split.
  mixing     proportional to the number of train examples, capped at
             MIXING_CAP (3,000) (`t5tune.data.examples_proportional`).
  held out   for each cluster C, a training mixture of every cluster but C and
             the clusters RELATED to C (FLAN's exclusions: reading comprehension
             and commonsense <-> reading comprehension with commonsense,
             paraphrase <-> NLI), and an evaluation mixture of C's tasks.
  templates  template-count ablations: each task also as `{task}_t{k}`, its
             first k templates, for k in TEMPLATE_COUNTS (k = all is the task).

Names: task `{collection}_{spec.name}`, mixtures
`{collection}_heldout_{cluster}_train[_t{k}]` and `{collection}_heldout_{cluster}_eval`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from t5tune.data import sources as sources_lib

TRAIN_CAP = 30_000
VALIDATION_SIZE = 200
MIXING_CAP = 3_000
TEMPLATE_COUNTS = (1, 2, 4, 7, 10)

# FLAN's exclusions: holding out one cluster of a pair also drops the other from training.
RELATED_CLUSTERS = (
    ("reading_comprehension", "reading_comprehension_commonsense"),
    ("commonsense", "reading_comprehension_commonsense"),
    ("paraphrase", "nli"),
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One dataset of a collection: where it is, how its records read, how it is asked.

  Attributes:
    name: short name, unique in the collection (the task is `{collection}_{name}`).
    cluster: the task cluster (held-out unit).
    tfds: "builder/config:version", a version the installed tensorflow-datasets has.
    fields: {field: function(raw TFDS record) -> value}; `options` (a list of
      strings) is added from `options` when that is given.
    templates: the dataset's templates (at least TEMPLATE_COUNTS[-1] for a full entry).
    splits: the raw TFDS splits that have labels: {"train"|"validation"|"test": tfds split}.
    options: the answer options (the builder's ClassLabel names, or fixed words), or None.
    metrics: names of `t5tune.infer.metrics` functions.
    flan_version: the version FLAN pinned, when the installed TFDS no longer has it.
    label_feature, label_names: the builder's ClassLabel feature and its names
      (index order); `options` are the words shown for them (same order).
    validate: raw-mapped record -> None or why it is dropped (e.g. no gold label).
  """
  name: str
  cluster: str
  tfds: str
  fields: Mapping[str, Callable[[Mapping[str, Any]], Any]]
  templates: tuple
  splits: Mapping[str, str] = dataclasses.field(
      default_factory=lambda: {"train": "train", "validation": "validation"})
  options: tuple[str, ...] | None = None
  metrics: tuple[str, ...] = ("accuracy",)
  flan_version: str | None = None
  label_feature: str | None = None
  label_names: tuple[str, ...] | None = None
  validate: Callable[[Mapping[str, Any]], str | None] | None = None

  @property
  def builder_name(self) -> str:
    return self.tfds.partition(":")[0]

  @property
  def version(self) -> str:
    return self.tfds.partition(":")[2]

  @property
  def has_train(self) -> bool:
    return "train" in self.splits

  def all_fields(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """The field functions, with the constant `options` field when the dataset has options."""
    fields = dict(self.fields)
    if self.options is not None and "options" not in fields:
      options = list(self.options)
      fields["options"] = lambda record: options
    return fields


def carve(splits: Mapping[str, str]) -> tuple[dict[str, str], dict[str, int]]:
  """FLAN's train/validation/test carving of a dataset's labelled raw splits.

  Returns ({split: TFDS split string}, {split: record cap}); the caps apply
  to the first records read (see the module docstring for the rule).
  """
  train, validation, test = (splits.get(k) for k in ("train", "validation", "test"))
  caps = {"train": TRAIN_CAP, "validation": VALIDATION_SIZE}
  if train is None:  # an evaluation-only dataset
    return {k: v for k, v in (("validation", validation), ("test", test)) if v}, caps
  if test is not None and validation is not None:
    return {"train": train, "validation": validation, "test": test}, caps
  carved = {"train": f"{train}[:-{VALIDATION_SIZE}]", "validation": f"{train}[-{VALIDATION_SIZE}:]"}
  if test is not None or validation is not None:
    carved["test"] = test if test is not None else validation
  return carved, caps


class CappedSource(sources_lib.Source):
  """A `t5tune.data.sources.Source` that stops each capped split after its first `caps[split]` records."""

  def __init__(self, source, caps: Mapping[str, int]):
    super().__init__(source.splits)
    self.source = source
    self.caps = dict(caps)

  def describe(self) -> str:
    return f"{self.source.describe()} capped {self.caps}"

  def records(self, split):
    cap = self.caps.get(split)
    for i, item in enumerate(self.source.records(split)):
      if cap is not None and i >= cap:
        return
      yield item


def task_name(collection: str, spec: DatasetSpec, templates: int | None = None) -> str:
  """`{collection}_{name}`, or `..._t{k}` for the variant with the first k templates."""
  base = f"{collection}_{spec.name}"
  return base if templates is None or templates >= len(spec.templates) else f"{base}_t{templates}"


def related(cluster: str) -> set[str]:
  """The clusters FLAN also leaves out of training when `cluster` is held out."""
  out = set()
  for a, b in RELATED_CLUSTERS:
    if cluster == a:
      out.add(b)
    elif cluster == b:
      out.add(a)
  return out


def training_clusters(clusters: Sequence[str], held_out: str) -> list[str]:
  """The clusters a model held out on `held_out` trains on (FLAN's exclusions applied)."""
  if held_out not in clusters:
    raise ValueError(f"cluster {held_out!r} is not one of {list(clusters)}")
  drop = {held_out} | related(held_out)
  return [c for c in clusters if c not in drop]


def heldout_names(collection: str, cluster: str, templates: int | None = None) -> tuple[str, str]:
  """(training mixture, evaluation mixture) names for a held-out cluster."""
  suffix = f"_t{templates}" if templates is not None and templates != TEMPLATE_COUNTS[-1] else ""
  return (f"{collection}_heldout_{cluster}_train{suffix}", f"{collection}_heldout_{cluster}_eval")


def register(collection: str, specs: Sequence[DatasetSpec], clusters: Sequence[str], *,
             data_dir: str | None = None, vocabulary="byte",
             template_counts: Sequence[int] = TEMPLATE_COUNTS, mixtures: bool = True,
             source_fn: Callable[[DatasetSpec, Mapping[str, str]], Any] | None = None,
             metric_fns: Mapping[str, Callable[..., Any]] | None = None,
             **task_options) -> list[str]:
  """Registers every spec as a seqio task (plus template-count variants) and the held-out mixtures.

  `source_fn(spec, carved_splits)` builds the raw source (default: TFDS from
  `data_dir`); tests pass prepared or mock data through it. Re-registering
  replaces earlier registrations. `metric_fns` maps the specs' metric names to
  functions (e.g. `t5tune.infer.metrics`'s, which `t5tune.data` may not
  import); without it tasks carry the names in metadata["metrics"] only.
  Returns the task names.
  """
  from t5tune.data import mixtures as mixtures_lib  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks  # pylint: disable=g-import-not-at-top
  if source_fn is None:
    source_fn = lambda spec, carved: sources_lib.tfds(spec.tfds, data_dir=data_dir, splits=carved)
  names = []
  for spec in specs:
    if spec.cluster not in clusters:
      raise ValueError(f"dataset {spec.name!r}: cluster {spec.cluster!r} is not one of {list(clusters)}")
    carved, caps = carve(spec.splits)
    source = CappedSource(source_fn(spec, carved), caps)
    metadata = {"collection": collection, "cluster": spec.cluster, "dataset": spec.name,
                "tfds": spec.tfds, "has_train": spec.has_train, "metrics": list(spec.metrics)}
    fns = [metric_fns[m] for m in spec.metrics] if metric_fns is not None else []
    counts = sorted({min(k, len(spec.templates)) for k in template_counts} | {len(spec.templates)})
    for k in counts:
      name = task_name(collection, spec, k)
      tasks.register_task(
          name, source=source, templates=spec.templates[:k], fields=spec.all_fields(),
          metric_fns=fns, metadata={**metadata, "templates": k},
          vocabulary=vocabulary, validate_fn=spec.validate, overwrite=True, _base_name=task_name(collection, spec),
          _variant="" if k == len(spec.templates) else f"t{k}", **task_options)
      names.append(name)
  if mixtures:
    train_specs = {s.name: s for s in specs if s.has_train}
    for held_out in clusters:
      keep = training_clusters(clusters, held_out)
      for k in template_counts:
        train_tasks = [task_name(collection, s, k) for s in specs
                       if s.cluster in keep and s.name in train_specs]
        train_name, eval_name = heldout_names(collection, held_out, k)
        if train_tasks:
          mixtures_lib.register_mixture(
              train_name, train_tasks, rate=mixtures_lib.examples_proportional(MIXING_CAP),
              overwrite=True)
      eval_tasks = [task_name(collection, s) for s in specs if s.cluster == held_out]
      if eval_tasks:
        mixtures_lib.register_mixture(heldout_names(collection, held_out)[1], eval_tasks,
                                      overwrite=True)
  return names


def describe(collection: str, specs: Sequence[DatasetSpec], clusters: Sequence[str]) -> str:
  """A table of a collection: task, cluster, TFDS source, splits, template count (for `t5tune data list`)."""
  lines = [f"collection {collection}: {len(specs)} datasets in {len(clusters)} clusters"]
  for cluster in clusters:
    members = [s for s in specs if s.cluster == cluster]
    lines.append(f"  {cluster} ({len(members)})")
    for s in members:
      carved, _ = carve(s.splits)
      pinned = f" (FLAN pinned {s.flan_version})" if s.flan_version else ""
      lines.append(f"    {task_name(collection, s)}  tfds={s.tfds}{pinned}"
                   f" splits={carved} templates={len(s.templates)}")
  return "\n".join(lines)


def describe_named(name: str) -> str:
  """`describe` of a collection named in `t5tune.data.collections.COLLECTIONS` (unknown: UsageError)."""
  import importlib  # pylint: disable=g-import-not-at-top
  from t5tune import errors  # pylint: disable=g-import-not-at-top
  from t5tune.data import collections  # pylint: disable=g-import-not-at-top
  if name not in collections.COLLECTIONS:
    raise errors.UsageError(
        f"no collection {name!r}.{errors.did_you_mean(name, collections.COLLECTIONS)}",
        where="--collection", fix=f"collections are {sorted(collections.COLLECTIONS)}")
  module = importlib.import_module(collections.COLLECTIONS[name])
  return describe(module.COLLECTION, module.DATASETS, module.CLUSTERS)
