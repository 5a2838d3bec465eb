"""Registration API: instruction tasks and mixtures as ordinary seqio objects.

    from t5tune import data
    data.register_task(
        "my_nli", source={"train": "nli/train.jsonl", "validation": "nli/dev.jsonl"},
        fields=["premise", "hypothesis", "options", "answer"],
        templates=[data.Template("a", "{premise}\\nDoes this imply {hypothesis}?\\n{options_}",
                                 "{answer}", data.ZERO_SHOT_OPTIONS),
                   data.Template("b", "{premise} => {hypothesis}?", "{answer}")],
        metric_fns=[my_accuracy], metadata={"cluster": "nli"})
    seqio.get_mixture_or_task("my_nli").get_dataset({"inputs": 512, "targets": 8})

`register_task` builds a `seqio.Task` whose source reads the records, checks
and cleans them (`t5tune.data.cleaning`, every removal counted), renders one
template per example (`t5tune.data.templates`) and whose preprocessors
tokenize with the task's vocabulary and append EOS. Its examples carry
`inputs`, `targets` (token ids), `inputs_pretokenized`,
`targets_pretokenized`, `options` (a string list, empty if none),
`template_name` and `template_kind`.

Variants of one source (`register_variants`, names from `variant_name`):

    BASE                 all templates, zero-shot (the training variant)
    BASE_zs_opt          only templates of that kind (zs_opt, zs_noopt, cot, inv)
    BASE_fs3             few-shot, 3 exemplars from train (also BASE_zs_opt_fs3)
    BASE_no_template     raw input fields without instructions (`no_template=True`)

`register_mixture(name, tasks, rate=...)` builds a `seqio.Mixture`; `tasks`
is a list of names or a predicate over `TaskInfo` (e.g. by
`info.metadata["cluster"]`), `rate` a number, a {task: weight} dict,
`examples_proportional(cap)` or `temperature(t, cap)`.

A task's records are read once per process and split and kept in memory
(instruction-tuning sets are small); the rendered split becomes a
`tf.data.Dataset.from_tensor_slices`, so a tf.data iterator over it can be
checkpointed (see `t5tune.data.pipeline`).
"""
from __future__ import annotations

import collections
import dataclasses
import random
import re
import threading
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import seqio
import tensorflow as tf

from t5tune.data import cleaning
from t5tune.data import sources as sources_lib
from t5tune.data import templates as templates_lib
from t5tune.data import vocab as vocab_lib

# Features every example carries besides the tokenized inputs/targets; the
# pipeline and evaluation pass them through mixtures.
PASSTHROUGH_FEATURES = ("options", "template_name", "template_kind")
NO_TEMPLATE_VARIANT = "no_template"


