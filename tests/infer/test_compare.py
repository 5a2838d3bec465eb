"""t5tune.infer.compare against scipy / scikit-learn on generated data (no stored numbers)."""
import numpy as np
import pytest
import scipy.stats

from t5tune.infer import compare


def _outcomes(rng, n, p):
  return 100.0 * (rng.random(n) < p)


def test_paired_difference_is_scipys_bootstrap_of_the_differences():
  rng = np.random.default_rng(0)
  a, b = _outcomes(rng, 600, 0.7), _outcomes(rng, 600, 0.6)
  ours = compare.paired_difference(a, b, n_resamples=20_000)
  ref = scipy.stats.bootstrap((a - b,), np.mean, method="percentile", n_resamples=20_000,
                              rng=np.random.default_rng(1)).confidence_interval
  assert ours.estimate == pytest.approx(np.mean(a - b))
  # Two Monte Carlo runs of the same bootstrap: the ends agree to a fraction
  # of the interval's width.
  width = ref.high - ref.low
  assert abs(ours.low - ref.low) < 0.05 * width and abs(ours.high - ref.high) < 0.05 * width
  # And the normal approximation (large n): mean +- z * standard error.
  z = scipy.stats.norm.ppf(0.975) * scipy.stats.sem(a - b)
  assert ours.low == pytest.approx(np.mean(a - b) - z, abs=0.1 * width)
  assert ours.high == pytest.approx(np.mean(a - b) + z, abs=0.1 * width)


def test_weights_give_a_weighted_mean_and_equal_weights_change_nothing():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=300), rng.normal(size=300)
  w = rng.integers(1, 4, size=300).astype(float)
  d = compare.paired_difference(a, b, w, n_resamples=2000)
  assert d.estimate == pytest.approx(np.average(a - b, weights=w))
  same = compare.paired_difference(a, b, np.full(300, 3.0), n_resamples=2000)
  plain = compare.paired_difference(a, b, n_resamples=2000)
  assert (same.low, same.high) == pytest.approx((plain.low, plain.high))


def test_verdicts_need_the_interval_to_exclude_zero():
  rng = np.random.default_rng(3)
  base = _outcomes(rng, 1000, 0.5)
  better = np.where(rng.random(1000) < 0.3, 100.0, base)  # fixes ~30% of examples
  assert compare.paired_difference(better, base).verdict == compare.HELPED
  assert compare.paired_difference(base, better).verdict == compare.HURT
  # Two coin-flippers on 50 examples: an apparent difference, no verdict.
  x, y = _outcomes(rng, 50, 0.5), _outcomes(rng, 50, 0.5)
  d = compare.paired_difference(x, y)
  assert d.low < 0 < d.high and d.verdict == compare.INCONCLUSIVE
  same = compare.paired_difference(base, base)
  assert (same.estimate, same.low, same.high, same.verdict) == (0, 0, 0, compare.INCONCLUSIVE)


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
  rng = np.random.default_rng(4)
  a, b = rng.random(400) < 0.6, rng.random(400) < 0.5
  m = compare.mcnemar(a, b)
  n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
  assert (m.only_a, m.only_b) == (n01, n10)
  expected = min(1.0, 2 * scipy.stats.binom.cdf(min(n01, n10), n01 + n10, 0.5))
  assert m.pvalue == pytest.approx(expected)
  assert compare.mcnemar(a, a).pvalue == 1.0


def test_seeds_bootstrap_reduces_to_the_paired_one_and_widens_with_seed_noise():
  rng = np.random.default_rng(5)
  a, b = _outcomes(rng, 500, 0.65), _outcomes(rng, 500, 0.55)
  one = compare.seeds_difference(a[None], b[None], n_resamples=8000)
  paired = compare.paired_difference(a, b, n_resamples=8000)
  width = paired.high - paired.low
  assert one.estimate == pytest.approx(paired.estimate)
  assert abs(one.low - paired.low) < 0.08 * width and abs(one.high - paired.high) < 0.08 * width
  # Three seeds of system a that disagree by +-8 points: the seed-to-seed
  # spread must widen the interval beyond the examples-only one.
  x, y = rng.normal(60, 20, 500), rng.normal(55, 20, 500)
  alone = compare.paired_difference(x, y, n_resamples=4000)
  noisy = np.stack([x + s for s in (-8.0, 0.0, 8.0)])
  three = compare.seeds_difference(noisy, y[None], n_resamples=4000)
  assert three.estimate == pytest.approx(alone.estimate)
  assert three.high - three.low > 1.5 * (alone.high - alone.low)
  assert compare.seeds_interval(noisy).estimate == pytest.approx(noisy.mean())


def test_mean_interval_and_confusion():
  rng = np.random.default_rng(6)
  x = _outcomes(rng, 800, 0.4)
  m = compare.mean_interval(x)
  ref = scipy.stats.bootstrap((x,), np.mean, method="percentile",
                              rng=np.random.default_rng(0)).confidence_interval
  assert m.low == pytest.approx(ref.low, abs=0.1 * (ref.high - ref.low))
  assert m.estimate == pytest.approx(x.mean())
  c = compare.confusion(["yes", "no", "no"], ["yes", "yes", "yes"], ["yes", "no"])
  assert c == {"labels": ["yes", "no"], "matrix": [[1, 0], [2, 0]]}
  with pytest.raises(ValueError, match="same examples"):
    compare.paired_difference([1.0, 2.0], [1.0])
