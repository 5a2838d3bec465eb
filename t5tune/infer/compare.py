"""Compares two systems on the same examples: intervals, tests, and verdicts that can say "inconclusive".

    d = compare.paired_difference(scores_a, scores_b)         # bootstrap over examples
    d.estimate, d.low, d.high, d.verdict                       # "helped" / "hurt" / "inconclusive"
    compare.mcnemar(correct_a, correct_b).pvalue               # exact McNemar on 0/1 outcomes
    compare.seeds_difference(scores_a_SN, scores_b_SN)         # seeds and examples both resampled
    compare.mean_interval(scores)                              # one system's score with its interval

Scores are per example (accuracy 0/100, ROUGE-L, ...), the same examples in
the same order for both systems (a paired design: the example-to-example
variation cancels, so a paired interval is much narrower than two separate
ones). `weights` (optional, per example) make the statistic a weighted mean:
an average over tasks or templates that have different example counts.

A verdict is "helped" or "hurt" only when the whole interval is on one side
of 0; otherwise "inconclusive".
"""
from __future__ import annotations

import dataclasses

import numpy as np

HELPED, HURT, INCONCLUSIVE = "helped", "hurt", "inconclusive"


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate with its `confidence` interval [low, high]."""
  estimate: float
  low: float
  high: float
  confidence: float
  method: str

  @property
  def verdict(self) -> str:
    return verdict(self.low, self.high)

  def to_dict(self) -> dict:
    """The interval's fields and its verdict, for JSON."""
    return {**dataclasses.asdict(self), "verdict": self.verdict}


@dataclasses.dataclass(frozen=True)
class McNemar:
  """Exact McNemar test: of the examples the systems disagree on, how many each got right."""
  only_a: int
  only_b: int
  pvalue: float


def verdict(low: float, high: float) -> str:
  """ "helped" if the interval is above 0, "hurt" if below, else "inconclusive"."""
  if low > 0:
    return HELPED
  if high < 0:
    return HURT
  return INCONCLUSIVE


def _check(name: str, x, n: int | None = None) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"{name}: expected a non-empty 1-D array of per-example values, got shape {x.shape}")
  if n is not None and x.size != n:
    raise ValueError(f"{name}: {x.size} values for {n} examples; both systems must be scored"
                     " on the same examples")
  return x


def _weights(weights, n: int) -> np.ndarray:
  w = np.ones(n) if weights is None else _check("weights", weights, n)
  if np.any(w < 0) or w.sum() <= 0:
    raise ValueError("weights must be >= 0 with a positive sum")
  return w


def _weighted_mean(x, w, axis=-1):
  return np.sum(x * w, axis=axis) / np.sum(w, axis=axis)