@dataclasses.dataclass
class PreparedSplit:
  """One split after reading, cleaning and rendering, with what was removed."""
  examples: list[dict[str, Any]]
  counts: collections.Counter
  template_usage: collections.Counter


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What t5tune knows about a task beyond seqio: its metadata and variant."""
  name: str
  base_name: str
  variant: str
  metadata: Mapping[str, Any]
  source: "InstructionSource"


_TASKS: dict[str, TaskInfo] = {}
_MIXTURES: dict[str, Mapping[str, Any]] = {}


class InstructionSource(seqio.DataSource):
  """A seqio DataSource of rendered instruction examples (read and cleaned in Python)."""

  def __init__(self, task_name: str, source: sources_lib.Source,
               fields: Mapping[str, Any], templates: Sequence[templates_lib.Template],
               vocabulary: seqio.Vocabulary, *, few_shot: templates_lib.FewShot | None,
               no_template: bool, options_style: templates_lib.OptionsStyle,
               seed: int, on_bad_record: str, dedup: str | None,
               max_input_tokens: int | None, max_target_tokens: int | None,
               validate_fn: Callable[[Mapping[str, Any]], str | None] | None,
               splits: Sequence[str]):
    super().__init__(splits=splits)
    self.task_name = task_name
    self.source = source
    self.fields = dict(fields)
    self.templates = tuple(templates)
    self.vocabulary = vocabulary
    self.few_shot = few_shot
    self.no_template = no_template
    self.options_style = options_style
    self.seed = seed
    self.on_bad_record = on_bad_record
    self.dedup = dedup
    self.max_input_tokens = max_input_tokens
    self.max_target_tokens = max_target_tokens
    self.validate_fn = validate_fn
    self._lock = threading.RLock()
    self._records: dict[str, tuple[list[dict[str, Any]], collections.Counter]] = {}
    self._prepared: dict[str, PreparedSplit] = {}

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return [f"{self.task_name}:{split}"]

  def num_input_examples(self, split: str) -> int:
    return len(self.prepared(split).examples)

  def count_tokens(self, text: str) -> int:
    return len(self.vocabulary.encode(text))

  def records(self, split: str) -> tuple[list[dict[str, Any]], collections.Counter]:
    """The split's records after checks and dedup (cached), and the removal counts."""
    with self._lock:
      if split not in self._records:
        self._check_split(split)
        counts = collections.Counter()
        records = cleaning.read_records(
            self.source, split, self.fields, self.on_bad_record, counts,
            self.validate_fn)
        if counts["read"] == 0:
          raise ValueError(
              f"task {self.task_name!r}, split {split!r}: the source"
              f" ({self.source.describe()}) has no records; an empty split is"
              f" an error (drop the split from splits= or fix the data)")
        records = cleaning.dedup(records, self.dedup, counts)
        skipped = {k: v for k, v in counts.items() if k != "read"}
        if skipped:
          logging.info("task %s split %s: read %d records, removed %s",
                       self.task_name, split, counts["read"], dict(skipped))
        self._records[split] = (records, counts)
      return self._records[split]

  def _check_split(self, split):
    if split not in self.splits:
      raise ValueError(
          f"task {self.task_name!r} has no split {split!r}; its splits are"
          f" {list(self.splits)}")

  def prepared(self, split: str) -> PreparedSplit:
    """The split rendered with templates (cached per process)."""
    with self._lock:
      if split not in self._prepared:
        self._prepared[split] = self._prepare(split)
      return self._prepared[split]

  def _prepare(self, split: str) -> PreparedSplit:
    records, read_counts = self.records(split)
    counts = collections.Counter(read_counts)
    pool, pool_keys = [], []
    if self.few_shot is not None and self.few_shot.k > 0:
      if "train" not in self.splits:
        raise ValueError(
            f"task {self.task_name!r}: few-shot exemplars come from the train"
            f" split, which the task does not have (splits {list(self.splits)})")
      pool = self.records("train")[0]
      pool_keys = [cleaning.content_key(r) for r in pool]
    examples, usage = [], collections.Counter()
    for record in records:
      key = cleaning.content_key(record)
      if self.no_template:
        inputs, targets = templates_lib.render_no_template(
            record, _no_template_input_fields(self.fields, self.templates),
            self.templates[0].targets, self.options_style)
        name, kind = templates_lib.NO_TEMPLATE_NAME, templates_lib.NO_TEMPLATE_KIND
      else:
        template = templates_lib.choose(self.templates, self.task_name, key, self.seed)
        if pool:
          shots = [pool[i] for i in templates_lib.draw_exemplars(
              pool_keys, self.task_name, key, self.seed, self.few_shot.k)]
          inputs, targets = templates_lib.render_few_shot(
              template, record, shots, self.few_shot, self.options_style,
              self.count_tokens if self.few_shot.max_tokens else None)
        else:
          inputs, targets = templates_lib.render(template, record, self.options_style)
        name, kind = template.name, template.kind
      examples.append({
          "inputs": inputs, "targets": targets,
          "options": list(record.get(templates_lib.OPTIONS_FIELD, [])),
          "template_name": name, "template_kind": kind})
    examples = cleaning.length_filter(
        examples, self.count_tokens, self.max_input_tokens, self.max_target_tokens, counts)
    for ex in examples:
      usage[ex["template_name"]] += 1
    if not examples:
      raise ValueError(
          f"task {self.task_name!r}, split {split!r}: every record was removed"
          f" ({dict(counts)}); an empty split is an error")
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
            tf.constant([o for opts in options for o in opts], tf.string, shape=[sum(map(len, options))]),
            tf.constant([len(o) for o in options], tf.int64)),
        "template_name": tf.constant([ex["template_name"] for ex in picked], tf.string),
        "template_kind": tf.constant([ex["template_kind"] for ex in picked], tf.string),
    }
    return tf.data.Dataset.from_tensor_slices(columns)


def _no_template_input_fields(fields, templates):
  target_fields = set()
  for t in templates:
    target_fields.update(templates_lib.placeholders(t.targets))
  skip = target_fields | {templates_lib.OPTIONS_FIELD, templates_lib.RATIONALE_FIELD}
  return [f for f in fields if f not in skip]


def _as_fields(fields) -> dict[str, Any]:
  if isinstance(fields, Mapping):
    return dict(fields)
  if isinstance(fields, str):
    raise TypeError("fields= must be a list of field names or a {field: source_key} dict, not a string")
  return {f: f for f in fields}


