"""The task registry: instruction tasks as ordinary seqio Tasks, their variants and metadata.

    from t5tune import data
    data.register_task(
        "my_nli", source={"train": "nli/train.jsonl", "validation": "nli/dev.jsonl"},
        fields=["premise", "hypothesis", "options", "answer"],
        templates=[data.Template("a", "{premise}\\nDoes this imply {hypothesis}?\\n{options_}",
                                 "{answer}", data.ZERO_SHOT_OPTIONS),
                   data.Template("b", "{premise} => {hypothesis}?", "{answer}")],
        metric_fns=[my_accuracy], metadata={"cluster": "nli"})
    seqio.get_mixture_or_task("my_nli").get_dataset({"inputs": 512, "targets": 8})

`register_task` builds a `seqio.Task` whose source is an
`t5tune.data.instruction_source.InstructionSource` (the records read, cleaned
and rendered as its `SourceSpec` says) and whose preprocessors tokenize with
the task's vocabulary and append EOS. Its examples carry `inputs`, `targets`
(token ids), `inputs_pretokenized`, `targets_pretokenized`, `options` (a
string list, empty if none), `template_name` and `template_kind`. Mixtures of
tasks are `t5tune.data.mixtures`'.

Pretraining tasks (`t5tune.data.pretraining.register_pretraining_task`) are
in the same registry: their `TaskInfo` has `kind="pretraining"` and the
`objective`, so listing, metadata selection and the truncation report see
every t5tune task.

Variants of one source (`register_variants`, names from `variant_name`):

    BASE                 all templates, zero-shot (the training variant)
    BASE_zs_opt          only templates of that kind (zs_opt, zs_noopt, cot, inv)
    BASE_fs3             few-shot, 3 exemplars from train (also BASE_zs_opt_fs3)
    BASE_no_template     raw input fields without instructions (`no_template=True`)
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, Sequence

import seqio

from t5tune import errors
from t5tune.data import instruction_source
from t5tune.data import sources as sources_lib
from t5tune.data import templates as templates_lib

NO_TEMPLATE_VARIANT = "no_template"
INSTRUCTION, PRETRAINING = "instruction", "pretraining"
KINDS = (INSTRUCTION, PRETRAINING)


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What t5tune knows about a task beyond seqio: kind, metadata, variant and objective.

  `source` is the task's `InstructionSource` for instruction tasks and its
  seqio DataSource of text for pretraining tasks; `objective` is the
  pretraining objective (`SpanCorruption`, `PrefixLM`), None for instructions.
  """
  name: str
  base_name: str
  variant: str
  metadata: Mapping[str, Any]
  source: Any
  kind: str = INSTRUCTION
  objective: Any = None


_TASKS: dict[str, TaskInfo] = {}


def add_info(info: TaskInfo) -> None:
  """Records a task registered with seqio in the one t5tune registry."""
  if info.kind not in KINDS:
    raise ValueError(f"task kind {info.kind!r} is not one of {KINDS}")
  _TASKS[info.name] = info


def check_splits(wanted, available, *, where: str) -> None:
  """Raises a UsageError naming the wanted splits that the source does not have."""
  missing = [s for s in wanted if s not in available]
  if missing:
    raise errors.UsageError(f"splits {missing} are not in the source ({list(available)})",
                            where=where, fix="name splits the source has")


# The positional parameters seqio accepts for a metric function (it checks only at evaluation).
METRIC_SIGNATURES = (("targets", "predictions"), ("targets", "scores"),
                     ("targets", "predictions", "aux_values"))


