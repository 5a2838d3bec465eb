"""How flan_mini outputs are scored: the answer postprocessor and metric functions, without seqio.

The seqio tasks (`tasks.py`) register these functions, and the portable path
(`portable.py`, on machines without TensorFlow or seqio) calls the same ones,
so both report the same numbers for the same predictions.
"""
from __future__ import annotations

import re

# The metric a cluster is scored by (rank-classification accuracy where a
# task has options; a generation metric otherwise).
PRIMARY_METRIC = {
    "sentiment": "accuracy", "nli": "accuracy", "paraphrase": "accuracy",
    "closed_book": "accuracy", "reading": "exact_match", "arithmetic": "exact_match",
    "transform": "exact_match", "translate": "exact_match",
    "struct_to_text": "rougeL", "summarize": "rougeL",
}

_ANSWER = re.compile(r"So the answer is (.*?)\.?$")


def postprocess(output: str, example=None, is_target: bool = False) -> str:
  """The answer in a model output: after "So the answer is" when a rationale comes first."""
  del example, is_target
  text = output.decode("utf-8") if isinstance(output, bytes) else str(output)
  m = _ANSWER.search(text.strip())
  return (m.group(1) if m else text).strip()


def exact_match(targets, predictions) -> dict[str, float]:
  import sklearn.metrics  # pylint: disable=g-import-not-at-top
  return {"exact_match": 100.0 * sklearn.metrics.accuracy_score(targets, predictions)}


def rouge_l(targets, predictions) -> dict[str, float]:
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  scorer = rouge_scorer.RougeScorer(["rougeL"])
  scores = [scorer.score(t, p)["rougeL"].fmeasure for t, p in zip(targets, predictions)]
  return {"rougeL": 100.0 * sum(scores) / max(1, len(scores))}


def accuracy(targets, predictions) -> dict[str, float]:
  import sklearn.metrics  # pylint: disable=g-import-not-at-top
  return {"accuracy": 100.0 * sklearn.metrics.accuracy_score(targets, predictions)}


def metric_fns(cluster: str) -> list:
  """The metric functions of a cluster's tasks (its primary metric first)."""
  metric = PRIMARY_METRIC[cluster]
  if metric == "accuracy":
    return [accuracy]
  if metric == "rougeL":
    return [rouge_l, exact_match]
  return [exact_match]
