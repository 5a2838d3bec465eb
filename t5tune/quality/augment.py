"""Augmentation: paraphrased templates and back-translated records, marked so evaluation can leave them out.

    extra = augment.paraphrase_templates(base_template, ["Q: {question}\\n{options_}", ...])
    data.register_task("my_qa_aug", templates=[base_template, *extra], ...,
                       metadata=augment.mark({"cluster": "qa"}, "paraphrase",
                                             templates=[t.name for t in extra]))

    forward = augment.translation_fn("tr_en_de", generate_fn)   # a registered translation task
    backward = augment.translation_fn("tr_de_en", generate_fn)
    records, counts = augment.back_translate(records, "question", forward, backward, via="de")

Paraphrases are extra templates (the user's wordings of a template's inputs,
with its targets and kind), so they mix like any template. Back-translation
rewrites one field of each record through a pair of translation tasks: the
text is rendered into the forward task's first template, decoded, rendered
into the backward task's template and decoded again; a round trip that comes
back empty or unchanged is dropped (counted). Both kinds are recorded in the
task's metadata under `augmentation` (back-translated records also carry it
per record), and `is_augmented` is what evaluation checks: tasks selected by
cluster skip augmented ones.
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Mapping, Sequence

from t5tune.data import templates as templates_lib

KEY = "augmentation"
METHODS = ("paraphrase", "back_translation")
TextFn = Callable[[list[str]], list[str]]


def paraphrase_templates(base: templates_lib.Template, wordings: Sequence[str]
                         ) -> list[templates_lib.Template]:
  """One template per wording of `base.inputs` (same placeholders, targets and kind)."""
  want = set(templates_lib.placeholders(base.inputs))
  out = []
  for i, wording in enumerate(wordings):
    got = set(templates_lib.placeholders(wording))
    if got != want:
      raise ValueError(
          f"paraphrase {i} of template {base.name!r} uses placeholders {sorted(got)};"
          f" it must use exactly those of the template, {sorted(want)}")
    out.append(templates_lib.Template(f"{base.name}_para{i}", wording, base.targets, base.kind))
  return out


def mark(metadata: Mapping[str, Any] | None, method: str, **details: Any) -> dict[str, Any]:
  """Task metadata recording an augmentation (`is_augmented` reads it)."""
  if method not in METHODS:
    raise ValueError(f"augmentation method {method!r}: expected one of {METHODS}")
  return {**dict(metadata or {}), KEY: {"method": method, **details}}


def is_augmented(metadata: Mapping[str, Any]) -> bool:
  return bool(metadata.get(KEY))


def translation_fn(task: str, generate_fn: TextFn) -> TextFn:
  """Texts -> translations: each rendered into the task's first template and decoded by the model."""
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  template = tasks_lib.get_info(task, tasks_lib.INSTRUCTION).source.templates[0]
  fields = templates_lib.placeholders(template.inputs)
  if len(fields) != 1:
    raise ValueError(
        f"task {task!r}: back-translation renders one text into template {template.name!r},"
        f" whose inputs use {len(fields)} fields ({fields}); pick a task whose template has one")

  def translate(texts: list[str]) -> list[str]:
    return generate_fn([template.inputs.format(**{fields[0]: t}) for t in texts])
  return translate


def back_translate(records: Sequence[Mapping[str, Any]], field: str, forward: TextFn,
                   backward: TextFn, *, via: str = "") -> tuple[list[dict[str, Any]], collections.Counter]:
  """New records whose `field` went there and back; each carries its origin under `augmentation`."""
  texts = [str(r[field]) for r in records]
  returned = backward(forward(texts))
  out, counts = [], collections.Counter()
  for i, (record, before, after) in enumerate(zip(records, texts, returned)):
    after = after.strip()
    if not after:
      counts["empty"] += 1
    elif after == before.strip():
      counts["unchanged"] += 1
    else:
      counts["kept"] += 1
      out.append({**dict(record), field: after,
                  KEY: {"method": "back_translation", "via": via, "field": field, "source": i}})
  return out, counts
