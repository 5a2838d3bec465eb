"""Metric functions equal direct calls of rouge-score, sacrebleu and scikit-learn."""
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn import metrics as sk

from t5tune.infer import metrics

TARGETS = ["the cat sat on the mat", "a quick brown fox", "hello world\nsecond line", "yes"]
PREDICTIONS = ["the cat sat on a mat", "quick brown foxes jump", "hello there world", "no"]


def test_rouge_equals_rouge_score():
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
  scores = [scorer.score(t, p) for t, p in zip(TARGETS, PREDICTIONS)]
  got = metrics.rouge(TARGETS, PREDICTIONS)
  for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
    assert got[name] == pytest.approx(100 * np.mean([s[name].fmeasure for s in scores]))


def test_bleu_equals_sacrebleu():
  assert metrics.bleu(TARGETS, PREDICTIONS)["bleu"] == pytest.approx(
      sacrebleu.corpus_bleu(PREDICTIONS, [TARGETS]).score)


def test_accuracy_and_f1_equal_scikit_learn():
  t = ["yes", "no", "no", "maybe", "yes"]
  p = ["yes", "no", "yes", "maybe", "no"]
  assert metrics.accuracy(t, p)["accuracy"] == pytest.approx(100 * sk.accuracy_score(t, p))
  assert metrics.f1_macro(t, p)["f1_macro"] == pytest.approx(
      100 * sk.f1_score(t, p, average="macro"))


def test_squad_exact_match_and_token_f1():
  got = metrics.squad(["The Eiffel Tower", "Paris", "blue whale"],
                      ["eiffel tower!", "in Paris", "whale"])
  assert got["exact_match"] == pytest.approx(100 / 3)
  # token F1: 1, 2*(1/2*1)/(1.5)=2/3, 2*(1*1/2)/1.5=2/3
  assert got["f1"] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)
