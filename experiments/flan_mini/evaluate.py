"""Scores a model on registered flan_mini evaluation tasks: rank classification or generation.

    scores = evaluate.task(model, "flan_mini_nli_facts_eval", max_examples=50)
    scores["accuracy"], scores["examples"], scores["method"]   # 61.0, 50, "rank_classification"
    scores["per_example"]    # each example's score (0 or 100 for accuracy): paired statistics

A task is rank-classified or decoded by `t5tune.infer.judging`'s rule, the
one `t5tune evaluate` applies per example (examples with answer options and a
template that is not chain-of-thought or inverted are rank-classified:
`t5tune.infer.api.classify`, the option with the highest log-likelihood under
the model is the prediction, FLAN's evaluation of classification tasks; the
others are decoded greedily, `t5tune.infer.api.generate`); a flan_mini task
takes one method for all its examples (`task_method`). t5tune.infer does the
tokenizing, EOS (the vocabulary's), padding, length bucketing and batching.
Either way the prediction and the target go through the task's postprocessor
and metric functions with `judging`'s scorer (`finish`).

`classify` and `generate` take any vocabulary object with `encode`,
`decode` and `eos_id`: `portable.py` passes one over exported token ids and
evaluates on machines without TensorFlow or seqio through the same calls.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from t5tune.infer import api
from t5tune.infer import judging

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


# The content-free input of calibrated rank classification (Zhao et al. 2021,
# "Calibrate before use"): each option's log-likelihood given it is the
# model's prior for that option, subtracted from its score given the input.
CONTENT_FREE = "N/A"


def option_lengths(vocab, options: Sequence[Sequence[Any]]) -> list[list[int]]:
  """Tokens per option, EOS included (what the summed log-likelihood sums over)."""
  return [[len(list(vocab.encode(o))) + 1 for o in row] for row in options]


def content_free_scores(model, vocab, options: Sequence[Sequence[Any]], max_inputs: int,
                        content_free: Any = CONTENT_FREE) -> list[list[float]]:
  """Each option's log-likelihood given the content-free input (one call per distinct option set)."""
  distinct = list(dict.fromkeys(tuple(tuple(o) if isinstance(o, list) else o for o in row)
                                for row in options))
  result = classify(model, vocab, [content_free] * len(distinct), [list(r) for r in distinct],
                    max_inputs)
  by_set = dict(zip(distinct, result.scores))
  return [by_set[tuple(tuple(o) if isinstance(o, list) else o for o in row)] for row in options]


def rank_variants(option_scores, lengths, prior_scores) -> dict[str, list[int]]:
  """The chosen option per example under each rank-classification rule.

  plain: highest summed log-likelihood (FLAN's); length_normalized: highest
  per-token mean; calibrated: highest log-likelihood minus the content-free
  one (the options' prior divided out).
  """
  out = {"plain": [], "length_normalized": [], "calibrated": []}
  for s, n, p in zip(option_scores, lengths, prior_scores):
    s, n, p = np.asarray(s), np.asarray(n, np.float64), np.asarray(p)
    out["plain"].append(int(np.argmax(s)))
    out["length_normalized"].append(int(np.argmax(s / n)))
    out["calibrated"].append(int(np.argmax(s - p)))
  return out


def task_method(examples) -> str:
  """The one method of a task's examples (`judging.methods`; flan_mini evaluates a task by one)."""
  found = list(dict.fromkeys(judging.methods(examples)))
  if len(found) > 1:
    raise ValueError(f"the examples need {found}; a flan_mini task is evaluated by one method:"
                     " give every example answer options (or none)")
  return found[0] if found else judging.RANK_CLASSIFICATION


def finish(inputs: list[str], targets: list[str], predictions: list[str], method: str,
           postprocess_fn, metric_fns, *, option_scores=None, templates=None,
           variants=None) -> dict[str, Any]:
  """Metrics of raw predictions: both sides through the postprocessor, then the metric functions.

  Also kept, for the paired statistics and confusion matrices of the report:
  `per_example` (the primary metric per example), the postprocessed
  `targets` and `predictions`, and for rank classification each example's
  option log-likelihoods (`option_scores`), each example's template name
  (`templates`), and the metrics of other rank-classification rules
  (`variants`: {rule: raw predictions}, see `rank_variants`).
  """
  targets, predictions = judging.postprocess(postprocess_fn, targets, predictions)
  metrics: dict[str, Any] = judging.metrics(metric_fns, targets, predictions)
  metrics["examples"] = len(targets)
  metrics["method"] = method
  metrics["samples"] = [{"inputs": i, "target": t, "prediction": p}
                        for i, t, p in list(zip(inputs, targets, predictions))[:3]]
  metrics["per_example"] = judging.per_example(metric_fns, targets, predictions)
  metrics["targets"], metrics["predictions"] = targets, predictions
  if option_scores is not None:
    metrics["option_scores"] = [list(s) for s in option_scores]
  if templates is not None:
    metrics["templates"] = list(templates)
  if variants:
    metrics["variants"] = {}
    for rule, raw in variants.items():
      v = finish(inputs, targets, raw, f"{method} ({rule})", postprocess_fn, metric_fns)
      metrics["variants"][rule] = {k: v[k] for k in v
                                   if k not in ("samples", "targets", "examples", "method")}
  return metrics


def rank_task(model, vocab, inputs, targets, options, max_inputs: int, postprocess_fn,
              metric_fns, templates=None, option_labels=None) -> dict[str, Any]:
  """Rank classification of one evaluation set, with the length-normalised and calibrated rules.

  `options` are what `vocab` encodes; `option_labels` their text (default: the same).
  """
  option_labels = option_labels or options
  result = classify(model, vocab, inputs, options, max_inputs)
  prior = content_free_scores(model, vocab, options, max_inputs)
  picks = rank_variants(result.scores, option_lengths(vocab, options), prior)
  labels = lambda rule: [row[b] for row, b in zip(option_labels, picks[rule])]
  return finish(inputs, targets, labels("plain"), "rank_classification", postprocess_fn,
                metric_fns, option_scores=result.scores, templates=templates,
                variants={r: labels(r) for r in ("length_normalized", "calibrated")})


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
  templates = [ex["template_name"] for ex in examples]
  if task_method(examples) == judging.RANK_CLASSIFICATION:
    return rank_task(model, vocab, inputs, targets, [ex["options"] for ex in examples],
                     max_inputs, seqio_task.postprocess_fn, seqio_task.metric_fns, templates)
  predictions = generate(model, vocab, inputs, max_inputs, max_decode_len)
  return finish(inputs, targets, predictions, "greedy", seqio_task.postprocess_fn,
                seqio_task.metric_fns, templates=templates)
