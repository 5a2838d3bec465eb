"""flan_mini's statistics: cluster scores averaged over templates, with intervals, paired verdicts and confusion matrices.

    s = stats.cluster_scores(seed_evals, "held_out_zs", "nli")   # one run (all its seeds)
    s["score"], s["low"], s["high"], s["chance"]
    c = stats.compare(seeds_it, seeds_nt, "held_out_zs", "nli")  # IT vs NT, paired by example
    c["estimate"], c["low"], c["high"], c["verdict"]             # "helped" / "hurt" / "inconclusive"

A run's evaluation (`eval.json`, from `run.evaluate_model`) keeps per task
each example's score, template, target and prediction. A cluster's score is
the mean over its tasks of the mean over each task's templates of the mean
over that template's examples (FLAN reports the template average, not the
best template): each example weighs 1 / (tasks x templates of its task x
examples of its template). Every run is evaluated on the same examples, so
runs compare example by example; with several seeds per run, seeds and
examples are both resampled (`t5tune.infer.compare`).
"""
from __future__ import annotations

import collections
from typing import Any, Sequence

import numpy as np

from t5tune.infer import compare as compare_lib

RULES = ("plain", "length_normalized", "calibrated")


def _task_arrays(metrics: dict, rule: str) -> np.ndarray:
  if rule == "plain":
    return np.asarray(metrics["per_example"], np.float64)
  return np.asarray(metrics["variants"][rule]["per_example"], np.float64)


def _weights(metrics: dict) -> np.ndarray:
  templates = metrics.get("templates") or ["-"] * len(metrics["per_example"])
  counts = collections.Counter(templates)
  return np.array([1.0 / (len(counts) * counts[t]) for t in templates])


def _chance(metrics: dict) -> np.ndarray:
  n = len(metrics["per_example"])
  if metrics.get("option_scores") is None:
    return np.zeros(n)  # generation: no chance level worth a line
  return np.array([100.0 / len(s) for s in metrics["option_scores"]])


def cluster_arrays(seed_evals: Sequence[dict], ev: str, cluster: str, rule: str = "plain",
                   tasks: Sequence[str] | None = None):
  """(scores [seeds, N], weights [N], chance [N], task names) of a cluster's examples.

  `tasks`: the cluster's tasks (default: every task of the evaluation).
  """
  first = seed_evals[0]["evals"][ev]
  names = [t for t in (tasks or first["tasks"]) if t in first["tasks"]]
  if not names:
    raise ValueError(f"{ev}: no evaluated task of cluster {cluster!r}")
  weights, chance = [], []
  for t in names:
    m = first["tasks"][t]
    weights.append(_weights(m) / len(names))
    chance.append(_chance(m))
  rows = [np.concatenate([_task_arrays(r["evals"][ev]["tasks"][t], rule) for t in names])
          for r in seed_evals]
  return np.stack(rows), np.concatenate(weights), np.concatenate(chance), names


def has_rule(seed_evals: Sequence[dict], ev: str, rule: str) -> bool:
  if rule == "plain":
    return True
  return all("variants" in m and rule in m["variants"]
             for r in seed_evals for m in r["evals"][ev]["tasks"].values())


def cluster_scores(seed_evals: Sequence[dict], ev: str, cluster: str, rule: str = "plain",
                   tasks: Sequence[str] | None = None) -> dict[str, Any]:
  """A run's template-averaged score on a cluster with its 95% interval, and the chance level."""
  scores, w, chance, _ = cluster_arrays(seed_evals, ev, cluster, rule, tasks)
  i = compare_lib.seeds_interval(scores, w)
  return {"score": i.estimate, "low": i.low, "high": i.high, "seeds": scores.shape[0],
          "examples": scores.shape[1], "chance": float(np.average(chance, weights=w)),
          "method": i.method}


def compare(seed_evals_a: Sequence[dict], seed_evals_b: Sequence[dict], ev: str, cluster: str,
            rule: str = "plain", tasks: Sequence[str] | None = None) -> dict[str, Any]:
  """Run a minus run b on a cluster, paired by example: estimate, 95% interval, verdict, McNemar."""
  a, w, _, _ = cluster_arrays(seed_evals_a, ev, cluster, rule, tasks)
  b, _, _, _ = cluster_arrays(seed_evals_b, ev, cluster, rule, tasks)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"{ev}/{cluster}: the runs were evaluated on different examples"
                     f" ({a.shape[1]} vs {b.shape[1]}); evaluate both with the same config")
  if a.shape[0] == 1 and b.shape[0] == 1:
    d = compare_lib.paired_difference(a[0], b[0], w)
  else:
    d = compare_lib.seeds_difference(a, b, w)
  out = d.to_dict()
  binary = np.isin(a, (0.0, 100.0)).all() and np.isin(b, (0.0, 100.0)).all()
  if binary and a.shape[0] == 1 and b.shape[0] == 1:
    m = compare_lib.mcnemar(a[0] > 0, b[0] > 0)
    out["mcnemar"] = {"only_a": m.only_a, "only_b": m.only_b, "pvalue": m.pvalue}
  return out


def confusion(seed_evals: Sequence[dict], ev: str, tasks: Sequence[str]) -> dict | None:
  """Confusion matrix of a classification cluster's fixed answer set (None if options vary).

  Summed over the tasks and seeds; rows are targets, columns predictions.
  """
  targets, predictions = [], []
  for r in seed_evals:
    for t in tasks:
      m = r["evals"][ev]["tasks"].get(t)
      if m is None or m.get("option_scores") is None:
        return None
      targets += m["targets"]
      predictions += m["predictions"]
  labels = sorted(set(targets) | set(predictions))
  if len(labels) > 6:  # options that change per example: no fixed label set
    return None
  return compare_lib.confusion(targets, predictions, labels)


def format_interval(d: dict, signed: bool = False) -> str:
  fmt = "{:+.1f}" if signed else "{:.1f}"
  return f"{fmt.format(d['estimate'] if 'estimate' in d else d['score'])}" \
         f" [{fmt.format(d['low'])}, {fmt.format(d['high'])}]"


def format_confusion(c: dict) -> str:
  width = max(len(x) for x in c["labels"] + ["target \\ predicted"])
  head = "target \\ predicted".ljust(width) + " | " + " | ".join(c["labels"])
  rows = [lab.ljust(width) + " | " + " | ".join(str(v).rjust(len(l)) for v, l in
                                                 zip(row, c["labels"]))
          for lab, row in zip(c["labels"], c["matrix"])]
  return "\n".join([head] + rows)
