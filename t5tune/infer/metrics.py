"""Metric functions for seqio tasks, computed by the maintained libraries.

Every function has seqio's predict-metric signature `fn(targets, predictions)
-> {name: value}` over lists of strings, so it can go straight into
`register_task(..., metric_fns=[metrics.accuracy, metrics.rouge])`. Values are
percentages (0-100), as in T5 and FLAN reports.

  accuracy, f1_macro   scikit-learn (`accuracy_score`, `f1_score(average="macro")`)
  rouge                rouge-score: mean F-measure of rouge1, rouge2, rougeL, rougeLsum
                       (Porter stemming; newlines separate summary sentences)
  bleu                 sacrebleu `corpus_bleu` (13a tokenisation, exponential smoothing)
  squad                exact match and token F1 after SQuAD answer normalisation;
                       exact match is scikit-learn's accuracy on normalised
                       strings, and F1 is the SQuAD v1.1 token-overlap F1,
                       which none of the libraries above provides.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Exact-match accuracy of predictions against targets, in percent: {'accuracy': ...}."""
  from sklearn import metrics as sk
  return {"accuracy": 100.0 * float(sk.accuracy_score(list(targets), list(predictions)))}


def f1_macro(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Macro-averaged F1 over the classes that occur among the targets."""
  from sklearn import metrics as sk
  labels = sorted(set(targets))
  return {"f1_macro": 100.0 * float(sk.f1_score(list(targets), list(predictions),
                                                labels=labels, average="macro",
                                                zero_division=0))}


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Mean ROUGE-1/2/L/Lsum F-measures (rouge-score, stemmed), in percent."""
  from rouge_score import rouge_scorer
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  totals = collections.defaultdict(float)
  for target, prediction in zip(targets, predictions, strict=True):
    for name, s in scorer.score(target, prediction).items():
      totals[name] += s.fmeasure
  n = max(len(targets), 1)
  return {name: 100.0 * totals[name] / n for name in ROUGE_TYPES}


def bleu(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Corpus BLEU (sacrebleu) of predictions against one reference each: {'bleu': ...}."""
  import sacrebleu
  return {"bleu": float(sacrebleu.corpus_bleu(list(predictions), [list(targets)]).score)}


def normalize_answer(text: str) -> str:
  """SQuAD's answer normalisation: lowercase, no punctuation, no articles, single spaces."""
  text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def _token_f1(target: str, prediction: str) -> float:
  t, p = normalize_answer(target).split(), normalize_answer(prediction).split()
  if not t or not p:
    return float(t == p)
  common = sum((collections.Counter(t) & collections.Counter(p)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(p), common / len(t)
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD's exact match and token F1 after answer normalisation, in percent."""
  from sklearn import metrics as sk
  norm_t = [normalize_answer(t) for t in targets]
  norm_p = [normalize_answer(p) for p in predictions]
  f1 = [_token_f1(t, p) for t, p in zip(targets, predictions, strict=True)]
  return {"exact_match": 100.0 * float(sk.accuracy_score(norm_t, norm_p)),
          "f1": 100.0 * float(np.mean(f1)) if f1 else 0.0}
