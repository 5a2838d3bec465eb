"""Flan 2022's prompt formats: zero- and few-shot, with and without options, and randomised options blocks.

    register_task(..., formats=formats.Flan2022(max_exemplars=3, max_tokens=512))

With `formats` set, every example of a task gets one of four STYLES, drawn
uniformly (so the four come in equal parts, up to sampling error) and fixed
by (task, example key, seed):

  zs_opt    zero-shot, the answer options shown
  zs_noopt  zero-shot, no options block (the template's `{options_}` left out)
  fs_opt    few-shot with options: exemplars first, each with its answer
  fs_noopt  few-shot, no options block

Few-shot exemplars come from the task's *train* split only (never the
query's own record), are rendered with the query's template and options
format, and the last drawn are dropped until the inputs fit `max_tokens`.
A task without a train split gets only the zero-shot styles.

The options block is randomised per example (fixed by task, key, seed): an
opening line from OPENINGS, item labels from LABELINGS and a separator
(one item per line, or inline). When the items are lettered ("(A) ...",
"A. ...") the target is the answer's label, not its text, and the example's
options (which rank classification scores) are the labels, so the two agree.

Nothing here reads data: `t5tune.data.instruction_source` calls `render`.
"""
from __future__ import annotations

import dataclasses
import random
import re
import string
from typing import Any, Callable, Mapping, Sequence

from t5tune import errors
from t5tune.data import templates as templates_lib

ZS_OPT, ZS_NOOPT, FS_OPT, FS_NOOPT = "zs_opt", "zs_noopt", "fs_opt", "fs_noopt"
STYLES = (ZS_OPT, ZS_NOOPT, FS_OPT, FS_NOOPT)
ZERO_SHOT_STYLES = (ZS_OPT, ZS_NOOPT)

# Openings of an options block, in this project's words.
OPENINGS = ("OPTIONS:", "Choose one:", "Pick from these answers:", "Possible answers:",
            "Select one of the following.", "The choices are:", "Answer with one of:",
            "Candidates:")
_LETTERS = string.ascii_uppercase
# name: (item label of option i, the label written as the target; None = the option's text).
LABELINGS: dict[str, tuple[Callable[[int], str], Callable[[int], str] | None]] = {
    "dash": (lambda i: "- ", None),
    "star": (lambda i: "* ", None),
    "paren_letter": (lambda i: f"({_LETTERS[i]}) ", lambda i: f"({_LETTERS[i]})"),
    "letter_dot": (lambda i: f"{_LETTERS[i]}. ", lambda i: _LETTERS[i]),
    "letter_paren": (lambda i: f"{_LETTERS[i]}) ", lambda i: f"{_LETTERS[i]})"),
}
SEPARATORS = ("\n", " ")


@dataclasses.dataclass(frozen=True)
class Flan2022:
  """The formats' settings: at most `max_exemplars` shots, inputs pruned to `max_tokens`."""
  max_exemplars: int = 3
  max_tokens: int = 512
  styles: tuple[str, ...] = STYLES
  example_separator: str = "\n\n"
  target_separator: str = "\n"

  def __post_init__(self):
    bad = [s for s in self.styles if s not in STYLES]
    if isinstance(self.styles, str) or bad or not self.styles:
      raise errors.UsageError(f"Flan2022 styles {self.styles!r}: each must be one of {STYLES}",
                              where="formats=Flan2022(styles=...)", fix="give a tuple of them")
    for key in ("max_exemplars", "max_tokens"):
      value = getattr(self, key)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.UsageError(f"Flan2022 {key}={value!r} must be an integer of at least 1",
                                where=f"formats=Flan2022({key}=...)", fix="give 1 or more")


@dataclasses.dataclass(frozen=True)
class OptionsFormat:
  """One randomised way of writing an options block."""
  opening: str
  labeling: str
  separator: str

  @property
  def lettered(self) -> bool:
    return LABELINGS[self.labeling][1] is not None

  def render(self, options: Sequence[str]) -> str:
    """The options block: the opening, then each option with its item label, joined by the separator."""
    item = LABELINGS[self.labeling][0]
    return self.separator.join([self.opening] + [item(i) + o for i, o in enumerate(options)])

  def labels(self, n: int) -> list[str]:
    """The targets that stand for options 0..n-1 (their labels when lettered)."""
    target = LABELINGS[self.labeling][1]
    return [target(i) for i in range(n)] if target else []


