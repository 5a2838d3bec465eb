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
             paraphrase <-> NLI) and without datasets that overlap C's test
             data, and evaluation mixtures of C's tasks (rank classification
             and generation); `heldout` holds these rules.
  templates  template-count ablations: each task also as `{task}_t{k}`, its
             first k templates, for k in TEMPLATE_COUNTS (k = all is the task).

Names: task `{collection}_{spec.name}` (variants `_t{k}`, `_eval_rank`,
`_eval_gen`, `_f22`), mixtures `{collection}_heldout_{cluster}_train[_t{k}|_f22]`
and `{collection}_heldout_{cluster}_eval[_rank|_gen]`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from t5tune.data import sources as sources_lib
from t5tune.data.collections import heldout

TRAIN_CAP = 30_000
VALIDATION_SIZE = 200
MIXING_CAP = 3_000
TEMPLATE_COUNTS = (1, 2, 4, 7, 10)

RELATED_CLUSTERS = heldout.RELATED_CLUSTERS
related, training_clusters, heldout_names = (heldout.related, heldout.training_clusters,
                                             heldout.heldout_names)


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


class SplitAlias(sources_lib.Source):
  """A source whose splits are other names for an inner source's splits ({new: inner})."""

  def __init__(self, source, aliases: Mapping[str, str]):
    super().__init__(list(aliases))
    self.source = source
    self.aliases = dict(aliases)

  def describe(self) -> str:
    return f"{self.source.describe()} as {self.aliases}"

  def records(self, split):
    return self.source.records(self.aliases[split])


FORMATS_SUFFIX = "f22"  # the Flan 2022 formats variant: task `..._f22`, mixture `..._train_f22`


def register(collection: str, specs: Sequence[DatasetSpec], clusters: Sequence[str], *,
             data_dir: str | None = None, vocabulary="byte",
             template_counts: Sequence[int] = TEMPLATE_COUNTS, mixtures: bool = True,
             source_fn: Callable[[DatasetSpec, Mapping[str, str]], Any] | None = None,
             metric_fns: Any = None,
             overlaps: Sequence[heldout.Overlap] = (),
             formats: Any = None,
             **task_options) -> list[str]:
  """Registers every spec as seqio tasks and the held-out mixtures (`heldout` says who is in each).

  Per dataset: `{collection}_{name}` (all templates), `..._t{k}` (the first k),
  `..._eval_rank` / `..._eval_gen` (the evaluation variants, one split `test`:
  the carved test, or validation where there is none) and, with `formats` (a
  `t5tune.data.formats.Flan2022`) and a train split, `..._f22`. Per cluster C:
  `{collection}_heldout_C_train[_t{k}|_f22]` and `..._eval[_rank|_gen]`.

  `source_fn(spec, carved_splits)` builds the raw source (default: TFDS from
  `data_dir`); tests pass prepared or mock data through it. Re-registering
  replaces earlier registrations. `metric_fns` maps the specs' metric names to
  functions (a mapping, or a module such as `t5tune.infer.metrics`, which
  `t5tune.data` may not import, read by attribute); without it tasks carry the names in metadata["metrics"] only.
  `overlaps`: the collection's `heldout.Overlap` facts. Returns the task names.
  """
  from t5tune.data import tasks  # pylint: disable=g-import-not-at-top
  if source_fn is None:
    source_fn = lambda spec, carved: sources_lib.tfds(spec.tfds, data_dir=data_dir, splits=carved)
  heldout.check_overlaps(specs, overlaps)
  names = []
  for spec in specs:
    if spec.cluster not in clusters:
      raise ValueError(f"dataset {spec.name!r}: cluster {spec.cluster!r} is not one of {list(clusters)}")
    carved, caps = carve(spec.splits)
    source = CappedSource(source_fn(spec, carved), caps)
    base = task_name(collection, spec)
    metadata = {"collection": collection, "cluster": spec.cluster, "dataset": spec.name,
                "tfds": spec.tfds, "has_train": spec.has_train, "metrics": list(spec.metrics)}
    fns = [metric_fns[m] if isinstance(metric_fns, Mapping) else getattr(metric_fns, m)
           for m in spec.metrics] if metric_fns is not None else []

    def add(name, variant, templates, src=source, extra=None, **options):
      tasks.register_task(
          name, source=src, templates=templates, fields=spec.all_fields(), metric_fns=fns,
          metadata={**metadata, **(extra or {})}, vocabulary=vocabulary,
          validate_fn=spec.validate, overwrite=True, _base_name=base, _variant=variant,
          **{**task_options, **options})
      names.append(name)

    counts = sorted({min(k, len(spec.templates)) for k in template_counts} | {len(spec.templates)})
    for k in counts:
      add(task_name(collection, spec, k), "" if k == len(spec.templates) else f"t{k}",
          spec.templates[:k], extra={"templates": k})
    test = SplitAlias(source, {"test": heldout.evaluation_split(carved)})
    for variant, method in heldout.EVALUATION.items():
      templates = heldout.evaluation_templates(spec, variant)
      add(f"{base}_{variant}", variant, templates, src=test,
          extra={"templates": len(templates), "evaluation": method})
    if formats is not None and spec.has_train:
      add(f"{base}_{FORMATS_SUFFIX}", FORMATS_SUFFIX, spec.templates,
          extra={"templates": len(spec.templates), "formats": "flan2022"}, formats=formats)
  if mixtures:
    register_mixtures(collection, specs, clusters, template_counts=template_counts,
                      overlaps=overlaps, formats=formats is not None)
  return names


