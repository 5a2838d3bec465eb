"""The seqio DataSource of an instruction task: records read, cleaned and rendered with templates.

`SourceSpec` is the frozen description of how one task turns raw records into
(inputs, targets) text: its fields, templates, vocabulary, few-shot and
cleaning settings. `InstructionSource` applies a spec to a raw source
(`t5tune.data.sources`): it reads and checks the records
(`t5tune.data.cleaning`, every removal counted), renders one template per
example (`t5tune.data.templates`) and serves the split as a
`tf.data.Dataset.from_tensor_slices`, so a tf.data iterator over it can be
checkpointed (see `t5tune.data.pipeline`).

A task's records are read once per process and split and kept in memory
(instruction-tuning sets are small).
"""
from __future__ import annotations

import collections
import dataclasses
import random
import threading
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import seqio
import tensorflow as tf

from t5tune import errors
from t5tune.data import cleaning
from t5tune.data import formats as formats_lib
from t5tune.data import sources as sources_lib
from t5tune.data import templates as templates_lib
from t5tune.data import vocab as vocab_lib


@dataclasses.dataclass(frozen=True, eq=False)
class SourceSpec:
  """How a task renders its records; every field but `fields` and `templates` has a default.

  Attributes:
    fields: {field: source key or function(raw record) -> value} (a list of
      names means {name: name}). All are required. `options` (a string list)
      enables `{options_}`; `rationale` chain-of-thought.
    templates: the task's `Template`s (one is picked per example), kept to
      those of `template_kinds` when that is given.
    vocabulary: "byte", a SentencePiece .model path, or a seqio.Vocabulary.
    few_shot: k (or a `FewShot`) to render k train exemplars before each query.
    no_template: inputs are the raw input fields without instructions.
    template_kinds: keep only templates of these kinds.
    options_style: how `{options_}` is written.
    seed: template choice and few-shot draws are fixed by (task, example, seed).
    on_bad_record: "raise" (error with file:line) or "skip" (counted).
    dedup: None, "exact", "normalized", or "near" / "near:T" (near-duplicates, threshold T).
    max_input_tokens, max_target_tokens: drop rendered examples longer than these.
    validate_fn: record -> None, or a reason the record is invalid (removed, counted).
    formats: a `t5tune.data.formats.Flan2022`: each example in one of Flan 2022's
      four formats with a randomised options block (replaces few_shot and
      options_style; examples also carry `format` and `shots`).
  """
  fields: Mapping[str, Any]
  templates: Sequence[templates_lib.Template]
  vocabulary: str | seqio.Vocabulary = vocab_lib.BYTE
  few_shot: int | templates_lib.FewShot | None = None
  no_template: bool = False
  template_kinds: Sequence[str] | None = None
  options_style: templates_lib.OptionsStyle = templates_lib.OptionsStyle()
  seed: int = 0
  on_bad_record: str = "raise"
  dedup: str | None = "normalized"
  max_input_tokens: int | None = None
  max_target_tokens: int | None = None
  validate_fn: Callable[[Mapping[str, Any]], str | None] | None = None
  formats: formats_lib.Flan2022 | None = None

  @classmethod
  def from_options(cls, task_name: str, **options: Any) -> "SourceSpec":
    """A spec from keyword arguments; a misspelt one is named with the closest valid one."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in options:
      if key not in names:
        raise errors.UsageError(
            f"unknown option {key!r}.{errors.did_you_mean(key, names)}",
            where=f"register_task({task_name!r}, ...)",
            fix=f"options are {', '.join(names)}")
    spec = cls(**options)
    spec.check(task_name)
    return spec

  def __post_init__(self):
    # Normalised once here, so that every reader of the spec sees one form.
    fields = self.fields
    if isinstance(fields, str):
      raise errors.UsageError("fields= is a string", where="register_task(fields=...)",
                              fix="give a list of field names or a {field: source_key} dict")
    set_ = lambda name, value: object.__setattr__(self, name, value)
    set_("fields", dict(fields) if isinstance(fields, Mapping) else {f: f for f in fields})
    templates = tuple(self.templates)
    if self.template_kinds is not None:
      templates = tuple(t for t in templates if t.kind in self.template_kinds)
    set_("templates", templates)
    if isinstance(self.few_shot, int):
      set_("few_shot", templates_lib.FewShot(k=self.few_shot) if self.few_shot > 0 else None)
    set_("vocabulary", vocab_lib.as_vocabulary(self.vocabulary))

  def check(self, task_name: str) -> None:
    """Errors naming the task for settings that cannot work (before any record is read)."""
    where = f"task {task_name!r}"
    if self.template_kinds is not None:
      bad = set(self.template_kinds) - set(templates_lib.KINDS)
      if bad:
        raise errors.UsageError(f"template_kinds {sorted(bad)} not in {templates_lib.KINDS}",
                                where=where, fix="pick kinds the task's templates have")
    if not self.templates:
      raise errors.UsageError(
          "no templates" + (f" of kinds {list(self.template_kinds)}" if self.template_kinds else ""),
          where=where, fix="give at least one Template (its targets are also used by no_template)")
    templates_lib.check_fields(task_name, self.templates, list(self.fields))
    if any(t.kind == templates_lib.INFILL for t in self.templates):
      if len(self.vocabulary.encode(templates_lib.SENTINEL)) != 1:
        raise errors.UsageError(
            f"infilling templates need a vocabulary with T5's sentinels ({templates_lib.SENTINEL}"
            f" is not one token of {type(self.vocabulary).__name__})", where=where,
            fix="use a SentencePiece vocabulary with extra ids, e.g."
            " t5tune.data.vocab.get_vocabulary('spiece.model', extra_ids=100)")
    if self.formats is not None and not isinstance(self.formats, formats_lib.Flan2022):
      raise errors.UsageError(
          f"formats= must be a t5tune.data.formats.Flan2022, got {type(self.formats).__name__}",
          where=where, fix="formats=data.formats.Flan2022(...) with its fields, or None")
    if self.formats is not None and (self.few_shot is not None or self.no_template):
      raise errors.UsageError("formats= decides zero- or few-shot itself", where=where,
                              fix="drop few_shot / no_template, or formats")
    if self.on_bad_record not in cleaning.BAD_RECORD_MODES:
      raise errors.UsageError(f"on_bad_record={self.on_bad_record!r} is not supported",
                              where=where, fix=f"use one of {cleaning.BAD_RECORD_MODES}")
    try:
      cleaning.check_dedup(self.dedup)
    except ValueError:
      raise errors.UsageError(f"dedup={self.dedup!r} is not supported", where=where,
                              fix=f"use one of {cleaning.DEDUP_MODES} or 'near:T' (0 < T <= 1)"
                              ) from None

  def no_template_input_fields(self) -> list[str]:
    """The fields a no-template input shows: all but those the targets, options and rationale use."""
    target_fields = set()
    for t in self.templates:
      target_fields.update(templates_lib.placeholders(t.targets))
    skip = target_fields | {templates_lib.OPTIONS_FIELD, templates_lib.RATIONALE_FIELD}
    return [f for f in self.fields if f not in skip]


def target_not_an_option(example: Mapping[str, Any]) -> bool:
  """Whether an example with options and a template whose target is one of them (not
  chain-of-thought, not inverted) has a target that is none of its options."""
  return (bool(example.get("options"))
          and example.get("template_kind") not in (templates_lib.COT, templates_lib.INVERTED)
          and example["targets"].strip() not in example["options"])


def _warn_targets_not_options(task: str, split: str, examples: Sequence[Mapping[str, Any]]) -> None:
  """Says once per split (prepared splits are cached) how many examples `target_not_an_option`.

  A warning, not an error: such a record still trains its target, and a collection
  with a few of them is still worth training on; but rank classification scores
  every one of them wrong whatever the model predicts, so an accuracy is capped
  below 1 silently unless someone looks. The count and the first one say where.
  """
  bad = [ex for ex in examples if target_not_an_option(ex)]
  if bad:
    first = bad[0]
    logging.warning(
        "task %s split %s: %d of %d examples have a target that is none of their options, so rank"
        " classification scores them wrong whatever the model predicts (e.g. record %d: target %r,"
        " options %r); fix those records (`t5tune data report` counts them per template)",
        task, split, len(bad), len(examples), first["record"], first["targets"][:80],
        list(first["options"])[:6])


@dataclasses.dataclass
class PreparedSplit:
  """One split after reading, cleaning and rendering, with what was removed."""
  examples: list[dict[str, Any]]
  counts: collections.Counter
  template_usage: collections.Counter


class InstructionSource(seqio.DataSource):
  """A seqio DataSource of rendered instruction examples (read and cleaned in Python)."""

  def __init__(self, task_name: str, source: sources_lib.Source, spec: SourceSpec,
               splits: Sequence[str]):
    super().__init__(splits=splits)
    self.task_name = task_name
    self.source = source
    self.spec = spec
    self._lock = threading.RLock()
    self._records: dict[str, tuple[list[dict[str, Any]], collections.Counter]] = {}
    self._prepared: dict[str, PreparedSplit] = {}

  @property
  def vocabulary(self) -> seqio.Vocabulary:
    return self.spec.vocabulary

  @property
  def templates(self) -> tuple[templates_lib.Template, ...]:
    return self.spec.templates

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return [f"{self.task_name}:{split}"]

  def num_input_examples(self, split: str) -> int:
    return len(self.prepared(split).examples)

  def count_tokens(self, text: str) -> int:
    return len(self.spec.vocabulary.encode(text))

  def records(self, split: str) -> tuple[list[dict[str, Any]], collections.Counter]:
    """The split's records after checks and dedup (cached), and the removal counts."""
    with self._lock:
      if split not in self._records:
        self._check_split(split)
        counts = collections.Counter()
        records = cleaning.read_records(
            self.source, split, self.spec.fields, self.spec.on_bad_record, counts,
            self.spec.validate_fn)
        if counts["read"] == 0:
          raise errors.InputError(
              "the source has no records; an empty split is an error",
              where=f"task {self.task_name!r}, split {split!r}, {self.source.describe()}",
              fix="drop the split from splits= or fix the data")
        records = cleaning.dedup(records, self.spec.dedup, counts)
        skipped = {k: v for k, v in counts.items() if k != "read"}
        if skipped:
          logging.info("task %s split %s: read %d records, removed %s",
                       self.task_name, split, counts["read"], dict(skipped))
        self._records[split] = (records, counts)
      return self._records[split]

  def _check_split(self, split):
    if split not in self.splits:
      raise errors.UsageError(
          f"no split {split!r}", where=f"task {self.task_name!r}",
          fix=f"its splits are {list(self.splits)}")

  def prepared(self, split: str) -> PreparedSplit:
    """The split rendered with templates (cached per process)."""
    with self._lock:
      if split not in self._prepared:
        self._prepared[split] = self._prepare(split)
      return self._prepared[split]

  def _prepare(self, split: str) -> PreparedSplit:
    spec = self.spec
    records, read_counts = self.records(split)
    counts = collections.Counter(read_counts)
    pool, pool_keys = [], []
    if spec.formats is not None and "train" in self.splits:  # exemplars from train only
      pool = self.records("train")[0]
      pool_keys = [cleaning.content_key(r) for r in pool]
    if spec.few_shot is not None and spec.few_shot.k > 0:
      if "train" not in self.splits:
        raise errors.UsageError(
            "few-shot exemplars come from the train split, which the task does not have",
            where=f"task {self.task_name!r} (splits {list(self.splits)})",
            fix="add a train split or drop few_shot")
      pool = self.records("train")[0]
      pool_keys = [cleaning.content_key(r) for r in pool]
    examples, usage = [], collections.Counter()
    for index, record in enumerate(records):
      key = cleaning.content_key(record)
      if spec.formats is not None:
        template = templates_lib.choose(spec.templates, self.task_name, key, spec.seed)
        rendered = formats_lib.render(
            template, record, task=self.task_name, key=key, seed=spec.seed, config=spec.formats,
            pool=pool, pool_keys=pool_keys, count_tokens=self.count_tokens)
        examples.append({**rendered, "template_name": template.name,
                         "template_kind": template.kind, "record": index})
        continue
      if spec.no_template:
        inputs, targets = templates_lib.render_no_template(
            record, spec.no_template_input_fields(), spec.templates[0].targets,
            spec.options_style)
        name, kind = templates_lib.NO_TEMPLATE_NAME, templates_lib.NO_TEMPLATE_KIND
      else:
        template = templates_lib.choose(spec.templates, self.task_name, key, spec.seed)
        if pool:
          shots = [pool[i] for i in templates_lib.draw_exemplars(
              pool_keys, self.task_name, key, spec.seed, spec.few_shot.k)]
          inputs, targets = templates_lib.render_few_shot(
              template, record, shots, spec.few_shot, spec.options_style,
              self.count_tokens if spec.few_shot.max_tokens else None)
        else:
          inputs, targets = templates_lib.render(template, record, spec.options_style)
        name, kind = template.name, template.kind
      options = list(record.get(templates_lib.OPTIONS_FIELD, []))
      if not spec.no_template:  # an infilling template's options read as its targets do
        options = [templates_lib.infill_target(template, o) for o in options]
      examples.append({
          "inputs": inputs, "targets": targets,
          "options": options,
          "template_name": name, "template_kind": kind,
          "record": index})  # position in records(split): quality tools map back by it
    examples = cleaning.length_filter(
        examples, self.count_tokens, spec.max_input_tokens, spec.max_target_tokens, counts)
    for ex in examples:
      usage[ex["template_name"]] += 1
    _warn_targets_not_options(self.task_name, split, examples)
    if not examples:
      raise errors.InputError(
          f"every record was removed ({dict(counts)}); an empty split is an error",
          where=f"task {self.task_name!r}, split {split!r}",
          fix="fix the data or loosen the filters (dedup, max_*_tokens, validate_fn)")
    return PreparedSplit(examples, counts, usage)

  def get_dataset(self, split: str = "train", shuffle: bool = True,
                  seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *,
                  sequence_length=None, use_cached=False, num_epochs=1
                  ) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # seqio's signature; unused here
    examples = self.prepared(split).examples
    order = list(range(len(examples)))
    if shuffle and isinstance(seed, int):
      # The whole split is in memory: a full permutation, the same in every
      # process for a seed, so host shards taken after it stay disjoint.
      rng = random.Random(templates_lib.stable_hash(self.task_name, split, seed))
      rng.shuffle(order)
    if shard_info is not None and shard_info.num_shards > 1:
      order = order[shard_info.index::shard_info.num_shards]
    picked = [examples[i] for i in order]
    options = [ex["options"] for ex in picked]
    columns = {
        "inputs": tf.constant([ex["inputs"] for ex in picked], tf.string),
        "targets": tf.constant([ex["targets"] for ex in picked], tf.string),
        "options": tf.RaggedTensor.from_row_lengths(
            tf.constant([o for opts in options for o in opts], tf.string,
                        shape=[sum(map(len, options))]),
            tf.constant([len(o) for o in options], tf.int64)),
        "template_name": tf.constant([ex["template_name"] for ex in picked], tf.string),
        "template_kind": tf.constant([ex["template_kind"] for ex in picked], tf.string),
    }
    return tf.data.Dataset.from_tensor_slices(columns)
