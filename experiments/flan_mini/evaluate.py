"""Scores a model on registered flan_mini evaluation tasks: rank classification or generation.

    scores = evaluate.task(model, "flan_mini_nli_facts_eval", max_examples=50)
    scores["accuracy"], scores["examples"], scores["method"]   # 61.0, 50, "rank_classification"
    scores["per_example"]    # each example's score (0 or 100 for accuracy): paired statistics

A task whose examples carry answer options is scored by rank
classification (`t5tune.infer.api.classify`: the option with the highest
log-likelihood under the model is the prediction, FLAN's evaluation of
classification tasks); other tasks are decoded greedily
(`t5tune.infer.api.generate`). t5tune.infer does the tokenizing, EOS (the
vocabulary's), padding, length bucketing and batching. Either way the
prediction and the target go through the task's postprocessor and metric
functions (`finish`).

`classify` and `generate` take any vocabulary object with `encode`,
`decode` and `eos_id`: `portable.py` passes one over exported token ids and
evaluates on machines without TensorFlow or seqio through the same calls.
"""
from __future__ import annotations

from typing import Any, Sequence

from t5tune.infer import api

# Rows per model call: every call has the same batch shape, and t5tune.infer
# buckets lengths to powers of two, so there are few compilations.
BATCH = 64


def classify(model, vocab, inputs: Sequence[Any], options: Sequence[Sequence[Any]],
             max_inputs: int) -> api.Classification:
  """Rank classification of each input among its options (summed log-likelihood)."""
  return api.classify(model, inputs, options, vocabulary=vocab, batch_size=BATCH,
                      max_input_len=max_inputs)


def generate(model, vocab, inputs: Sequence[Any], max_inputs: int,
             max_decode_len: int) -> list[str]:
  """Greedy decodes of `inputs`, as text up to the vocabulary's EOS."""
  return api.generate(model, list(inputs), vocabulary=vocab, batch_size=BATCH,
                      max_input_len=max_inputs, max_decode_len=max_decode_len)


def _per_example(metric_fns, targets: list[str], predictions: list[str]) -> list[float]:
  """Each example's score under the primary (first) metric: its mean is that metric."""
  first = metric_fns[0]
  return [float(next(iter(first([t], [p]).values()))) for t, p in zip(targets, predictions)]


def finish(inputs: list[str], targets: list[str], predictions: list[str], method: str,
           postprocess_fn, metric_fns, *, option_scores=None) -> dict[str, Any]:
  """Metrics of raw predictions: both sides through the postprocessor, then the metric functions.

  Also kept, for the paired statistics and confusion matrices of the report:
  `per_example` (the primary metric per example), the postprocessed
  `targets` and `predictions`, and for rank classification each example's
  option log-likelihoods (`option_scores`).
  """
  post = postprocess_fn or (lambda x, **_: x)
  targets = [post(t, example=None, is_target=True) for t in targets]
  predictions = [post(p, example=None, is_target=False) for p in predictions]
  metrics: dict[str, Any] = {}
  for fn in metric_fns:
    metrics.update({k: float(v) for k, v in fn(targets, predictions).items()})
  metrics["examples"] = len(targets)
  metrics["method"] = method
  metrics["samples"] = [{"inputs": i, "target": t, "prediction": p}
                        for i, t, p in list(zip(inputs, targets, predictions))[:3]]
  metrics["per_example"] = _per_example(metric_fns, targets, predictions)
  metrics["targets"], metrics["predictions"] = targets, predictions
  if option_scores is not None:
    metrics["option_scores"] = [list(s) for s in option_scores]
  return metrics


def task(model, name: str, *, split: str = "test", max_examples: int | None = None,
         max_inputs: int = 512, max_decode_len: int = 64) -> dict[str, Any]:
  """Metrics of `model` on a registered task's split (the first `max_examples` examples)."""
  import seqio  # pylint: disable=g-import-not-at-top
  from t5tune.data import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  info = tasks_lib.get_info(name)
  seqio_task = seqio.get_mixture_or_task(name)
  examples = info.source.prepared(split).examples[:max_examples]
  vocab = info.source.vocabulary
  inputs = [ex["inputs"] for ex in examples]
  targets = [ex["targets"] for ex in examples]
  if all(ex["options"] for ex in examples):
    options = [ex["options"] for ex in examples]
    result = classify(model, vocab, inputs, options, max_inputs)
    return finish(inputs, targets, result.predictions, "rank_classification",
                  seqio_task.postprocess_fn, seqio_task.metric_fns, option_scores=result.scores)
  predictions = generate(model, vocab, inputs, max_inputs, max_decode_len)
  return finish(inputs, targets, predictions, "greedy", seqio_task.postprocess_fn,
                seqio_task.metric_fns)
