"""Near-duplicate reports over a mixture (MinHash/LSH pairs within and across tasks), and Self-Instruct's ROUGE-L filter.

    report = neardup.mixture_pairs({"task_a": records_a, "task_b": records_b}, threshold=0.8)
    f = neardup.RougeFilter(threshold=0.7); f.add("Write a poem about cats.")  # True: kept

The pairs come from `t5tune.data.cleaning`'s MinHash/LSH index (the one
that `dedup="near"` uses when a task is registered), so a pair reported here
is a pair that near-dedup would drop.

The second tool is Self-Instruct's novelty filter (Wang et al. 2023): a new
instruction is dropped when its ROUGE-L F-measure (`rouge-score`, no stemmer,
as in their code) to any kept instruction is >= 0.7.
"""
from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping, Sequence

from t5tune.data import cleaning

ROUGE_THRESHOLD = 0.7


def mixture_pairs(records_by_task: Mapping[str, Sequence[Mapping[str, Any]]],
                  threshold: float = cleaning.NEAR_THRESHOLD, max_pairs: int = 50) -> dict[str, Any]:
  """Near-duplicate pairs within each task and across tasks: counts and the most similar pairs.

  Returns {"threshold", "within": {task: {"pairs", "records_involved"}},
  "across": {"pairs": n, "by_task_pair": {"a|b": n}}, "examples": [...]}, where
  examples lists up to `max_pairs` pairs (task, index, text of both) by similarity.
  """
  items = ((task, i, cleaning.record_text(r)) for task, recs in records_by_task.items()
           for i, r in enumerate(recs))
  texts = {}

  def keyed():
    for task, i, text in items:
      texts[(task, i)] = text
      yield (task, i), text

  pairs = cleaning.find_pairs(keyed(), threshold)
  within = {task: {"pairs": 0, "records_involved": 0} for task in records_by_task}
  involved = collections.defaultdict(set)
  by_task_pair = collections.Counter()
  for p in pairs:
    (ta, ia), (tb, ib) = p.first, p.second
    if ta == tb:
      within[ta]["pairs"] += 1
      involved[ta].update((ia, ib))
    else:
      by_task_pair["|".join(sorted((ta, tb)))] += 1
  for task, idx in involved.items():
    within[task]["records_involved"] = len(idx)
  top = sorted(pairs, key=lambda p: -p.similarity)[:max_pairs]
  return {
      "threshold": threshold,
      "within": within,
      "across": {"pairs": sum(by_task_pair.values()),
                 "by_task_pair": dict(by_task_pair.most_common())},
      "examples": [{"similarity": round(p.similarity, 4),
                    "a": {"task": p.first[0], "index": p.first[1], "text": texts[p.first]},
                    "b": {"task": p.second[0], "index": p.second[1], "text": texts[p.second]}}
                   for p in top],
  }


class RougeFilter:
  """Self-Instruct's novelty filter: keep a text unless ROUGE-L F to a kept one is >= threshold."""

  def __init__(self, threshold: float = ROUGE_THRESHOLD, kept: Iterable[str] = ()):
    from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
    self.threshold = threshold
    self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    self.kept: list[str] = []
    for text in kept:
      self.kept.append(text)

  def closest(self, text: str) -> tuple[float, str | None]:
    """The highest ROUGE-L F-measure of `text` to a kept text, and that text."""
    best, which = 0.0, None
    for other in self.kept:
      score = self._scorer.score(other, text)["rougeL"].fmeasure
      if score > best:
        best, which = score, other
    return best, which

  def add(self, text: str) -> bool:
    """Keeps `text` (returns True) when it is novel enough, else returns False."""
    score, _ = self.closest(text)
    if score >= self.threshold:
      return False
    self.kept.append(text)
    return True
