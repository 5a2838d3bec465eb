"""Train/evaluation contamination: n-gram overlap between evaluation and training records.

    result = contamination.find({"eval_task": eval_records}, {"train_a": recs, ...}, n=13)
    result.rates()            # {eval task: share of its records with an overlap}
    contamination.for_mixtures("train_mix", "eval_mix")        # the same on registered tasks
    contamination.clean_mask("eval_task", "validation", ["train_mix"])  # per evaluation example

An evaluation record is contaminated by a training task when one of its
word n-grams (default 13, as GPT-3's and FLAN's analyses) occurs in a record
of that task. Words are lower-cased `\\w+` runs; n-grams never cross a field
boundary, and the `options` field is ignored (answer options are shared by
design). Records are compared, not rendered examples, so instruction
templates that train and evaluation share do not count as overlap. A field
shorter than n words but at least `min_n` (default 8) is matched as a whole
(GPT-3's treatment of short examples); shorter fields are not checked, so a
record whose every field is shorter than `min_n` cannot be flagged
(`checked` counts the records that could be).

Few-shot variants render training exemplars into their inputs by design; the
query record is what is checked here (`clean_mask` maps examples to records).
"""
from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any, Mapping, Sequence

from t5tune import errors
from t5tune.data import templates as templates_lib

DEFAULT_N = 13
DEFAULT_MIN_N = 8
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
  return _WORD.findall(text.lower())


def _fields(record: Mapping[str, Any]) -> list[list[str]]:
  return [words(str(v)) for k, v in record.items() if k != templates_lib.OPTIONS_FIELD]


@dataclasses.dataclass(frozen=True)
class Overlap:
  """One contaminated evaluation record and the training record it overlaps."""
  eval_task: str
  eval_index: int
  train_task: str
  train_index: int
  ngram: str


@dataclasses.dataclass
class Result:
  """Per evaluation task: records, checkable records, contaminated ones (by training task)."""
  n: int
  min_n: int
  records: dict[str, int]
  checked: dict[str, int]
  dirty: dict[str, set[int]]
  dirty_by_train: dict[str, dict[str, int]]
  overlaps: list[Overlap]

  def rates(self) -> dict[str, float]:
    return {t: len(self.dirty[t]) / self.records[t] if self.records[t] else 0.0
            for t in self.records}

  def summary(self) -> dict[str, Any]:
    """A JSON-ready summary (what the quality report shows)."""
    return {
        "n": self.n, "min_n": self.min_n,
        "tasks": {t: {"records": self.records[t], "checked": self.checked[t],
                      "contaminated": len(self.dirty[t]), "rate": self.rates()[t],
                      "by_train_task": dict(sorted(self.dirty_by_train[t].items()))}
                  for t in self.records},
        "contaminated": sum(len(d) for d in self.dirty.values()),
        "records": sum(self.records.values()),
    }


def _eval_grams(record, n, min_n):
  """(gram length, gram) of one evaluation record."""
  out = []
  for toks in _fields(record):
    if len(toks) >= n:
      out.extend((n, " ".join(toks[i:i + n])) for i in range(len(toks) - n + 1))
    elif len(toks) >= min_n:
      out.append((len(toks), " ".join(toks)))
  return out


