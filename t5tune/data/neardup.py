"""Near-duplicate records: MinHash/LSH over character shingles, and Self-Instruct's ROUGE-L filter.

    pairs = neardup.find_pairs([("a", 0, text0), ("b", 0, text1), ...], threshold=0.8)
    kept = neardup.near_dedup(records, threshold=0.8, counts=counts)  # counts["duplicate_near"]
    f = neardup.RougeFilter(threshold=0.7); f.add("Write a poem about cats.")  # True: kept

MinHash/LSH (`datasketch`, the maintained library for it) finds candidate
pairs in near-linear time; every candidate is then checked with the exact
Jaccard similarity of the two shingle sets, so a reported pair is never an
LSH false positive and its similarity is exact. The LSH index is built at a
lower threshold than the one asked for (`_LSH_SLACK`), trading more exact
checks for recall at the threshold itself.

Shingles are character 5-grams of the normalised text (lower case, no
punctuation, one space): robust to small edits in short instructions, where
word shingles would leave too few to compare. A record's text is its fields
(all but `options`, which many records share) joined by newlines.

The second method is Self-Instruct's novelty filter (Wang et al. 2023): a new
instruction is dropped when its ROUGE-L F-measure (`rouge-score`, no stemmer,
as in their code) to any kept instruction is >= 0.7.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Hashable, Iterable, Mapping, Sequence

from t5tune import errors
from t5tune.data import cleaning
from t5tune.data import templates as templates_lib

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
SHINGLE_CHARS = 5
ROUGE_THRESHOLD = 0.7
REASON = "duplicate_near"
# The LSH index is built at threshold * _LSH_SLACK: at the asked threshold its
# candidate probability is then close to 1 (see the module docstring).
_LSH_SLACK = 0.75


def record_text(record: Mapping[str, Any]) -> str:
  """The text a record is compared by: its fields but `options`, in field order."""
  return "\n".join(str(v) for k, v in record.items() if k != templates_lib.OPTIONS_FIELD)


def shingles(text: str, n: int = SHINGLE_CHARS) -> set[bytes]:
  """Character n-grams of the normalised text (the whole text when shorter)."""
  norm = cleaning.normalize(text)
  if len(norm) <= n:
    return {norm.encode("utf-8")}
  return {norm[i:i + n].encode("utf-8") for i in range(len(norm) - n + 1)}


def jaccard(a: set, b: set) -> float:
  return len(a & b) / len(a | b) if (a or b) else 1.0


@dataclasses.dataclass(frozen=True)
class Pair:
  """Two near-duplicate items (keys as given) and their exact shingle Jaccard similarity."""
  first: Hashable
  second: Hashable
  similarity: float


class Index:
  """An LSH index of shingle sets; `add` returns the earlier items similar to the new one."""

  def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_NUM_PERM,
               seed: int = 1):
    import datasketch  # pylint: disable=g-import-not-at-top
    if not 0.0 < threshold <= 1.0:
      raise errors.UsageError(f"near-duplicate threshold {threshold} is not in (0, 1]",
                              where="--threshold", fix="pass e.g. 0.8")
    self.threshold = threshold
    self.num_perm = num_perm
    self.seed = seed
    self._datasketch = datasketch
    self._lsh = datasketch.MinHashLSH(threshold=max(0.05, threshold * _LSH_SLACK),
                                      num_perm=num_perm)
    self._shingles: dict[int, set[bytes]] = {}
    self._keys: list[Hashable] = []

  def similar(self, text: str) -> list[tuple[Hashable, float]]:
    """(key, similarity) of indexed items with similarity >= threshold, most similar first."""
    sh, mh = self._prepare(text)
    return self._matches(sh, mh)

  def _prepare(self, text):
    sh = shingles(text)
    mh = self._datasketch.MinHash(num_perm=self.num_perm, seed=self.seed)
    mh.update_batch(sorted(sh))
    return sh, mh

  def _matches(self, sh, mh):
    out = []
    for i in self._lsh.query(mh):
      sim = jaccard(sh, self._shingles[i])
      if sim >= self.threshold:
        out.append((self._keys[i], sim))
    return sorted(out, key=lambda x: -x[1])

  def add(self, key: Hashable, text: str, *, insert: bool = True) -> list[tuple[Hashable, float]]:
    """Matches `text` against the index, then (if `insert`) indexes it under `key`."""
    sh, mh = self._prepare(text)
    found = self._matches(sh, mh)
    if insert:
      i = len(self._keys)
      self._keys.append(key)
      self._shingles[i] = sh
      self._lsh.insert(i, mh)
    return found


def find_pairs(items: Iterable[tuple[Hashable, str]], threshold: float = DEFAULT_THRESHOLD,
               num_perm: int = DEFAULT_NUM_PERM) -> list[Pair]:
  """Every pair of items whose shingle Jaccard similarity is >= threshold (earlier item first)."""
  index = Index(threshold, num_perm)
  pairs = []
  for key, text in items:
    pairs.extend(Pair(other, key, sim) for other, sim in index.add(key, text))
  return pairs


def near_dedup(records: Sequence[dict[str, Any]], threshold: float,
               counts: collections.Counter) -> list[dict[str, Any]]:
  """Drops each record that is a near-duplicate of an earlier kept one, counted as `duplicate_near`."""
  index = Index(threshold)
  out = []
  for record in records:
    text = record_text(record)
    if index.similar(text):
      counts[REASON] += 1
      continue
    index.add(len(out), text)
    out.append(record)
  return out


def mixture_pairs(records_by_task: Mapping[str, Sequence[Mapping[str, Any]]],
                  threshold: float = DEFAULT_THRESHOLD, max_pairs: int = 50) -> dict[str, Any]:
  """Near-duplicate pairs within each task and across tasks: counts and the most similar pairs.

  Returns {"threshold", "within": {task: {"pairs", "records_involved"}},
  "across": {"pairs": n, "by_task_pair": {"a|b": n}}, "examples": [...]}, where
  examples lists up to `max_pairs` pairs (task, index, text of both) by similarity.
  """
  items = ((task, i, record_text(r)) for task, recs in records_by_task.items()
           for i, r in enumerate(recs))
  texts = {}

  def keyed():
    for task, i, text in items:
      texts[(task, i)] = text
      yield (task, i), text

  pairs = find_pairs(keyed(), threshold)
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
