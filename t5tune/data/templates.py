"""FLAN-style instruction templates: plain data, validated, rendered deterministically.

A `Template` is a named pair of format strings with `{field}` placeholders:

    Template("nli_1", inputs="Premise: {premise}\\nHypothesis: {hypothesis}\\n"
             "Does the premise entail the hypothesis?\\n{options_}",
             targets="{answer}", kind=ZERO_SHOT_OPTIONS)

Placeholders name fields of the task's records, plus `{options_}` for the
rendered answer-options block (see `OptionsStyle`). A chain-of-thought targets
string may use `{rationale}`. Literal braces are written `{{` and `}}`.

Template kinds (the FLAN collection's):
  ZERO_SHOT_OPTIONS ("zs_opt")  answer options shown in the inputs.
  ZERO_SHOT ("zs_noopt")        no options shown.
  COT ("cot")                   targets carry a rationale before the answer.
  INVERTED ("inv")              "turned around": asks for an input given the output.
  INFILL ("infill")             the instruction with a blank `{blank_}` where the answer goes,
                                in T5's span format: the blank is the first sentinel
                                (SENTINEL) in the inputs, the targets are the sentinel and
                                the answer; options (rank classification) read the same.
                                Needs a vocabulary with T5's sentinels (`get_vocabulary(path,
                                extra_ids=100)`), which the task checks at registration.

Few-shot is not a kind but a rendering mode (`FewShot`): k exemplars from the
task's train split are rendered with the query's template, joined by the
configured separators and put before the query. Which template an example
gets is random but deterministic: `choose` hashes (task, example key, seed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import string
from typing import Any, Callable, Mapping, Sequence

from t5tune import errors

ZERO_SHOT_OPTIONS = "zs_opt"
ZERO_SHOT = "zs_noopt"
COT = "cot"
INVERTED = "inv"
INFILL = "infill"
KINDS = (ZERO_SHOT_OPTIONS, ZERO_SHOT, COT, INVERTED, INFILL)

# The special placeholders: the rendered options block, and the field that
# holds a record's answer options (a list of strings).
OPTIONS_PLACEHOLDER = "options_"
OPTIONS_FIELD = "options"
RATIONALE_FIELD = "rationale"
# The blank of an infilling template, and T5's first sentinel that stands for it.
BLANK_PLACEHOLDER = "blank_"
SENTINEL = "<extra_id_0>"

# The template name and kind given to examples of a task's no-template variant.
NO_TEMPLATE_NAME = "no_template"
NO_TEMPLATE_KIND = "none"


@dataclasses.dataclass(frozen=True)
class Template:
  """One instruction template: inputs and targets format strings and a kind."""
  name: str
  inputs: str
  targets: str
  kind: str = ZERO_SHOT

  def __post_init__(self):
    if self.kind not in KINDS:
      raise errors.UsageError(
          f"template {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
    for side in ("inputs", "targets"):
      try:
        placeholders(getattr(self, side))
      except ValueError as e:
        raise errors.UsageError(
            f"template {self.name!r}: {side} string is not a valid format"
            f" string ({e}); write literal braces as '{{{{' and '}}}}'") from None
    blank = BLANK_PLACEHOLDER in placeholders(self.inputs)
    if (self.kind == INFILL) != blank or BLANK_PLACEHOLDER in placeholders(self.targets):
      raise errors.UsageError(
          f"template {self.name!r}: {{{BLANK_PLACEHOLDER}}} belongs in the inputs of an infilling"
          f" template (kind {INFILL!r}), and only there",
          fix=f"give kind={INFILL!r} with one {{{BLANK_PLACEHOLDER}}} in inputs, or drop the blank")


@dataclasses.dataclass(frozen=True)
class OptionsStyle:
  """How an answer-options block is written: header, then one line per option."""
  header: str = "OPTIONS:"
  bullet: str = "- "
  separator: str = "\n"

  def render(self, options: Sequence[str]) -> str:
    """The options block: the header (if any), then one bulleted line per option, joined by the separator."""
    lines = [self.bullet + o for o in options]
    return self.separator.join(([self.header] if self.header else []) + lines)


@dataclasses.dataclass(frozen=True)
class FewShot:
  """Few-shot rendering: k train exemplars before the query.

  Exemplars are drawn deterministically (task, example key, seed) from the
  task's train split, never the query itself. With `max_tokens`, exemplars are
  dropped (last drawn first) until the rendered inputs fit the budget.
  k=0 renders no exemplars: a `register_variants` template whose "fsK"
  variants set k (the "" variant stays zero-shot).
  """
  k: int
  example_separator: str = "\n\n"
  target_separator: str = "\n"
  max_tokens: int | None = None

  def __post_init__(self):
    if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 0:
      raise errors.UsageError(f"FewShot(k={self.k!r}): k is the number of exemplars",
                              where="few_shot=", fix="give k >= 0 (0: zero-shot)")
    if self.max_tokens is not None and self.max_tokens < 1:
      raise errors.UsageError(f"FewShot(max_tokens={self.max_tokens!r}) must be positive",
                              where="few_shot=", fix="give a token budget >= 1, or None")


def placeholders(fmt: str) -> list[str]:
  """The field names a format string refers to, in order, without duplicates."""
  names = []
  for _, field_name, _, _ in string.Formatter().parse(fmt):
    if field_name is None:
      continue
    if not field_name or not field_name.isidentifier():
      raise ValueError(f"placeholder {{{field_name}}} must be a field name")
    if field_name not in names:
      names.append(field_name)
  return names


def check_fields(task: str, templates: Sequence[Template],
                 fields: Sequence[str]) -> None:
  """Rejects templates that name a field the task does not have."""
  available = set(fields)
  seen = set()
  for t in templates:
    if t.name in seen:
      raise errors.UsageError(f"task {task!r}: two templates are named {t.name!r}",
                              fix="give each template its own name")
    seen.add(t.name)
    for side in ("inputs", "targets"):
      for name in placeholders(getattr(t, side)):
        if name == BLANK_PLACEHOLDER:
          continue  # checked by Template
        if name == OPTIONS_PLACEHOLDER:
          if OPTIONS_FIELD not in available:
            raise errors.UsageError(
                f"task {task!r}, template {t.name!r}: {side} uses"
                f" {{{OPTIONS_PLACEHOLDER}}} but the task has no {OPTIONS_FIELD!r} field",
                fix="add it to fields= or drop the placeholder")
          continue
        if name not in available:
          raise errors.UsageError(
              f"task {task!r}, template {t.name!r}: {side} uses field"
              f" {{{name}}} which the task does not have (fields:"
              f" {sorted(available)})" + errors.did_you_mean(name, available),
              fix="rename the placeholder or add the field to fields=")


def stable_hash(*parts: Any) -> int:
  """A 64-bit hash of `parts` that is the same in every process (unlike hash())."""
  text = "\x1f".join(str(p) for p in parts)
  return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def choose(templates: Sequence[Template], task: str, key: str,
           seed: int) -> Template:
  """The template this example gets: random, but fixed by (task, key, seed)."""
  return templates[stable_hash("template", task, key, seed) % len(templates)]


def _values(record: Mapping[str, Any], style: OptionsStyle) -> dict[str, Any]:
  values = dict(record)
  values[OPTIONS_PLACEHOLDER] = style.render(record.get(OPTIONS_FIELD) or [])
  values[BLANK_PLACEHOLDER] = SENTINEL
  return values


def infill_target(template: Template, text: str) -> str:
  """A target (or an option) as `template` asks for it: after the sentinel when it is infilling."""
  return f"{SENTINEL} {text}" if template.kind == INFILL else text


def render(template: Template, record: Mapping[str, Any],
           style: OptionsStyle = OptionsStyle()) -> tuple[str, str]:
  """(inputs, targets) of one record under one template."""
  values = _values(record, style)
  return template.inputs.format(**values), infill_target(template, template.targets.format(**values))


def render_no_template(record: Mapping[str, Any], input_fields: Sequence[str],
                       targets: str, style: OptionsStyle = OptionsStyle()
                       ) -> tuple[str, str]:
  """The FLAN "no template" ablation: the raw input fields, one per line."""
  values = _values(record, style)
  parts = [str(record[f]) for f in input_fields if str(record[f])]
  if record.get(OPTIONS_FIELD):
    parts.append(values[OPTIONS_PLACEHOLDER])
  return "\n".join(parts), targets.format(**values)


def draw_exemplars(pool_keys: Sequence[str], task: str, key: str, seed: int,
                   k: int) -> list[int]:
  """Indices of k exemplars from the train pool, never the one whose key is `key`.

  Draws k + 1 distinct indices (cost O(k), not O(pool)) and drops the query's
  own record if it is among them, so the draw depends only on (task, key, seed).
  """
  if k <= 0:
    return []
  rng = random.Random(stable_hash("few_shot", task, key, seed))
  drawn = rng.sample(range(len(pool_keys)), min(k + 1, len(pool_keys)))
  return [i for i in drawn if pool_keys[i] != key][:k]


def render_few_shot(template: Template, record: Mapping[str, Any],
                    exemplars: Sequence[Mapping[str, Any]], few_shot: FewShot,
                    style: OptionsStyle = OptionsStyle(),
                    count_tokens: Callable[[str], int] | None = None
                    ) -> tuple[str, str]:
  """(inputs, targets) with exemplars rendered by the same template before the query."""
  query_inputs, query_targets = render(template, record, style)
  shots = []
  for ex in exemplars:
    ex_inputs, ex_targets = render(template, ex, style)
    shots.append(ex_inputs + few_shot.target_separator + ex_targets)
  while True:
    inputs = few_shot.example_separator.join(shots + [query_inputs])
    if (not shots or few_shot.max_tokens is None or count_tokens is None or
        count_tokens(inputs) <= few_shot.max_tokens):
      return inputs, query_targets
    shots.pop()
