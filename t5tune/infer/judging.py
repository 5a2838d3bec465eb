"""The rules every evaluator shares: which examples are rank-classified, and what each prediction scores.

`t5tune.infer.evaluation.TaskEvaluator` (and through it continual tuning's
per-example scores) and experiments/flan_mini/evaluate.py both use them:

* `methods`: an example is rank-classified (every option scored as the
  target, the most likely one is the prediction, as FLAN evaluates) when it
  carries answer options (`options`, from the data layer) and its template is
  not chain-of-thought or inverted (their targets are not one of the options);
  every other example is decoded. A task whose metadata says
  `evaluation: generate` (`task_ranks`) decodes every example.
* `postprocess`: targets and predictions through the task's postprocessor.
* `metrics` / `per_example`: the task's metric functions over all examples,
  or over one example at a time (their mean is the task's metric for
  accuracy, exact match, token F1 and ROUGE, which are all means over examples).

Nothing here imports seqio or TensorFlow: flan_mini's portable path uses it too.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

RANK_CLASSIFICATION = "rank_classification"
GENERATE = "generate"
# A task's metadata key that fixes its evaluation: GENERATE decodes every example
# (e.g. a collection's generation variant); absent or RANK_CLASSIFICATION: the rule below.
EVALUATION_KEY = "evaluation"
# Template kinds whose targets are not one of the options (t5tune.data.templates' COT, INVERTED).
NOT_RANKED_KINDS = ("cot", "inv")


def ranked(example: Mapping[str, Any], rank_classification: bool = True) -> bool:
  """Whether an example (with `options` and `template_kind`) is rank-classified."""
  return bool(rank_classification and example.get("options")
              and example.get("template_kind", "") not in NOT_RANKED_KINDS)


def task_ranks(metadata: Mapping[str, Any] | None, rank_classification: bool = True) -> bool:
  """Whether a task's examples may be rank-classified: the evaluator's setting and the task's own."""
  return bool(rank_classification and (metadata or {}).get(EVALUATION_KEY) != GENERATE)


def methods(examples: Sequence[Mapping[str, Any]], decode_method: str = "greedy", *,
            rank_classification: bool = True) -> list[str]:
  """Each example's method: "rank_classification", or `decode_method` (the decoding method)."""
  return [RANK_CLASSIFICATION if ranked(ex, rank_classification) else decode_method
          for ex in examples]


def postprocess(postprocess_fn: Callable | None, targets: Sequence[Any],
                predictions: Sequence[Any]) -> tuple[list[Any], list[Any]]:
  """(targets, predictions) through a seqio-style postprocessor (targets with is_target=True)."""
  post = postprocess_fn or (lambda x, **_: x)
  return ([post(t, example=None, is_target=True) for t in targets],
          [post(p, example=None, is_target=False) for p in predictions])


def _values(fn: Callable, targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  return {k: float(getattr(v, "value", v)) for k, v in fn(list(targets), list(predictions)).items()}


def metrics(metric_fns: Sequence[Callable], targets: Sequence[Any],
            predictions: Sequence[Any]) -> dict[str, float]:
  """Every metric of `metric_fns` over postprocessed (targets, predictions)."""
  out: dict[str, float] = {}
  for fn in metric_fns:
    out.update(_values(fn, targets, predictions))
  return out


def per_example(metric_fns: Sequence[Callable], targets: Sequence[Any],
                predictions: Sequence[Any], metric: str = "") -> list[float]:
  """Each example's `metric` over postprocessed pairs (default, or when no function has it: the first)."""
  if not metric_fns:
    raise ValueError("per_example: no metric functions")
  out = []
  for target, prediction in zip(targets, predictions):
    first = None
    for fn in metric_fns:
      values = _values(fn, [target], [prediction])
      first = values if first is None else first
      if not metric or metric in values:
        break
    out.append(values[metric] if metric in values else next(iter(first.values())))
  return out