def register_task(
    name: str, *, source, templates: Sequence[templates_lib.Template], fields,
    postprocess_fn: Callable[..., Any] | None = None,
    metric_fns: Sequence[Callable[..., Any]] = (),
    splits: Sequence[str] | None = None,
    vocabulary: str | seqio.Vocabulary = vocab_lib.BYTE,
    few_shot: int | templates_lib.FewShot | None = None,
    no_template: bool = False,
    template_kinds: Sequence[str] | None = None,
    options_style: templates_lib.OptionsStyle = templates_lib.OptionsStyle(),
    seed: int = 0,
    on_bad_record: str = "raise",
    dedup: str | None = "normalized",
    max_input_tokens: int | None = None,
    max_target_tokens: int | None = None,
    validate_fn: Callable[[Mapping[str, Any]], str | None] | None = None,
    metadata: Mapping[str, Any] | None = None,
    shuffle_buffer_size: int = 1000,
    overwrite: bool = False,
    _base_name: str | None = None, _variant: str = "",
) -> seqio.Task:
  """Registers an instruction task with seqio and returns the `seqio.Task`.

  Args:
    name: the seqio task name.
    source: a `t5tune.data.sources.Source`, or {split: file glob(s)} (format
      from the extension), or {split: records or a function returning them}.
    templates: the task's `Template`s; one is picked per example.
    fields: the record fields templates may use: a list of names, or
      {field: source key or function(raw record) -> value}. All are required.
      `options` (a string list) enables `{options_}`; `rationale` CoT.
    postprocess_fn, metric_fns: as in seqio (evaluation).
    splits: the splits to expose (default: all the source has).
    vocabulary: "byte", a SentencePiece .model path, or a seqio.Vocabulary.
    few_shot: k (or a `FewShot`) to render k train exemplars before each query.
    no_template: inputs are the raw input fields without instructions.
    template_kinds: keep only templates of these kinds.
    options_style: how `{options_}` is written.
    seed: template choice and few-shot draws are fixed by (task, example, seed).
    on_bad_record: "raise" (error with file:line) or "skip" (counted).
    dedup: None, "exact" or "normalized".
    max_input_tokens, max_target_tokens: drop rendered examples longer than these.
    validate_fn: record -> None, or a reason the record is invalid (removed, counted).
    metadata: free-form, e.g. {"cluster": "nli"}; mixtures can select on it.
    shuffle_buffer_size: seqio's per-task shuffle buffer.
    overwrite: replace a task of the same name instead of failing.
  """
  src = sources_lib.as_source(source)
  fields = _as_fields(fields)
  templates = list(templates)
  if template_kinds is not None:
    bad = set(template_kinds) - set(templates_lib.KINDS)
    if bad:
      raise ValueError(f"task {name!r}: template_kinds {sorted(bad)} not in {templates_lib.KINDS}")
    templates = [t for t in templates if t.kind in template_kinds]
  if not templates:
    raise ValueError(
        f"task {name!r}: no templates" +
        (f" of kinds {list(template_kinds)}" if template_kinds else "") +
        "; give at least one Template (its targets are also used by no_template)")
  templates_lib.check_fields(name, templates, list(fields))
  if isinstance(few_shot, int):
    few_shot = templates_lib.FewShot(k=few_shot) if few_shot > 0 else None
  if splits is None:
    splits = src.splits
  missing = [s for s in splits if s not in src.splits]
  if missing:
    raise ValueError(f"task {name!r}: splits {missing} are not in the source ({list(src.splits)})")
  vocabulary = vocab_lib.as_vocabulary(vocabulary)
  if on_bad_record not in cleaning.BAD_RECORD_MODES:
    raise ValueError(f"task {name!r}: on_bad_record={on_bad_record!r} must be one of {cleaning.BAD_RECORD_MODES}")
  if dedup not in cleaning.DEDUP_MODES:
    raise ValueError(f"task {name!r}: dedup={dedup!r} must be one of {cleaning.DEDUP_MODES}")
  data_source = InstructionSource(
      name, src, fields, templates, vocabulary, few_shot=few_shot,
      no_template=no_template, options_style=options_style, seed=seed,
      on_bad_record=on_bad_record, dedup=dedup,
      max_input_tokens=max_input_tokens, max_target_tokens=max_target_tokens,
      validate_fn=validate_fn, splits=splits)
  if overwrite:
    seqio.TaskRegistry.remove(name)
  elif name in seqio.TaskRegistry.names():
    raise ValueError(f"task {name!r} is already registered; pick another name or pass overwrite=True")
  output_features = {
      "inputs": seqio.Feature(vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary, add_eos=True),
  }
  task = seqio.TaskRegistry.add(
      name, source=data_source, output_features=output_features,
      preprocessors=[seqio.preprocessors.tokenize,
                     seqio.preprocessors.append_eos_after_trim],
      postprocess_fn=postprocess_fn, metric_fns=list(metric_fns),
      shuffle_buffer_size=shuffle_buffer_size)
  _TASKS[name] = TaskInfo(name, _base_name or name, _variant, dict(metadata or {}), data_source)
  return task