def options_format(task: str, key: str, seed: int, num_options: int) -> OptionsFormat:
  """The options format of one example: random, fixed by (task, key, seed)."""
  rng = random.Random(templates_lib.stable_hash("options_format", task, key, seed))
  names = [n for n in LABELINGS if LABELINGS[n][1] is None or num_options <= len(_LETTERS)]
  return OptionsFormat(rng.choice(OPENINGS), rng.choice(names), rng.choice(SEPARATORS))


def style(task: str, key: str, seed: int, styles: Sequence[str]) -> str:
  """The style of one example: uniform over `styles`, fixed by (task, key, seed)."""
  return styles[templates_lib.stable_hash("flan2022_style", task, key, seed) % len(styles)]


def _tidy(text: str) -> str:
  """Text with the options block left out: no trailing spaces, at most one blank line in a row."""
  text = "\n".join(line.rstrip() for line in text.split("\n"))
  return re.sub(r"\n{3,}", "\n\n", text).strip()


def render_one(template: templates_lib.Template, record: Mapping[str, Any],
               fmt: OptionsFormat, show_options: bool) -> tuple[str, str, list[str]]:
  """(inputs, targets, options scored) of one record under a template and options format."""
  values = dict(record)
  options = list(record.get(templates_lib.OPTIONS_FIELD) or [])
  answer_is_target = (template.kind != templates_lib.INVERTED
                      and "{answer}" in template.targets and "answer" in values)
  values[templates_lib.OPTIONS_PLACEHOLDER] = fmt.render(options) if show_options and options else ""
  values[templates_lib.BLANK_PLACEHOLDER] = templates_lib.SENTINEL
  scored = options
  if show_options and options and fmt.lettered and answer_is_target:
    labels = fmt.labels(len(options))
    if values["answer"] in options:
      values["answer"] = labels[options.index(values["answer"])]
      scored = labels
  inputs = template.inputs.format(**values)
  if not values[templates_lib.OPTIONS_PLACEHOLDER]:
    inputs = _tidy(inputs)
  infill = lambda text: templates_lib.infill_target(template, text)
  return inputs, infill(template.targets.format(**values)), [infill(o) for o in scored]


def render(template: templates_lib.Template, record: Mapping[str, Any], *, task: str, key: str,
           seed: int, config: Flan2022, pool: Sequence[Mapping[str, Any]],
           pool_keys: Sequence[str], count_tokens: Callable[[str], int]) -> dict[str, Any]:
  """One example in a Flan 2022 format: {inputs, targets, options, format, shots}.

  `pool` / `pool_keys`: the task's train records and their content keys (empty
  when the task has no train split: zero-shot styles only).
  """
  styles = config.styles if pool else tuple(s for s in config.styles if s in ZERO_SHOT_STYLES)
  if not styles:
    raise errors.UsageError(
        f"task {task!r} has no train split, and its formats {config.styles} are all few-shot",
        where="formats=Flan2022(styles=...)", fix="add a zero-shot style or a train split")
  chosen = style(task, key, seed, styles)
  options = record.get(templates_lib.OPTIONS_FIELD) or []
  fmt = options_format(task, key, seed, len(options))
  show = chosen in (ZS_OPT, FS_OPT)
  inputs, targets, scored = render_one(template, record, fmt, show)
  shots = []
  if chosen in (FS_OPT, FS_NOOPT):
    for i in templates_lib.draw_exemplars(pool_keys, task, key, seed, config.max_exemplars):
      ex_inputs, ex_targets, _ = render_one(template, pool[i], fmt, show)
      shots.append(ex_inputs + config.target_separator + ex_targets)
    while shots and count_tokens(config.example_separator.join(shots + [inputs])) > config.max_tokens:
      shots.pop()  # the last drawn goes first
  return {"inputs": config.example_separator.join(shots + [inputs]), "targets": targets,
          "options": list(scored), "format": chosen, "shots": len(shots)}