def _bootstrap(data: tuple, statistic, confidence: float, n_resamples: int, seed: int,
               method: str) -> tuple[float, float]:
  import scipy.stats  # pylint: disable=g-import-not-at-top
  res = scipy.stats.bootstrap(data, statistic, paired=True, vectorized=True,
                              confidence_level=confidence, n_resamples=n_resamples,
                              method=method, rng=np.random.default_rng(seed),
                              # resamples in chunks of ~2M values: bounded memory for big sets
                              batch=max(1, 2_000_000 // data[0].size))
  low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
  if np.isnan(low) or np.isnan(high):
    # Every resample gives the same value (e.g. both systems agree on every
    # example): the interval is that value.
    value = float(statistic(*data, axis=-1))
    return value, value
  return low, high


def mean_interval(scores, weights=None, *, confidence: float = 0.95, n_resamples: int = 2000,
                  seed: int = 0) -> Interval:
  """One system's (weighted) mean score with a percentile bootstrap interval over examples."""
  x = _check("scores", scores)
  w = _weights(weights, x.size)
  low, high = _bootstrap((x, w), _weighted_mean, confidence, n_resamples, seed, "percentile")
  return Interval(float(_weighted_mean(x, w)), low, high, confidence, "bootstrap over examples")


def paired_difference(scores_a, scores_b, weights=None, *, confidence: float = 0.95,
                      n_resamples: int = 10_000, seed: int = 0) -> Interval:
  """Mean of a - b over the same examples, with a paired percentile bootstrap interval (scipy)."""
  a = _check("scores_a", scores_a)
  b = _check("scores_b", scores_b, a.size)
  w = _weights(weights, a.size)
  stat = lambda a, b, w, axis=-1: _weighted_mean(a - b, w, axis)
  low, high = _bootstrap((a, b, w), stat, confidence, n_resamples, seed, "percentile")
  return Interval(float(stat(a, b, w)), low, high, confidence, "paired bootstrap over examples")


def mcnemar(correct_a, correct_b) -> McNemar:
  """Exact McNemar test of two systems' 0/1 outcomes on the same examples.

  Under the null the discordant examples split 50/50, so the exact test is a
  two-sided binomial test on them (scipy.stats.binomtest).
  """
  import scipy.stats  # pylint: disable=g-import-not-at-top
  a = _check("correct_a", correct_a).astype(bool)
  b = _check("correct_b", correct_b, a.size).astype(bool)
  only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
  n = only_a + only_b
  pvalue = 1.0 if n == 0 else float(scipy.stats.binomtest(only_a, n, 0.5).pvalue)
  return McNemar(only_a, only_b, pvalue)


def seeds_difference(scores_a, scores_b, weights=None, *, confidence: float = 0.95,
                     n_resamples: int = 4000, seed: int = 0) -> Interval:
  """Mean over seeds of a - b, examples paired, with a two-level bootstrap interval.

  `scores_a` [S_a, N] and `scores_b` [S_b, N]: per seed (a training run) per
  example. Each resample draws S_a and S_b seeds with replacement (the runs
  are independent) and N examples with replacement, the same examples for
  both systems (the pairing). Hand-written because scipy.stats.bootstrap
  resamples one level only; with one seed each it is the paired bootstrap
  of `paired_difference`.
  """
  a = np.atleast_2d(np.asarray(scores_a, np.float64))
  b = np.atleast_2d(np.asarray(scores_b, np.float64))
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.size == 0 or b.size == 0:
    raise ValueError(f"expected [seeds, examples] arrays on the same examples; got {a.shape}"
                     f" and {b.shape}")
  n = a.shape[1]
  w = _weights(weights, n)
  rng = np.random.default_rng(seed)
  stats = np.empty(n_resamples)
  chunk = max(1, 2_000_000 // (n * (a.shape[0] + b.shape[0])))
  for start in range(0, n_resamples, chunk):
    r = min(chunk, n_resamples - start)
    idx_RN = rng.integers(n, size=(r, n))
    sa_RS = rng.integers(a.shape[0], size=(r, a.shape[0]))
    sb_RS = rng.integers(b.shape[0], size=(r, b.shape[0]))
    w_RN = w[idx_RN]
    # a[seed, example] for the drawn seeds and examples: [R, S, N].
    mean_a = _weighted_mean(a[sa_RS[:, :, None], idx_RN[:, None, :]], w_RN[:, None, :]).mean(1)
    mean_b = _weighted_mean(b[sb_RS[:, :, None], idx_RN[:, None, :]], w_RN[:, None, :]).mean(1)
    stats[start:start + r] = mean_a - mean_b
  alpha = (1 - confidence) / 2
  low, high = np.quantile(stats, [alpha, 1 - alpha])
  estimate = float(_weighted_mean(a, w).mean() - _weighted_mean(b, w).mean())
  return Interval(estimate, float(low), float(high), confidence,
                  f"bootstrap over seeds ({a.shape[0]} vs {b.shape[0]}) and examples")


def seeds_interval(scores_SN, weights=None, *, confidence: float = 0.95,
                   n_resamples: int = 2000, seed: int = 0) -> Interval:
  """One system's mean over seeds and examples, both resampled (see `seeds_difference`)."""
  a = np.atleast_2d(np.asarray(scores_SN, np.float64))
  if a.shape[0] == 1:
    return mean_interval(a[0], weights, confidence=confidence, n_resamples=n_resamples, seed=seed)
  zero = np.zeros((1, a.shape[1]))
  d = seeds_difference(a, zero, weights, confidence=confidence, n_resamples=n_resamples, seed=seed)
  return dataclasses.replace(d, method=f"bootstrap over {a.shape[0]} seeds and examples")


def confusion(targets, predictions, labels) -> dict:
  """Confusion matrix (rows: target, columns: prediction) over `labels` (scikit-learn)."""
  import sklearn.metrics  # pylint: disable=g-import-not-at-top
  labels = list(labels)
  m = sklearn.metrics.confusion_matrix(list(targets), list(predictions), labels=labels)
  return {"labels": labels, "matrix": m.tolist()}


def slope_interval(scores_KN, x_K, weights=None, *, confidence: float = 0.95,
                   n_resamples: int = 4000, seed: int = 0) -> Interval:
  """Least-squares slope of the mean score against x over K systems on the same N examples.

  A scaling curve (score vs log task count, say): each resample draws N
  examples with replacement, the same for every point of the curve (they are
  paired), and refits the slope; the percentile interval says whether the
  curve rises.
  """
  s = np.asarray(scores_KN, np.float64)
  x = np.asarray(x_K, np.float64)
  if s.ndim != 2 or s.shape[0] != x.size or s.shape[0] < 2 or s.shape[1] == 0:
    raise ValueError(f"expected [K >= 2 points, N examples] scores and K x values; got"
                     f" {s.shape} and {x.shape}")
  n = s.shape[1]
  w = _weights(weights, n)
  xc = x - x.mean()
  fit = lambda means_K: float(np.dot(xc, means_K - means_K.mean()) / np.dot(xc, xc))
  rng = np.random.default_rng(seed)
  idx_RN = rng.integers(n, size=(n_resamples, n))
  means_RK = np.stack([_weighted_mean(s[k][idx_RN], w[idx_RN]) for k in range(s.shape[0])], 1)
  slopes = (means_RK - means_RK.mean(1, keepdims=True)) @ xc / np.dot(xc, xc)
  alpha = (1 - confidence) / 2
  low, high = np.quantile(slopes, [alpha, 1 - alpha])
  return Interval(fit(_weighted_mean(s, w)), float(low), float(high), confidence,
                  "paired bootstrap over examples")