def register_mixtures(collection: str, specs: Sequence[DatasetSpec], clusters: Sequence[str], *,
                      template_counts: Sequence[int] = TEMPLATE_COUNTS,
                      overlaps: Sequence[heldout.Overlap] = (), formats: bool = False) -> None:
  """The held-out training mixtures (examples-proportional, capped) and evaluation mixtures of each cluster."""
  from t5tune.data import mixtures as mixtures_lib  # pylint: disable=g-import-not-at-top
  rate = mixtures_lib.examples_proportional(MIXING_CAP)
  for held_out in clusters:
    training = heldout.training_datasets(specs, clusters, held_out, overlaps)
    variants = [(k, "", lambda s, k=k: task_name(collection, s, k)) for k in template_counts]
    if formats:
      variants.append((None, FORMATS_SUFFIX, lambda s: f"{task_name(collection, s)}_{FORMATS_SUFFIX}"))
    for k, suffix, name_of in variants:
      if training:
        mixtures_lib.register_mixture(heldout_names(collection, held_out, k, suffix)[0],
                                      [name_of(s) for s in training], rate=rate, overwrite=True)
    evaluated = [task_name(collection, s) for s in specs if s.cluster == held_out]
    if not evaluated:
      continue
    mixtures_lib.register_mixture(heldout_names(collection, held_out)[1], evaluated, overwrite=True)
    for variant in heldout.EVALUATION:
      mixtures_lib.register_mixture(heldout_names(collection, held_out, suffix=variant)[1],
                                    [f"{n}_{variant}" for n in evaluated], overwrite=True)


def describe(collection: str, specs: Sequence[DatasetSpec], clusters: Sequence[str]) -> str:
  """A table of a collection: task, cluster, TFDS source, splits, template count (for `t5tune data list`)."""
  lines = [f"collection {collection}: {len(specs)} datasets in {len(clusters)} clusters"]
  for cluster in clusters:
    members = [s for s in specs if s.cluster == cluster]
    lines.append(f"  {cluster} ({len(members)})")
    for s in members:
      carved, _ = carve(s.splits)
      pinned = f" (FLAN pinned {s.flan_version})" if s.flan_version else ""
      splits = " ".join(f"{k}={v}" for k, v in carved.items())
      lines.append(f"    {task_name(collection, s)}  tfds={s.tfds}{pinned}"
                   f" templates={len(s.templates)} splits: {splits}")
  return "\n".join(lines)


