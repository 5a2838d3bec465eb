"""Label issues: records whose given answer a model finds unlikely, and high-loss generation targets.

    items = label_issues.classification_items("my_nli", "train")
    scores = ...  # per item, the log-likelihood of every option (t5tune rank classification)
    rows = label_issues.rank(items, scores)   # every item, most suspicious first; row["issue"]
    label_issues.write_jsonl(rows, "issues.jsonl", only_issues=True)

    rows = label_issues.loss_outliers(items, losses, top_fraction=0.05)  # generation tasks

This module holds the model-free half: which examples to score, how option
scores become probabilities (a softmax over the options' summed
log-likelihoods: rank classification's own preference, normalised), and the
ranking by confident learning (`cleanlab.filter.find_label_issues` for the
flags, `cleanlab.rank.get_label_quality_scores` for the order). The scores
come from t5tune's rank classification (`t5tune.infer.api.classify`), wired
by `t5tune data label-issues`, which can also train cross-validation folds
with t5tune's trainer so that every record is scored by a model that did not
train on it (cleanlab's assumption: out-of-sample predicted probabilities).

cleanlab needs one fixed set of classes; records are grouped by their set of
options (order ignored), and each group is ranked on its own. A group with
fewer than `min_group` records, or with a single class, gets the
self-confidence score (the probability of the given answer) and is flagged
when another option is more likely.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Sequence

import numpy as np

from t5tune import atomic
from t5tune.data import templates as templates_lib

# Template kinds whose targets are not one of the options (as evaluation).
_NOT_RANKED_KINDS = (templates_lib.COT, templates_lib.INVERTED)


@dataclasses.dataclass(frozen=True)
class Item:
  """One rendered example to score: its task, record index, input and target (and options)."""
  task: str
  record: int
  inputs: str
  targets: str
  options: tuple[str, ...] = ()

  @property
  def label(self) -> int:
    return self.options.index(self.targets)


def classification_items(task: str, split: str = "train") -> list[Item]:
  """Examples of a registered task whose target is one of its answer options."""
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  out = []
  for ex in tasks_lib.get_info(task, tasks_lib.INSTRUCTION).source.prepared(split).examples:
    opts = tuple(ex["options"])
    if opts and ex["template_kind"] not in _NOT_RANKED_KINDS and ex["targets"] in opts:
      out.append(Item(task, ex["record"], ex["inputs"], ex["targets"], opts))
  return out


def generation_items(task: str, split: str = "train") -> list[Item]:
  """Every example of a registered task (inputs and targets), for the loss filter."""
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  return [Item(task, ex["record"], ex["inputs"], ex["targets"], tuple(ex["options"]))
          for ex in tasks_lib.get_info(task, tasks_lib.INSTRUCTION).source.prepared(split).examples]


def softmax(scores: Sequence[float]) -> np.ndarray:
  x = np.asarray(scores, np.float64)
  x = np.exp(x - x.max())
  return x / x.sum()


def rank(items: Sequence[Item], option_scores: Sequence[Sequence[float]], *,
         min_group: int = 10) -> list[dict[str, Any]]:
  """Every item with its label quality and issue flag, lowest quality (most suspicious) first."""
  from cleanlab import filter as cl_filter  # pylint: disable=g-import-not-at-top
  from cleanlab import rank as cl_rank  # pylint: disable=g-import-not-at-top
  if len(items) != len(option_scores):
    raise ValueError(f"{len(items)} items but {len(option_scores)} score lists")
  probs = [softmax(s) for s in option_scores]
  groups = collections.defaultdict(list)
  for i, item in enumerate(items):
    if len(option_scores[i]) != len(item.options):
      raise ValueError(f"item {i}: {len(item.options)} options but {len(option_scores[i])} scores")
    groups[tuple(sorted(item.options))].append(i)
  quality = np.zeros(len(items))
  issue = np.zeros(len(items), bool)
  for classes, members in groups.items():
    col = {c: k for k, c in enumerate(classes)}
    labels = np.array([col[items[i].targets] for i in members])
    pred = np.zeros((len(members), len(classes)))
    for row, i in enumerate(members):
      for j, option in enumerate(items[i].options):
        pred[row, col[option]] = probs[i][j]
    if len(members) >= min_group and len(set(labels.tolist())) == len(classes):
      quality[members] = cl_rank.get_label_quality_scores(labels, pred)
      # n_jobs=1: cleanlab would fork worker processes, unsafe once JAX has threads.
      issue[members] = cl_filter.find_label_issues(labels, pred, n_jobs=1)
    else:
      quality[members] = pred[np.arange(len(members)), labels]
      issue[members] = pred.argmax(axis=1) != labels
  order = sorted(range(len(items)), key=lambda i: (quality[i], i))
  rows = []
  for i in order:
    item = items[i]
    rows.append({
        "task": item.task, "record": item.record, "inputs": item.inputs,
        "given": item.targets, "predicted": item.options[int(np.argmax(probs[i]))],
        "options": list(item.options),
        "probabilities": [round(float(p), 6) for p in probs[i]],
        "label_quality": float(quality[i]), "issue": bool(issue[i])})
  return rows


def loss_outliers(items: Sequence[Item], losses: Sequence[float], *,
                  top_fraction: float = 0.05) -> list[dict[str, Any]]:
  """Every item by per-token loss, highest first; the top `top_fraction` are flagged."""
  if not 0.0 <= top_fraction <= 1.0:
    raise ValueError(f"top_fraction={top_fraction} must be in [0, 1]")
  if len(items) != len(losses):
    raise ValueError(f"{len(items)} items but {len(losses)} losses")
  order = sorted(range(len(items)), key=lambda i: (-losses[i], i))
  flagged = int(round(top_fraction * len(items)))
  return [{"task": items[i].task, "record": items[i].record, "inputs": items[i].inputs,
           "targets": items[i].targets, "loss": float(losses[i]), "issue": rank_ < flagged}
          for rank_, i in enumerate(order)]


def counts(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
  """{task: {"scored": n, "issues": n}} of ranked rows (what the report shows)."""
  out = collections.defaultdict(lambda: {"scored": 0, "issues": 0})
  for row in rows:
    out[row["task"]]["scored"] += 1
    out[row["task"]]["issues"] += int(row.get("issue", False))
  return dict(out)


def write_jsonl(rows: Sequence[dict[str, Any]], path: str, *, only_issues: bool = True) -> int:
  """Writes the (flagged) rows in rank order to `path` atomically; returns how many."""
  picked = [r for r in rows if r["issue"] or not only_issues]
  atomic.write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in picked))
  return len(picked)


def read_counts(path: str) -> dict[str, dict[str, int]]:
  """Issue counts per task from a label-issues JSONL (flagged rows only are counted)."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        rows.append(json.loads(line))
  return {t: {"issues": c["issues"]} for t, c in counts(rows).items()}
