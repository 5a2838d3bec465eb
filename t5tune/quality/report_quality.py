"""Quality sections of the data report: metadata, diversity, clarity, consistency, duplicates, contamination.

Per task and split (`split_quality`, under `quality` in the report):

  diversity{distinct_3, mattr, verb_noun_pairs, distinct_verb_noun}
  clarity{words{p50, p90, mean}, question, imperative}   shares of instructions
  consistency{TEMPLATE: {examples, violations{reason: n}}}

For the whole report (`mixture_sections`): `metadata` (tasks per value of every
metadata key, and examples per template kind), `near_duplicates` (pairs within
and across tasks at a threshold, `t5tune.quality.neardup`), `contamination`
(training vs evaluation n-gram overlap, `t5tune.quality.contamination`, when an
evaluation mixture is given) and `label_issues` (counts per task from a
`t5tune data label-issues` JSONL, when given).

Verb-noun pairs follow Self-Instruct's diversity figure (the root verb of an
instruction and its first direct object), without its parser: Self-Instruct
used the Berkeley Neural Parser, and NLTK's tagger, like spaCy's models, needs
a separate model download, which this project avoids. The verb is the leading
word (as `report.instruction_diversity`), the noun the first later word that
is not a function word (`_FUNCTION_WORDS`). Adjectives are not told apart
("Write a short poem" gives (write, short)), so it is a lexical proxy of the
parser's pairs, reported as such. MATTR (moving-average type-token ratio, Covington & McFall
2010) is hand-written: it is one window average, and the packages that offer
it pull in NLP stacks this report does not need.
"""
from __future__ import annotations

import collections
import re
from typing import Any, Mapping, Sequence

import numpy as np

from t5tune.data import instruction_source
from t5tune.data import tasks as tasks_lib

_WORD = re.compile(r"[a-z][a-z'-]*")
_LABEL = re.compile(r"^\s*[\w ]{1,30}:")
MATTR_WINDOW = 50
_FUNCTION_WORDS = frozenset("""
a an the this that these those it its it's they them their there here you your we our i me my
he she his her him of in on at to for from by with about into over under as and or but if then
than so not no yes is are was were be been being do does did can could will would should may
might must shall all any each every some many much more most few one two three following given
below above each what which who whom whose when where why how whether
""".split())
# Leading words that do not start an imperative (questions, statements, labels).
_NON_IMPERATIVE = _FUNCTION_WORDS - {"given", "following"} | {"premise", "question", "text",
                                                               "input", "sentence", "q", "context"}


def _instruction_lines(text: str) -> list[str]:
  return [l for l in text.splitlines() if l.strip() and not _LABEL.match(l)]


def verb_noun(text: str) -> tuple[str, str] | None:
  """(leading verb, first later content word) of an instruction (see the module docstring)."""
  for line in _instruction_lines(text):
    words = _WORD.findall(line.lower())
    if not words:
      continue
    verb = words[0]
    if verb in _NON_IMPERATIVE:
      return None
    for w in words[1:]:
      if w not in _FUNCTION_WORDS:
        return verb, w
    return None
  return None


def mattr(words: Sequence[str], window: int = MATTR_WINDOW) -> float:
  """Moving-average type-token ratio; the plain ratio when there are fewer words than a window."""
  if not words:
    return 0.0
  if len(words) <= window:
    return len(set(words)) / len(words)
  counts = collections.Counter(words[:window])
  distinct = [len(counts)]  # distinct words of each window
  for i in range(window, len(words)):
    counts[words[i]] += 1
    old = words[i - window]
    counts[old] -= 1
    if counts[old] == 0:
      del counts[old]
    distinct.append(len(counts))
  return float(np.mean(distinct)) / window


def diversity(instructions: Sequence[str], top: int = 10) -> dict[str, Any]:
  words, trigrams, pairs = [], [], collections.Counter()
  for text in instructions:
    w = _WORD.findall(text.lower())
    words.extend(w)
    trigrams.extend(zip(w, w[1:], w[2:]))
    vn = verb_noun(text)
    if vn:
      pairs[" ".join(vn)] += 1
  return {
      "distinct_3": len(set(trigrams)) / len(trigrams) if trigrams else 0.0,
      "mattr": mattr(words),
      "distinct_verb_noun": len(pairs),
      "verb_noun_pairs": pairs.most_common(top),
  }


def clarity(instructions: Sequence[str]) -> dict[str, Any]:
  """Length in words and the shares of instructions that ask a question or give an order."""
  lengths = np.array([len(_WORD.findall(t.lower())) for t in instructions] or [0])
  question = imperative = 0
  for text in instructions:
    lines = _instruction_lines(text)
    question += any(l.rstrip().endswith("?") for l in lines)
    first = next((_WORD.findall(l.lower()) for l in lines if _WORD.search(l.lower())), [])
    imperative += bool(first) and first[0] not in _NON_IMPERATIVE
  n = max(1, len(instructions))
  return {"words": {"p50": float(np.percentile(lengths, 50)),
                    "p90": float(np.percentile(lengths, 90)), "mean": float(lengths.mean())},
          "question": question / n, "imperative": imperative / n}