def find(eval_sets: Mapping[str, Sequence[Mapping[str, Any]]],
         train_sets: Mapping[str, Sequence[Mapping[str, Any]]],
         n: int = DEFAULT_N, min_n: int = DEFAULT_MIN_N) -> Result:
  """Overlaps of every evaluation task's records with every training task's records."""
  if n < 1 or min_n < 1:
    raise errors.UsageError(f"n-gram lengths n={n} and min_n={min_n} must be >= 1",
                            where="--ngram / --min_ngram", fix="pass positive lengths")
  min_n = min(min_n, n)
  eval_grams = {t: [_eval_grams(r, n, min_n) for r in recs] for t, recs in eval_sets.items()}
  wanted = collections.defaultdict(set)  # gram length -> grams some evaluation record has
  for per_task in eval_grams.values():
    for grams in per_task:
      for length, gram in grams:
        wanted[length].add(gram)
  # gram -> [(train task, record index)]: only grams an evaluation record has are
  # kept, so memory follows the evaluation sets, not the (larger) training sets.
  owners: dict[tuple[int, str], list[tuple[str, int]]] = collections.defaultdict(list)
  for task, recs in train_sets.items():
    for index, record in enumerate(recs):
      for toks in _fields(record):
        for length, grams in wanted.items():
          for i in range(len(toks) - length + 1):
            gram = " ".join(toks[i:i + length])
            if gram in grams:
              entry = owners[(length, gram)]
              if not entry or entry[-1][0] != task:
                entry.append((task, index))
  records, checked, dirty, by_train, overlaps = {}, {}, {}, {}, []
  for task, per_record in eval_grams.items():
    records[task] = len(per_record)
    checked[task] = sum(1 for g in per_record if g)
    dirty[task], by_train[task] = set(), collections.Counter()
    for index, grams in enumerate(per_record):
      seen = {}
      for key in grams:
        for train_task, train_index in owners.get(key, ()):
          seen.setdefault(train_task, (train_index, key[1]))
      if seen:
        dirty[task].add(index)
        for train_task, (train_index, gram) in sorted(seen.items()):
          by_train[task][train_task] += 1
          overlaps.append(Overlap(task, index, train_task, train_index, gram))
  return Result(n, min_n, records, checked, dirty, {k: dict(v) for k, v in by_train.items()},
                overlaps)


# -- on registered tasks and mixtures ----------------------------------------------

def task_records(names: Sequence[str], split: str) -> dict[str, list[dict[str, Any]]]:
  """Cleaned records of every t5tune task of `names` (tasks or mixtures) that has `split`."""
  from t5tune.data import mixtures  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  out = {}
  instructions = set(tasks_lib.task_names(lambda info: info.kind == tasks_lib.INSTRUCTION))
  for name in mixtures.leaf_task_names(names):
    if name not in instructions:
      continue
    source = tasks_lib.get_info(name).source
    if split in source.splits:
      out[name] = source.records(split)[0]
  return out


def for_mixtures(train: str | Sequence[str], evaluation: str | Sequence[str], *,
                 train_split: str = "train", eval_split: str = "validation",
                 n: int = DEFAULT_N, min_n: int = DEFAULT_MIN_N) -> Result:
  """`find` on registered tasks or mixtures: eval_split of `evaluation` vs train_split of `train`."""
  train = [train] if isinstance(train, str) else list(train)
  evaluation = [evaluation] if isinstance(evaluation, str) else list(evaluation)
  return find(task_records(evaluation, eval_split), task_records(train, train_split), n, min_n)


def clean_mask(task: str, split: str, train: Sequence[str], *, train_split: str = "train",
               n: int = DEFAULT_N, min_n: int = DEFAULT_MIN_N) -> list[bool]:
  """Per example of `task`'s split (in evaluation order): True if its record is not contaminated.

  This is what evaluation calls to report clean-subset scores beside full ones.
  """
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  source = tasks_lib.get_info(task, tasks_lib.INSTRUCTION).source
  result = find({task: source.records(split)[0]}, task_records(train, train_split), n, min_n)
  dirty = result.dirty[task]
  return [ex["record"] not in dirty for ex in source.prepared(split).examples]


def overlap_lines(result: Result, eval_sets, train_sets) -> list[dict[str, Any]]:
  """JSON-ready lines of every overlap, with both records (what the CLI writes)."""
  return [{"eval_task": o.eval_task, "eval_index": o.eval_index,
           "train_task": o.train_task, "train_index": o.train_index, "ngram": o.ngram,
           "eval_record": eval_sets[o.eval_task][o.eval_index],
           "train_record": train_sets[o.train_task][o.train_index]}
          for o in result.overlaps]