def _wrapped(label: str, words: Sequence[str], indent: str, width: int = 100) -> list[str]:
  """`label` then `words` comma-separated, wrapped at `width` with continuation lines indented."""
  import textwrap  # pylint: disable=g-import-not-at-top
  return textwrap.wrap(f"{label}{', '.join(words)}", width=width, initial_indent=indent,
                       subsequent_indent=indent + "    ", break_on_hyphens=False)


def describe_mixtures(collection: str, specs: Sequence[DatasetSpec], clusters: Sequence[str], *,
                      template_counts: Sequence[int] = TEMPLATE_COUNTS,
                      overlaps: Sequence[heldout.Overlap] = (), formats: bool = True) -> str:
  """The held-out mixtures `register_mixtures` makes, per cluster and wrapped (for `t5tune data list`);
  computed from the specs, so nothing is registered or read."""
  ks = ", ".join(str(k) for k in template_counts if k != heldout.TEMPLATE_COUNTS_ALL)
  prefix = f"{collection}_heldout_C"
  legend = [
      (f"{prefix}_train", "the training clusters' tasks (all templates), examples-proportional,"
       f" capped at {MIXING_CAP:,}"),
      ("  ..._train_t<k>", f"the same tasks with their first k templates, k in {ks}")]
  if formats:
    legend.append((f"  ..._train_{FORMATS_SUFFIX}", "the same tasks in the Flan 2022 formats"))
  legend += [
      (f"{prefix}_eval_rank", "C's tasks on their test split (validation where there is none),"
       " non-inverted templates; examples with options rank-classified, others decoded"),
      (f"{prefix}_eval_gen", "the same, every answer decoded (options shown)"),
      (f"{prefix}_eval", "C's plain tasks (all templates, every carved split): for `data report`,"
       " not a held-out score")]
  lines = [f"held-out mixtures of {collection}: per cluster C, train on the others, evaluate C"]
  for name, text in legend:
    lines += _wrapped(f"{name:<{len(prefix) + 11}}", [text], "  ")
  for held_out in clusters:
    evaluated = [s.name for s in specs if s.cluster == held_out]
    training = heldout.training_datasets(specs, clusters, held_out, overlaps)
    kept = heldout.training_clusters(clusters, held_out)
    variants = f"[_t<k>{f'|_{FORMATS_SUFFIX}' if formats else ''}]"
    names = [f"{collection}_heldout_{held_out}_train{variants}"]
    if evaluated:
      names.append(f"{collection}_heldout_{held_out}_eval[_rank|_gen]")
    lines.append(f"  {held_out}: {len(evaluated)} tasks evaluated, {len(training)} trained on")
    lines += _wrapped("mixtures: ", names, "    ")
    lines += _wrapped("evaluated: ", evaluated, "    ") if evaluated else []
    lines += _wrapped("trains on clusters: ", kept, "    ")
    dropped_clusters = sorted(heldout.related(held_out) & set(clusters))
    if dropped_clusters:
      lines += _wrapped("not trained on (related clusters): ", dropped_clusters, "    ")
    touching = sorted({s.name for s in specs if s.cluster in kept and s.has_train}
                      - {s.name for s in training})
    if touching:
      lines += _wrapped("not trained on (share a source with its test data): ", touching, "    ")
  return "\n".join(lines)


def describe_named(name: str) -> str:
  """`describe` and `describe_mixtures` of a collection named in `t5tune.data.collections.COLLECTIONS`
  (empty or unknown: UsageError)."""
  import importlib  # pylint: disable=g-import-not-at-top
  from t5tune.data import collections  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(collections.module_name(name))
  return (describe(module.COLLECTION, module.DATASETS, module.CLUSTERS) + "\n"
          + describe_mixtures(module.COLLECTION, module.DATASETS, module.CLUSTERS,
                              overlaps=getattr(module, "OVERLAPS", ())))
