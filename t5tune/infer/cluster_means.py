"""Cluster means of an evaluation: FLAN reports a held-out cluster by the mean of its datasets' scores.

    cluster_means.table(results, resolved, metadata)   # markdown for summary.md ("" without clusters)

Each evaluated task whose metadata names a `cluster` contributes its primary
score: the value its first metric function (metadata["metrics"], as the
FLAN collection records them) is reported by in FLAN (accuracy, exact match
for SQuAD-style answers, ROUGE-L for summaries, BLEU for translation), else
the first plain metric of its results. A cluster's mean is the unweighted
mean over its tasks, one column per evaluation variant; the metrics that
went into it are named in the row.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

# A metric function's name -> the result key FLAN reports it by.
PRIMARY = {"accuracy": "accuracy", "f1_macro": "f1_macro", "squad": "exact_match",
           "rouge": "rougeL", "bleu": "bleu"}


def primary_metric(scores: Mapping[str, float], metadata: Mapping[str, Any]) -> str | None:
  """The result key a task's score is read from (None: no plain metric)."""
  for name in metadata.get("metrics", ()) or ():
    key = PRIMARY.get(name, name)
    if key in scores:
      return key
  plain = [k for k in scores if "/" not in k and k != "clean_examples"]
  return plain[0] if plain else None


def means(results: Mapping[str, Mapping[str, float]], resolved: Sequence[tuple[str, str, str]],
          metadata: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], tuple[float, int, list[str]]]:
  """{(cluster, variant): (mean, number of tasks, metric keys)} over the tasks with a cluster."""
  collected: dict[tuple[str, str], list[tuple[float, str]]] = {}
  for _, variant, name in resolved:
    meta = metadata.get(name) or {}
    cluster, scores = meta.get("cluster"), results.get(name)
    if not cluster or not scores:
      continue
    key = primary_metric(scores, meta)
    if key is not None:
      collected.setdefault((cluster, variant), []).append((float(scores[key]), key))
  return {k: (sum(v for v, _ in values) / len(values), len(values),
              sorted({m for _, m in values}))
          for k, values in collected.items()}


def table(results: Mapping[str, Mapping[str, float]], resolved: Sequence[tuple[str, str, str]],
          metadata: Mapping[str, Mapping[str, Any]]) -> str:
  """The markdown table of cluster means (one row per cluster, one column per variant); "" if
  no evaluated task names a cluster."""
  found = means(results, resolved, metadata)
  if not found:
    return ""
  variants = list(dict.fromkeys(v for _, v, _ in resolved))
  clusters = list(dict.fromkeys(c for c, _ in found))
  header = ["cluster", "tasks", "metric"] + [v or "zero-shot" for v in variants]
  lines = ["Cluster means (the unweighted mean of each task's primary metric):", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for cluster in clusters:
    cells = [found.get((cluster, v)) for v in variants]
    present = [c for c in cells if c is not None]
    counts = sorted({n for _, n, _ in present})
    metrics = sorted({m for _, _, ms in present for m in ms})
    lines.append("| " + " | ".join(
        [cluster, "/".join(map(str, counts)), ", ".join(metrics)]
        + ["" if c is None else f"{c[0]:.2f}" for c in cells]) + " |")
  return "\n".join(lines)
