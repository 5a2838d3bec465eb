"""Scores a model on registered flan_mini evaluation tasks: rank classification or generation.

    scores = evaluate.task(model, "flan_mini_nli_facts_eval", max_examples=50)
    scores  # {"accuracy": 61.0, "examples": 50, "method": "rank_classification"}

A task whose examples carry answer options is scored by rank
classification (`t5tune.infer.scoring`): the option with the highest
log-likelihood under the model is the prediction (FLAN's evaluation of
classification tasks). Other tasks
are decoded greedily. Either way the prediction and the target go through
the task's seqio postprocessor and metric functions.

The model calls (`rank_classify_tokens`, `generate_tokens`) and the scoring
(`finish`) work on token ids and need no seqio: `portable.py` evaluates
exported evaluation sets with them on machines without TensorFlow.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from t5tune.infer import batching
from t5tune.infer import decoding
from t5tune.infer import scoring

# Rows are padded to this many so that every call has the same batch shape
# and lengths to a multiple of _LENGTH_BUCKET: few compilations.
_BATCH = 64
_LENGTH_BUCKET = 64


def _pad(rows: list[list[int]], length: int) -> np.ndarray:
  out = np.zeros((len(rows), length), np.int32)
  for i, r in enumerate(rows):
    r = r[:length]
    out[i, :len(r)] = r
  return out


def _bucket(n: int, cap: int) -> int:
  return min(cap, _LENGTH_BUCKET * math.ceil(max(n, 1) / _LENGTH_BUCKET))


def _batches(n: int):
  for start in range(0, n, _BATCH):
    yield slice(start, min(n, start + _BATCH))


def _encode(vocab, text: str) -> list[int]:
  return list(vocab.encode(text)) + [1]  # EOS


def rank_classify_tokens(model, enc: list[list[int]], options: list[list[list[int]]],
                         max_inputs: int) -> list[int]:
  """Index of the most likely option per input (t5tune.infer.scoring: summed log-likelihood).

  `enc` are EOS-terminated input ids; `options[i]` the EOS-terminated ids of
  input i's options.
  """
  length = _bucket(max(len(e) for e in enc), max_inputs)
  k = max(len(row) for row in options)
  tlen = _bucket(max(len(o) for row in options for o in row), 10 ** 9)
  out = []
  for sl in _batches(len(enc)):
    enc_BL = batching.pad_rows(_pad(enc[sl], length), _BATCH)
    opt_BKT = np.zeros((enc_BL.shape[0], k, tlen), np.int32)
    for i, row in enumerate(options[sl]):
      opt_BKT[i, :len(row)] = _pad(row, tlen)
    out.extend(scoring.rank_classify(model, enc_BL, opt_BKT).best[:sl.stop - sl.start].tolist())
  return out


def generate_tokens(model, enc: list[list[int]], max_inputs: int,
                    max_decode_len: int) -> list[list[int]]:
  """Greedy decodes of EOS-terminated inputs: the ids before EOS, without pad/EOS ids."""
  length = _bucket(max(len(e) for e in enc), max_inputs)
  out = []
  opts = decoding.DecodeOptions(method="greedy", max_decode_len=max_decode_len)
  for sl in _batches(len(enc)):
    enc_BL = batching.pad_rows(_pad(enc[sl], length), _BATCH)
    tokens = decoding.decode(model, enc_BL, opts).tokens[:sl.stop - sl.start]
    for row in tokens.tolist():
      row = row[:row.index(1)] if 1 in row else row
      out.append([t for t in row if t > 1])
  return out


def rank_classify(model, vocab, inputs: list[str], options: list[list[str]],
                  max_inputs: int) -> list[str]:
  """The most likely option for each input."""
  enc = [_encode(vocab, t) for t in inputs]
  opts = [[_encode(vocab, o) for o in row] for row in options]
  best = rank_classify_tokens(model, enc, opts, max_inputs)
  return [row[b] for row, b in zip(options, best)]


def generate(model, vocab, inputs: list[str], max_inputs: int, max_decode_len: int) -> list[str]:
  """Greedy decodes of `inputs`."""
  enc = [_encode(vocab, t) for t in inputs]
  return [vocab.decode(row) for row in generate_tokens(model, enc, max_inputs, max_decode_len)]


def finish(inputs: list[str], targets: list[str], predictions: list[str], method: str,
           postprocess_fn, metric_fns) -> dict[str, Any]:
  """Metrics of raw predictions: both sides through the postprocessor, then the metric functions."""
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
  if all(ex["options"] for ex in examples):
    predictions = rank_classify(model, vocab, inputs, [ex["options"] for ex in examples],
                                max_inputs)
    method = "rank_classification"
  else:
    predictions = generate(model, vocab, inputs, max_inputs, max_decode_len)
    method = "greedy"
  return finish(inputs, [ex["targets"] for ex in examples], predictions, method,
                seqio_task.postprocess_fn, seqio_task.metric_fns)