def consistency(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Per template: examples and format violations (answer not an option, empty, equal to input)."""
  out = {}
  for ex in examples:
    entry = out.setdefault(ex["template_name"], {"examples": 0, "violations": collections.Counter()})
    entry["examples"] += 1
    target = ex["targets"].strip()
    if not target:
      entry["violations"]["empty_target"] += 1
    elif instruction_source.target_not_an_option(ex):
      entry["violations"]["target_not_in_options"] += 1
    if target and target == ex["inputs"].strip():
      entry["violations"]["target_equals_input"] += 1
  return {name: {"examples": e["examples"], "violations": dict(e["violations"])}
          for name, e in sorted(out.items())}


def split_quality(examples: Sequence[Mapping[str, Any]], instructions: Sequence[str]) -> dict[str, Any]:
  return {"diversity": diversity(instructions), "clarity": clarity(instructions),
          "consistency": consistency(examples)}


def metadata_summary(report: Mapping[str, Any]) -> dict[str, Any]:
  """Tasks per value of each metadata key, and examples per template kind, over the report."""
  by_key = collections.defaultdict(collections.Counter)
  kinds = collections.Counter()
  instructions = set(tasks_lib.task_names(lambda info: info.kind == tasks_lib.INSTRUCTION))
  for task, entry in report["tasks"].items():
    for key, value in entry.get("metadata", {}).items():
      by_key[key][str(value)] += 1
    if task in instructions:
      kind_of = {t.name: t.kind for t in tasks_lib.get_info(task).source.templates}
      for split in entry.get("splits", {}).values():
        for name, n in split["template_usage"].items():
          kinds[kind_of.get(name, "none")] += n
  return {"tasks_by": {k: dict(v.most_common()) for k, v in sorted(by_key.items())},
          "examples_by_template_kind": dict(kinds.most_common())}


def mixture_sections(name: str, report: Mapping[str, Any], *, split: str = "train",
                     near_threshold: float | None = 0.8, contamination_eval: str | None = None,
                     eval_split: str = "validation", ngram: int = 13,
                     label_issues_path: str | None = None, max_pairs: int = 20) -> dict[str, Any]:
  """The report's mixture-wide sections (see the module docstring)."""
  from t5tune.quality import contamination  # pylint: disable=g-import-not-at-top
  from t5tune.quality import label_issues  # pylint: disable=g-import-not-at-top
  from t5tune.quality import neardup  # pylint: disable=g-import-not-at-top
  out: dict[str, Any] = {"metadata": metadata_summary(report)}
  if near_threshold is not None:
    records = contamination.task_records([name], split)
    out["near_duplicates"] = {"split": split, **neardup.mixture_pairs(records, near_threshold,
                                                                      max_pairs)}
  if contamination_eval:
    result = contamination.for_mixtures(name, contamination_eval, train_split=split,
                                        eval_split=eval_split, n=ngram)
    out["contamination"] = {"eval": contamination_eval, "eval_split": eval_split,
                            "train_split": split, **result.summary(),
                            "examples": [o.__dict__ for o in result.overlaps[:max_pairs]]}
  if label_issues_path:
    out["label_issues"] = {"file": label_issues_path,
                           "tasks": label_issues.read_counts(label_issues_path)}
  return out


def format_sections(report: Mapping[str, Any]) -> list[str]:
  """Text lines of the quality sections, for `report.format_text`."""
  lines = []
  meta = report.get("metadata")
  if meta:
    lines.append(f"  metadata: {meta['tasks_by']}  examples by template kind"
                 f" {meta['examples_by_template_kind']}")
  nd = report.get("near_duplicates")
  if nd:
    within = sum(w["pairs"] for w in nd["within"].values())
    lines.append(f"  near-duplicates [{nd['split']}] at Jaccard >= {nd['threshold']}:"
                 f" {within} pairs within tasks, {nd['across']['pairs']} across tasks")
    for e in nd["examples"][:3]:
      lines.append(f"    {e['similarity']:.2f}  {e['a']['task']}#{e['a']['index']}"
                   f" ~ {e['b']['task']}#{e['b']['index']}")
  cont = report.get("contamination")
  if cont:
    lines.append(f"  contamination vs {cont['eval']} [{cont['eval_split']}], {cont['n']}-grams:"
                 f" {cont['contaminated']}/{cont['records']} evaluation records overlap")
    for task, s in cont["tasks"].items():
      if s["contaminated"]:
        lines.append(f"    {task}: {100 * s['rate']:.1f}% ({s['contaminated']}/{s['records']})")
  li = report.get("label_issues")
  if li:
    lines.append(f"  label issues ({li['file']}): " + ", ".join(
        f"{t} {c['issues']}" for t, c in sorted(li["tasks"].items())))
  return lines