def check_metric_fns(name: str, metric_fns) -> None:
  """Refuses at registration a metric function seqio would reject only when evaluating."""
  for fn in metric_fns:
    label = getattr(fn, "__name__", repr(fn))
    try:
      params = inspect.signature(fn).parameters.items()
    except (TypeError, ValueError):
      raise errors.UsageError(f"metric {label!r} of task {name!r} is not a function",
                              where="metric_fns=", fix="pass functions") from None
    positional = tuple(k for k, p in params if p.default is inspect.Parameter.empty
                       and p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if positional not in METRIC_SIGNATURES:
      raise errors.UsageError(
          f"metric {label}{positional} of task {name!r} has the wrong parameters",
          where="metric_fns=", fix="define it as f(targets, predictions), f(targets, scores) or"
          " f(targets, predictions, aux_values) (e.g. t5tune.infer.metrics.accuracy)")


def claim_name(registry, kind: str, name: str, *, overwrite: bool, where: str) -> None:
  """Frees `name` in a seqio registry if `overwrite`, else refuses a name already taken."""
  if overwrite:
    registry.remove(name)
  elif name in registry.names():
    raise errors.UsageError(f"{kind} {name!r} is already registered", where=where,
                            fix="pick another name or pass overwrite=True")


def register_task(
    name: str, *, source, templates: Sequence[templates_lib.Template], fields,
    postprocess_fn: Callable[..., Any] | None = None,
    metric_fns: Sequence[Callable[..., Any]] = (),
    splits: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    shuffle_buffer_size: int = 1000,
    overwrite: bool = False,
    _base_name: str | None = None, _variant: str = "",
    **options: Any,
) -> seqio.Task:
  """Registers an instruction task with seqio and returns the `seqio.Task`.

  Args:
    name: the seqio task name.
    source: a `t5tune.data.sources.Source`, or {split: file glob(s)} (format
      from the extension), or {split: records or a function returning them}.
    templates: the task's `Template`s; one is picked per example.
    fields: the record fields templates may use: a list of names, or
      {field: source key or function(raw record) -> value}. All are required.
    postprocess_fn: as in seqio: applied to decoded text before the metrics.
    metric_fns: as in seqio: `f(targets, predictions)` or `f(targets, scores)`.
    splits: the splits to expose (default: all the source has).
    metadata: free-form, e.g. {"cluster": "nli"}; mixtures can select on it.
    shuffle_buffer_size: seqio's per-task shuffle buffer.
    overwrite: replace a task of the same name instead of failing.
    **options: the rest of the task's `instruction_source.SourceSpec`:
      vocabulary, few_shot, no_template, template_kinds, options_style, seed,
      on_bad_record, dedup, max_input_tokens, max_target_tokens, validate_fn.
  """
  spec = instruction_source.SourceSpec.from_options(
      name, fields=fields, templates=templates, **options)
  check_metric_fns(name, metric_fns)
  if postprocess_fn is not None and not callable(postprocess_fn):
    raise errors.UsageError(f"postprocess_fn={postprocess_fn!r} is not a function",
                            where=f"register_task({name!r}, postprocess_fn=...)",
                            fix="give f(text, example=None, is_target=False) or None")
  src = sources_lib.as_source(source)
  if splits is None:
    splits = src.splits
  check_splits(splits, src.splits, where=f"task {name!r}")
  claim_name(seqio.TaskRegistry, "task", name, overwrite=overwrite,
             where=f"register_task({name!r}, ...)")
  data_source = instruction_source.InstructionSource(name, src, spec, splits=splits)
  output_features = {
      "inputs": seqio.Feature(spec.vocabulary, add_eos=True),
      "targets": seqio.Feature(spec.vocabulary, add_eos=True),
  }
  task = seqio.TaskRegistry.add(
      name, source=data_source, output_features=output_features,
      # The offline cache (`t5tune data cache`) holds what comes before the placeholder: records
      # read, cleaned, templated (the template fixed by task, example and seed) and tokenized.
      # EOS after trimming depends on the feature lengths, so it runs after.
      preprocessors=[seqio.preprocessors.tokenize,
                     seqio.CacheDatasetPlaceholder(),
                     seqio.preprocessors.append_eos_after_trim],
      postprocess_fn=postprocess_fn, metric_fns=list(metric_fns),
      shuffle_buffer_size=shuffle_buffer_size)
  add_info(TaskInfo(name, _base_name or name, _variant, dict(metadata or {}), data_source))
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
    raise errors.UsageError(
        f"variant {variant!r} is not a variant name", where="variants",
        fix=f"expected '', a kind {templates_lib.KINDS}, 'fsK', 'KIND_fsK' or"
        f" {NO_TEMPLATE_VARIANT!r}")
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


def get_info(name: str, kind: str | None = None) -> TaskInfo:
  """The TaskInfo of a t5tune task; with `kind`, a task of another kind is a UsageError."""
  if name not in _TASKS:
    raise KeyError(f"{name!r} is not a task registered with t5tune.data.register_task"
                   " or register_pretraining_task")
  info = _TASKS[name]
  if kind is not None and info.kind != kind:
    raise errors.UsageError(f"task {name!r} is a {info.kind} task", where=name,
                            fix=f"name a {kind} task")
  return info


def task_names(where: Callable[[TaskInfo], bool] | None = None) -> list[str]:
  """Names of t5tune-registered tasks, optionally those whose TaskInfo passes `where`."""
  return sorted(n for n, info in _TASKS.items() if where is None or where(info))


def registered_template(ref: str) -> tuple[templates_lib.Template, templates_lib.OptionsStyle]:
  """The template `TASK:TEMPLATE` (or the only template of `TASK`) with the task's options style.

  For callers that render prompts outside seqio (the server's --template) the
  way the task renders its examples. Unknown names are a UsageError with the
  closest registered name.
  """
  task, sep, name = ref.partition(":")
  fix = ("give TASK:TEMPLATE of a task registered by an imported module (--module),"
         " or a template string with {field} placeholders")
  instructions = task_names(lambda info: info.kind == INSTRUCTION)
  if task not in instructions:
    raise errors.UsageError(f"{task!r} is not a registered instruction task"
                            + errors.did_you_mean(task, instructions), where=ref, fix=fix)
  source = _TASKS[task].source
  by_name = {t.name: t for t in source.templates}
  if not sep and len(by_name) == 1:
    name = next(iter(by_name))
  if name not in by_name:
    raise errors.UsageError(
        f"task {task!r} has no template {name!r} (it has {sorted(by_name)})"
        + (errors.did_you_mean(name, by_name) if name else ""), where=ref, fix=fix)
  return by_name[name], source.spec.options_style
