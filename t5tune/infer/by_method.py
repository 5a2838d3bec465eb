"""A task's metrics split by how its examples were judged: classification vs generation templates.

One task can hold both kinds (FLAN's tasks do: templates with options, and
inverted ones that write the input back). `t5tune.infer.judging.methods` (the
one rank-or-generate rule) decides each example:

* **classification**: rank-classified, the prediction is the most likely option;
* **generation**: decoded (inverted or chain-of-thought templates, examples
  without options), the decoded text scored as it is.

The task's headline metric is seqio's, over all its examples of both kinds
(for a mean over examples, such as accuracy or exact match, it is the two
kinds' values weighted by their example counts). When a task holds both kinds, `split` adds
`classification/METRIC`, `generation/METRIC` and the two example counts; for
any task `describe` says which method and which metric functions judged each
kind, for metrics.json and the printed summary.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from t5tune.infer import judging

CLASSIFICATION = "classification"
GENERATION = "generation"


def kind(method: str) -> str:
  """An example's kind from its judging method ("rank_classification" or a decoding method)."""
  return CLASSIFICATION if method == judging.RANK_CLASSIFICATION else GENERATION


def groups(methods: Sequence[str]) -> dict[str, list[int]]:
  """{kind: example indices}, classification first, only the kinds present."""
  out: dict[str, list[int]] = {CLASSIFICATION: [], GENERATION: []}
  for i, method in enumerate(methods):
    out[kind(method)].append(i)
  return {k: v for k, v in out.items() if v}


def split(metric_fns: Sequence[Callable], postprocess_fn: Callable | None,
          targets: Sequence[Any], predictions: Sequence[str],
          methods: Sequence[str]) -> dict[str, float]:
  """`KIND/METRIC` and `KIND_examples` for a task whose examples are of both kinds, else {}."""
  by_kind = groups(methods)
  if len(by_kind) < 2 or not metric_fns:
    return {}
  out: dict[str, float] = {}
  for name, ids in by_kind.items():
    t, p = judging.postprocess(postprocess_fn, [targets[i] for i in ids],
                               [predictions[i] for i in ids])
    out.update({f"{name}/{k}": v for k, v in judging.metrics(metric_fns, t, p).items()})
    out[f"{name}_examples"] = float(len(ids))
  return out


def describe(metric_fns: Sequence[Callable], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
  """{kind: {"examples", "method", "metrics"}}: how each kind of the task's examples was judged."""
  names = [getattr(fn, "__name__", type(fn).__name__) for fn in metric_fns]
  out = {}
  for name, ids in groups(methods).items():
    method = methods[ids[0]]
    out[name] = {
        "examples": len(ids),
        "method": (method if name == CLASSIFICATION
                   else f"{method} decoding, scored on the decoded text"),
        "metrics": names,
    }
  return out


def summary_lines(described: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
  """One line per task: its kinds, example counts, methods and metric functions."""
  lines = []
  for task, kinds in described.items():
    parts = [f"{k}: {v['examples']} examples, {v['method']}; metric {', '.join(v['metrics'])}"
             for k, v in kinds.items()]
    headline = ("; the headline is over both"
                if len(kinds) > 1 else "")
    lines.append(f"- {task}: {'; '.join(parts)}{headline}")
  return lines