_VARIANT = re.compile(r"^(?:(zs_opt|zs_noopt|cot|inv))?(?:_?fs(\d+))?$")


def variant_name(base: str, variant: str) -> str:
  """The registered name of a variant: BASE, BASE_zs_opt, BASE_fs3, BASE_no_template."""
  return f"{base}_{variant}" if variant else base


def parse_variant(variant: str) -> dict[str, Any]:
  """register_task keyword arguments for a variant string (see the module docstring)."""
  if variant == NO_TEMPLATE_VARIANT:
    return {"no_template": True}
  m = _VARIANT.match(variant)
  if m is None:
    raise ValueError(
        f"variant {variant!r}: expected '', a kind {templates_lib.KINDS}, 'fsK',"
        f" 'KIND_fsK' or {NO_TEMPLATE_VARIANT!r}")
  kw = {}
  if m.group(1):
    kw["template_kinds"] = [m.group(1)]
  if m.group(2):
    kw["few_shot"] = int(m.group(2))
  return kw


def register_variants(base: str, variants: Sequence[str] = ("",), **kwargs) -> list[str]:
  """Registers several variants of one task (same source); returns their names."""
  names = []
  for variant in variants:
    kw = dict(kwargs)
    for key, value in parse_variant(variant).items():
      if key == "few_shot" and isinstance(kw.get("few_shot"), templates_lib.FewShot):
        value = dataclasses.replace(kw["few_shot"], k=value)
      kw[key] = value
    name = variant_name(base, variant)
    register_task(name, _base_name=base, _variant=variant, **kw)
    names.append(name)
  return names


def get_info(name: str) -> TaskInfo:
  if name not in _TASKS:
    raise KeyError(f"{name!r} is not a task registered with t5tune.data.register_task")
  return _TASKS[name]


def task_names(where: Callable[[TaskInfo], bool] | None = None) -> list[str]:
  """Names of t5tune-registered tasks, optionally those whose TaskInfo passes `where`."""
  return sorted(n for n, info in _TASKS.items() if where is None or where(info))


def mixture_info(name: str) -> Mapping[str, Any]:
  return _MIXTURES[name]


def _num_train_examples(task: seqio.Task) -> int:
  split = "train" if "train" in task.splits else task.splits[0]
  return task.num_input_examples(split)


def examples_proportional(cap: int | None = None) -> Callable[[seqio.Task], float]:
  """Rate = number of train examples, capped at `cap` (FLAN's examples-proportional mixing)."""
  def rate(task):
    n = _num_train_examples(task)
    return float(min(n, cap) if cap else n)
  rate.description = f"examples_proportional(cap={cap})"
  return rate


def temperature(t: float, cap: int | None = None) -> Callable[[seqio.Task], float]:
  """Rate = min(n, cap) ** (1 / t): t=1 is proportional, large t tends to uniform."""
  def rate(task):
    n = _num_train_examples(task)
    return float(min(n, cap) if cap else n) ** (1.0 / t)
  rate.description = f"temperature(t={t}, cap={cap})"
  return rate


def register_mixture(name: str, tasks: Sequence[str] | Callable[[TaskInfo], bool],
                     rate: float | str | Mapping[str, float] | Callable[[seqio.Task], float] = 1.0,
                     *, overwrite: bool = False) -> seqio.Mixture:
  """Registers a seqio Mixture of tasks (names or a TaskInfo predicate).

  rate: a constant weight; "examples" (proportional, no cap); a {task: weight}
  dict; or a function of the seqio.Task such as `examples_proportional(cap)`
  or `temperature(t, cap)`.
  """
  if callable(tasks) and not isinstance(tasks, (list, tuple)):
    names = task_names(tasks)
    if not names:
      raise ValueError(f"mixture {name!r}: no registered task matches the predicate")
  else:
    names = list(tasks)
  if not names:
    raise ValueError(f"mixture {name!r}: no tasks")
  known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"mixture {name!r}: {unknown} are not registered tasks or mixtures")
  if rate == "examples":
    rate = examples_proportional()
  if isinstance(rate, Mapping):
    missing = [n for n in names if n not in rate]
    if missing:
      raise ValueError(f"mixture {name!r}: explicit rates given but none for {missing}")
    entries = [(n, float(rate[n])) for n in names]
  else:
    entries = [(n, rate) for n in names]
  if overwrite:
    seqio.MixtureRegistry.remove(name)
  elif name in seqio.MixtureRegistry.names():
    raise ValueError(f"mixture {name!r} is already registered; pick another name or pass overwrite=True")
  mixture = seqio.MixtureRegistry.add(name, entries)
  _MIXTURES[name] = {
      "tasks": names,
      "rate": getattr(rate, "description", None) or (
          "explicit" if isinstance(rate, Mapping) else repr(rate))}
  return mixture
