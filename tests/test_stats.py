"""wd_jax.study.stats: hand-computed values, scipy cross-checks, error rates and power simulated.

The simulations run the same vectorised code the verdicts use (`mean_se_df`, `welch`,
`crossed_se_df`, `interval`, `verdict_codes` of `wd_jax.study._estimate`) over many simulated
studies at once, with fixed numpy seeds (slopes: a vectorised OLS here, checked against the
`scipy.stats.linregress` the verdicts call);
`test_vectorised_verdicts_equal_the_public_decisions` ties that code to the public `decide_*`
functions trial by trial. A rate is allowed its Monte-Carlo error: 3 standard errors of a
binomial proportion, sqrt(p(1 − p)/trials), so a correct rule fails one check in ~700 seeds and a
rule 1.5 percentage points too eager fails every time at 200,000 trials. Run with ``-s`` to see
the measured rates.
"""

import dataclasses
import doctest
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from ml_collections import ConfigDict

from wd_jax.study import _estimate, power, stats

ALPHA = 0.05
TRIALS = 200_000  # simulated studies per rate: 3 SE at p = 0.05 is 0.0015


def _tol(p: float, trials: int = TRIALS) -> float:
  return 3.0 * math.sqrt(p * (1.0 - p) / trials)


def _codes_paired(d: np.ndarray, comparison: str, margin: float, alpha: float = ALPHA):
  """Verdict codes (+1 supported, −1 not, 0 inconclusive) of paired studies, one per row of d."""
  mean, se, df = _estimate.mean_se_df(d)
  lo, hi = _estimate.interval(mean, se, df, alpha)
  return _estimate.verdict_codes(lo, hi, _estimate.claim_bounds(comparison, margin, 0.0, 0.0))


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """OLS slope of y on x over the last axis and its standard error (n − 2 dof), vectorised."""
  n = x.shape[-1]
  xc = x - x.mean(axis=-1, keepdims=True)
  yc = y - y.mean(axis=-1, keepdims=True)
  sxx = (xc * xc).sum(axis=-1)
  slope = (xc * yc).sum(axis=-1) / sxx
  resid = yc - slope[..., None] * xc
  return slope, np.sqrt((resid * resid).sum(axis=-1) / (n - 2) / sxx)


def _codes_welch(a: np.ndarray, b: np.ndarray, comparison: str, margin: float):
  effect, se, df = _estimate.welch(a, b)
  lo, hi = _estimate.interval(effect, se, df, ALPHA)
  return _estimate.verdict_codes(lo, hi, _estimate.claim_bounds(comparison, margin, 0.0, 0.0))


# ---------------------------------------------------------------------------------------------
# Hand-computed values.

X5 = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, s² = 10/4 = 2.5, se = √(2.5/5) = √0.5 = 0.7071068


def test_t_interval_by_hand():
  # t_{0.95, 4} = 2.131847 (tables): half-width 2.131847 · 0.7071068 = 1.507443.
  mean, lo, hi = stats.t_interval(X5, 0.05)
  assert mean == 3.0
  np.testing.assert_allclose([lo, hi], [1.492557, 4.507443], atol=1e-6)
  # t_{0.975, 4} = 2.776445: the 95% interval 3 ± 1.963243.
  np.testing.assert_allclose(stats.t_interval(X5, 0.025)[1:], [1.036757, 4.963243], atol=1e-6)
  # The same interval from scipy's one-sample t test.
  ci = scipy.stats.ttest_1samp(X5, 0.0).confidence_interval(0.90)
  np.testing.assert_allclose([lo, hi], [ci.low, ci.high], rtol=1e-12)
  # One value: no spread estimate, infinite bounds. Zero spread: the point itself.
  assert stats.t_interval([2.0], 0.05) == (2.0, -math.inf, math.inf)
  assert stats.t_interval([2.0, 2.0, 2.0], 0.05) == (2.0, 2.0, 2.0)


def test_tost_by_hand():
  # X5 as per-seed differences; CI [1.4926, 4.5074].
  assert stats.decide_equivalent(X5, margin=5.0).verdict == stats.SUPPORTED
  assert stats.decide_equivalent(X5, margin=4.0).verdict == stats.INCONCLUSIVE  # hi > 4
  assert stats.decide_equivalent(X5, margin=1.0).verdict == stats.NOT_SUPPORTED  # lo > 1
  # p_TOST at margin 5 = max(P(T4 ≥ 8/√0.5), P(T4 ≤ −2/√0.5)) = F4(−2√2). For 4 dof,
  # F4(t) = 1/2 + (x/2)(1 + (1 − x²)/2) with x = t/√(4 + t²) = −√(2/3):
  # 1/2 − 0.4082483 · 7/6 = 0.0237103.
  d = stats.decide_equivalent(X5, margin=5.0)
  np.testing.assert_allclose(d.p_value, 0.0237103, atol=1e-7)
  assert d.effect == 3.0 and d.n == 5 and d.dropped == 0 and d.n_needed is None
  np.testing.assert_allclose(d.ci, (1.492557, 4.507443), atol=1e-6)
  assert d.detail.startswith(
    "A = +3 [90% CI +1.49, +4.51], n=5 one-sample; claim |A| < 5: supported"
  )


def test_welch_by_hand():
  a, b = X5, [2.0, 4.0, 6.0]
  # mean a − mean b = 3 − 4 = −1; se² = 2.5/5 + 4/3 = 11/6; Welch–Satterthwaite
  # df = (11/6)² / ((1/2)²/4 + (4/3)²/2) = (121/36) / (137/144) = 484/137 = 3.532847.
  effect, se, df = _estimate.welch(np.asarray(a), np.asarray(b))
  assert effect == -1.0
  np.testing.assert_allclose(se, math.sqrt(11 / 6), rtol=1e-14)
  np.testing.assert_allclose(df, 484 / 137, rtol=1e-14)
  d = stats.decide_greater(a, b, paired=False)
  assert d.verdict == stats.INCONCLUSIVE and d.n == 3
  ref = scipy.stats.ttest_ind(a, b, equal_var=False)
  ci = ref.confidence_interval(0.90)
  np.testing.assert_allclose(d.ci, (ci.low, ci.high), rtol=1e-12)  # (−3.99977, +1.99977)
  one_sided = scipy.stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
  np.testing.assert_allclose(d.p_value, one_sided, rtol=1e-12)
  assert "n=5+3 unpaired (Welch)" in d.detail
  with pytest.raises(ValueError, match="paired=False needs b"):
    stats.decide_greater(a, paired=False)


def test_paired_matches_scipy_and_the_one_sample_test_of_the_differences():
  a = [0.912, 0.905, 0.931, 0.918, 0.925]
  b = [0.901, 0.899, 0.915, 0.917, 0.910]
  d = stats.decide_greater(a, b)
  ref = scipy.stats.ttest_rel(a, b, alternative="greater")
  np.testing.assert_allclose(d.p_value, ref.pvalue, rtol=1e-12)
  ci = scipy.stats.ttest_rel(a, b).confidence_interval(0.90)
  np.testing.assert_allclose(d.ci, (ci.low, ci.high), rtol=1e-10)
  diffs = stats.decide_greater(np.subtract(a, b))
  assert (diffs.verdict, diffs.effect, diffs.ci) == (d.verdict, d.effect, d.ci)
  less = stats.decide_less(b, a)  # the mirror claim
  assert "; claim A−B < 0: supported (p = " in less.detail
  assert less.verdict == d.verdict and less.p_value == pytest.approx(d.p_value, rel=1e-12)


def test_slope_on_three_points_by_hand():
  x, y = [0.0, 1.0, 2.0], [0.0, 1.0, 3.0]
  # Sxx = 2, Sxy = 3: slope 1.5; residuals (1/6, −1/3, 1/6), SSR = 1/6, 1 dof:
  # se = √((1/6)/1/2) = √(1/12) = 0.2886751. t_{0.95, 1} = tan(0.45π) = 6.3137515 (Cauchy):
  # CI 1.5 ± 1.8226231 = [−0.3226231, 3.3226231].
  d = stats.decide_slope(x, y, low=-1.0, high=4.0)
  assert d.effect == pytest.approx(1.5, abs=1e-15) and d.n == 3
  np.testing.assert_allclose(d.ci, (-0.3226231, 3.3226231), atol=1e-7)
  assert d.verdict == stats.SUPPORTED
  assert stats.decide_slope(x, y, low=0.0, high=3.0).verdict == stats.INCONCLUSIVE
  assert stats.decide_slope(x, y, low=4.0, high=5.0).verdict == stats.NOT_SUPPORTED
  assert scipy.stats.linregress(x, y).stderr == pytest.approx(math.sqrt(1 / 12), rel=1e-12)
  # The vectorised OLS of the simulations below is scipy's, row by row.
  rows = np.random.default_rng(0).normal(size=(4, 6))
  slope, se = _ols(np.broadcast_to(np.arange(6.0), rows.shape), rows)
  for k, row in enumerate(rows):
    fit = scipy.stats.linregress(np.arange(6.0), row)
    assert (slope[k], se[k]) == (pytest.approx(fit.slope), pytest.approx(fit.stderr))
  assert d.margin == 2.5 and d.comparison == "slope_within"


def test_grouped_slope_is_the_t_interval_of_per_group_slopes():
  x = [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
  y = [0.0, 1.0, 2.0, 0.0, 1.2, 2.4, 1.0, 1.9, 2.8, 5.0, float("nan"), 7.0]
  groups = ["s0"] * 3 + ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3
  d = stats.decide_slope(x, y, low=0.5, high=1.5, groups=groups)
  # Per-group slopes 1.0, 1.2, 0.9 (s3 dropped whole: one of its values diverged).
  mean, lo, hi = stats.t_interval([1.0, 1.2, 0.9], 0.05)
  assert (d.n, d.dropped) == (3, 1)
  np.testing.assert_allclose([d.effect, *d.ci], [mean, lo, hi], rtol=1e-12)
  assert "3 groups (per-group OLS), 1 dropped (not finite)" in d.detail
  with pytest.raises(ValueError, match="group 'g' needs at least 2 distinct x"):
    stats.decide_slope([1.0, 1.0, 0.0, 1.0], [1, 2, 3, 4], low=0, high=1, groups="gghh")


def test_holm_on_three_p_values():
  # Sorted 0.01, 0.03, 0.04: 0.01 ≤ 0.05/3 (rejected), then 0.03 > 0.05/2: stop.
  # Adjusted: 3·0.01 = 0.03, max(0.03, 2·0.03) = 0.06, max(0.06, 1·0.04) = 0.06.
  adjusted, rejected = stats.holm([0.01, 0.04, 0.03], 0.05)
  np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06], rtol=1e-12)
  assert rejected.tolist() == [True, False, False]
  base = stats.decide_greater([1.0, 1.1, 1.2])
  ds = {
    name: dataclasses.replace(base, p_value=p)
    for name, p in [("first", 0.01), ("second", 0.04), ("third", 0.03)]
  }
  note = stats.multiple_claims_note(ds, 0.05)
  assert note == (
    "3 claims tested at α = 0.05 each; Holm–Bonferroni (family-wise α = 0.05): 1 of 3 supported "
    "verdicts survive (first); not surviving: second: adjusted p = 0.06; third: adjusted p = 0.06."
  )
  inconclusive = dataclasses.replace(base, verdict=stats.INCONCLUSIVE, p_value=math.nan)
  note = stats.multiple_claims_note([base, inconclusive], 0.05)
  assert note.startswith("2 claims tested at α = 0.05 each") and "1 of 1 supported" in note
  assert stats.multiple_claims_note([], 0.05) == "No claims tested."


# ---------------------------------------------------------------------------------------------
# Edge cases, drops and bad input.


def test_zero_spread_is_decided_unless_it_sits_on_the_margin():
  up = stats.decide_greater([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
  assert (up.verdict, up.ci, up.p_value, up.n_needed) == (stats.SUPPORTED, (1.0, 1.0), 0.0, None)
  down = stats.decide_greater([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
  assert down.verdict == stats.NOT_SUPPORTED
  on = stats.decide_greater([1.5, 1.5, 1.5], [0.5, 0.5, 0.5], margin=1.0)
  assert on.verdict == stats.INCONCLUSIVE and on.n_needed is None
  assert "undecidable at the observed effect" in on.detail
  eq = stats.decide_equivalent([0.25, 0.25], [0.0, 0.0], margin=0.25)
  assert eq.verdict == stats.INCONCLUSIVE and eq.n_needed is None
  assert stats.decide_equivalent([0.2, 0.2], [0.0, 0.0], margin=0.25).verdict == stats.SUPPORTED


def test_one_pair_is_inconclusive_and_diverged_runs_are_dropped_and_counted():
  one = stats.decide_greater([5.0, None, float("nan")], [1.0, 1.0, 1.0])
  assert (one.verdict, one.n, one.dropped, one.ci) == (
    stats.INCONCLUSIVE,
    1,
    2,
    (-math.inf, math.inf),
  )
  assert one.effect == 4.0 and one.n_needed is None and math.isnan(one.power)
  assert "n=1 paired, 2 dropped (not finite): at least 2 pairs are needed" in one.detail
  none = stats.decide_less([float("inf")], [0.0])
  assert none.verdict == stats.INCONCLUSIVE and none.n == 0 and math.isnan(none.effect)
  d = stats.decide_greater([1.0, float("nan"), 3.0, float("inf"), 2.0], [0.0, 0.0, 1.0, 0.0, 0.5])
  assert (d.n, d.dropped, d.effect) == (3, 2, pytest.approx(1.5))
  assert ", 2 dropped (not finite);" in d.detail
  unpaired = stats.decide_greater([1.0, None, 2.0], [0.0, 0.5, float("nan"), 0.2], paired=False)
  assert (unpaired.n, unpaired.dropped) == (2, 2)
  assert stats.paired_differences([1.0, None], [0.5, 1.0])[1] == 1


def test_bad_input_names_the_argument():
  with pytest.raises(ValueError, match=r"len\(a\)=3, len\(b\)=2"):
    stats.decide_greater([1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match="margin must be > 0"):
    stats.decide_equivalent([1, 2, 3], margin=0.0)
  with pytest.raises(ValueError, match="margin must be ≥ 0"):
    stats.decide_greater([1, 2, 3], margin=-0.1)
  with pytest.raises(ValueError, match="alpha must be"):
    stats.decide_less([1, 2, 3], alpha=0.5)
  with pytest.raises(ValueError, match="low must be < high"):
    stats.decide_slope([0, 1, 2], [0, 1, 2], low=1.0, high=1.0)
  with pytest.raises(ValueError, match="x must take at least 2 distinct values"):
    stats.decide_slope([1, 1, 1], [0, 1, 2], low=0.0, high=1.0)
  with pytest.raises(ValueError, match="one-dimensional"):
    stats.t_interval([[1.0, 2.0]], 0.05)
  with pytest.raises(ValueError, match="non-finite"):
    stats.t_interval([1.0, float("nan")], 0.05)
  with pytest.raises(ValueError, match="sd must be"):
    stats.power_one_sided(1.0, -1.0, 5, 0.05)


def test_decide_dispatches_declared_claims_and_names_bad_keys():
  a, b = [0.93, 0.91, 0.95, 0.94], [0.90, 0.91, 0.92, 0.90]
  claim = ConfigDict({"comparison": "greater", "metric": "test_accuracy", "alpha": 0.05})
  assert stats.decide(claim, {"a": a, "b": b}) == stats.decide_greater(a, b)
  claim = {"comparison": "equivalent", "margin": 0.05, "paired": False}
  assert stats.decide(claim, {"a": a, "b": b}) == stats.decide_equivalent(
    a, b, margin=0.05, paired=False
  )
  x, y = [0.0, 1.0, 2.0, 3.0], [0.1, 0.9, 2.1, 2.9]
  slope = {"comparison": "slope_within", "low": 0.8, "high": 1.2}
  assert stats.decide(slope, {"x": x, "y": y}) == stats.decide_slope(x, y, low=0.8, high=1.2)
  for bad_claim, bad_values, match in [
    ({"metric": "loss"}, {"a": a}, "'comparison'"),
    ({"comparison": "bigger"}, {"a": a}, "'bigger'"),
    ({"comparison": "equivalent"}, {"a": a}, "'margin'"),
    ({"comparison": "slope_within", "low": 0.0}, {"x": x, "y": y}, "'high'"),
    ({"comparison": "slope_within", "low": 0.0, "high": 1.0}, {"x": x}, "'y'"),
    ({"comparison": "greater"}, {"b": b}, "'a'"),
    ({"comparison": "greater", "low": 0.0}, {"a": a}, "'low'"),
    ({"comparison": "slope_within", "low": 0, "high": 1, "margin": 0.1}, {"x": x}, "'margin'"),
    ({"comparison": "less"}, {"a": a, "x": x}, "'x'"),
  ]:
    with pytest.raises(ValueError, match=match):
      stats.decide(bad_claim, bad_values)


def test_examples_in_docstrings_run():
  for module in (stats, _estimate, power):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0, module.__name__


# ---------------------------------------------------------------------------------------------
# Power: closed forms against independent computations.


def _quad_inside(low, high, true, se, df, alpha):
  """P(L < lo, hi < H) by adaptive quadrature over the χ density of ŝe/se (the reference)."""
  q = scipy.stats.t.ppf(1 - alpha, df)
  w_max = (high - low) / (2 * q * se)
  r = math.sqrt(df)

  def f(w):
    inside = scipy.special.ndtr((high - q * se * w - true) / se) - scipy.special.ndtr(
      (low + q * se * w - true) / se
    )
    return max(inside, 0.0) * scipy.stats.chi.pdf(w * r, df) * r

  peak = [p for p in (1 - 5 / math.sqrt(2 * df), 1.0, 1 + 5 / math.sqrt(2 * df)) if 0 < p < w_max]
  return scipy.integrate.quad(f, 0, w_max, points=peak or None, limit=500, epsabs=1e-12)[0]


@pytest.mark.parametrize("df", [1, 2, 4, 9, 49, 999, 1998])
def test_interval_power_matches_adaptive_quadrature_and_the_noncentral_t(df):
  for se in (0.05, 0.3, 1.0):
    for true in (0.0, 0.5, 0.95, 1.0, 1.3):
      got = power.power_inside(-1.0, 1.0, true, se, df, ALPHA)
      assert got == pytest.approx(_quad_inside(-1.0, 1.0, true, se, df, ALPHA), abs=1e-5)
    # A very wide range leaves only the lower test: the noncentral t tail.
    wide = power.power_inside(0.0, 1e6, 0.7, se, df, ALPHA)
    nct = scipy.stats.nct.sf(scipy.stats.t.ppf(1 - ALPHA, df), df, 0.7 / se)
    assert wide == pytest.approx(nct, abs=1e-5)


def test_tost_power_is_at_most_alpha_on_the_margin():
  for n in (2, 3, 5, 10, 50):
    for sd in (0.1, 0.5, 1.0, 3.0):
      assert stats.power_tost(1.0, sd, n, ALPHA, true_effect=1.0) <= ALPHA + 1e-9
      assert stats.power_tost(1.0, sd, n, ALPHA, true_effect=-1.0) <= ALPHA + 1e-9
  assert stats.power_tost(1.0, 0.2, 20, ALPHA) > 0.999
  assert stats.power_one_sided(0.0, 1.0, 10, ALPHA) == pytest.approx(ALPHA, abs=1e-12)
  assert stats.power_one_sided(1.0, 1.0, 1, ALPHA) == 0.0


# ---------------------------------------------------------------------------------------------
# Simulations: the verdicts' error rates and power.


@pytest.mark.parametrize("n", [2, 3, 5])
def test_false_supported_at_most_alpha_when_there_is_no_effect(n):
  rng = np.random.default_rng(100 + n)
  rates = {}

  def runs():  # a[i] = μ + e, b[i] = μ + e' for seed i, noise sd 1, a fresh set of studies
    return rng.normal(size=(2, TRIALS, n))

  for comparison in ("greater", "less"):
    a, b = runs()
    rates[comparison] = float(np.mean(_codes_paired(a - b, comparison, 0.0) == 1))
  # The null's worst case with a margin: the true gap equals the margin (here 0.3).
  a, b = runs()
  rates["greater, gap = margin"] = float(np.mean(_codes_paired(a - b + 0.3, "greater", 0.3) == 1))
  a, b = runs()
  rates["less, gap = −margin"] = float(np.mean(_codes_paired(a - b - 0.3, "less", 0.3) == 1))
  # A shared per-seed offset (sd 3, three times the noise): paired, it cancels; Welch sees it.
  for comparison in ("greater", "less"):
    a, b = runs() + 3.0 * rng.normal(size=(TRIALS, n))
    rates[f"{comparison}, seed offset"] = float(np.mean(_codes_paired(a - b, comparison, 0.0) == 1))
    rates[f"{comparison}, seed offset, Welch"] = float(
      np.mean(_codes_welch(a, b, comparison, 0.0) == 1)
    )
  # Heavy-tailed (Student t, 3 dof) and skewed (lognormal) run noise: under no effect the paired
  # difference of two exchangeable runs is still symmetric about 0.
  a, b = rng.standard_t(3, size=(2, TRIALS, n))
  rates["greater, t3 noise"] = float(np.mean(_codes_paired(a - b, "greater", 0.0) == 1))
  a, b = rng.lognormal(0.0, 1.0, size=(2, TRIALS, n))
  rates["greater, lognormal noise"] = float(np.mean(_codes_paired(a - b, "greater", 0.0) == 1))
  print(f"\nfalse 'supported' at n={n} ({TRIALS} trials): " + str(rates))
  for name, rate in rates.items():
    assert rate <= ALPHA + _tol(ALPHA), (name, rate)
    if "noise" not in name and "Welch" not in name:  # paired t is exact under normal noise
      assert rate >= ALPHA - _tol(ALPHA), (name, rate)


def test_pairing_by_seed_gives_power_that_welch_lacks_and_power_matches_the_noncentral_t():
  # A true gap of 1.5 noise-sd at 5 seeds; each run's noise has sd 1, so the per-seed
  # difference has sd √2, and the seeds share an offset of sd 3.
  rng = np.random.default_rng(7)
  n, effect = 5, 1.5
  a, b = rng.normal(size=(2, TRIALS, n))
  offset = 3.0 * rng.normal(size=(TRIALS, n))
  a, b = a + offset + effect, b + offset
  paired = float(np.mean(_codes_paired(a - b, "greater", 0.0) == 1))
  welch = float(np.mean(_codes_welch(a, b, "greater", 0.0) == 1))
  predicted = stats.power_one_sided(effect, math.sqrt(2.0), n, ALPHA)
  print(
    f"\npower at 1.5 noise-sd, n=5: predicted {predicted:.4f}, paired {paired:.4f}, "
    f"Welch with the seed offset {welch:.4f}"
  )
  assert abs(paired - predicted) <= _tol(predicted)
  assert paired - welch > 0.3
  # Welch without the offset, against its planning model (pooled t, 2n − 2 dof): approximate.
  a0, b0 = rng.normal(size=(2, TRIALS, n))
  welch0 = float(np.mean(_codes_welch(a0 + effect, b0, "greater", 0.0) == 1))
  predicted0 = stats.power_one_sided(effect, 1.0, n, ALPHA, paired=False)
  print(f"Welch without offset: predicted (pooled-t model) {predicted0:.4f}, measured {welch0:.4f}")
  assert abs(welch0 - predicted0) <= 0.03


@pytest.mark.parametrize("n", [3, 5, 10])
def test_false_equivalent_at_most_alpha_when_the_true_gap_equals_the_margin(n):
  rng = np.random.default_rng(200 + n)
  margin, worst = 1.0, {}
  for sd in (0.1, 0.25, 0.5, 1.0, 2.0):
    d = rng.normal(size=(TRIALS, n)) * sd
    for sign in (1.0, -1.0):
      rate = float(np.mean(_codes_paired(d + sign * margin, "equivalent", margin) == 1))
      worst[(sd, sign)] = rate
      assert rate <= ALPHA + _tol(ALPHA), (sd, sign, rate)
      predicted = stats.power_tost(margin, sd, n, ALPHA, true_effect=sign * margin)
      assert abs(rate - predicted) <= _tol(max(predicted, 1e-3)) + 1e-4
  key = max(worst, key=worst.get)
  print(f"\nfalse 'equivalent' at n={n}: max {worst[key]:.4f} at sd/margin={key[0]}; {worst}")


def test_tost_power_matches_simulation():
  rng = np.random.default_rng(11)
  for n, sd, true in ((10, 1.0, 0.0), (5, 0.5, 0.3), (3, 0.2, -0.5)):
    d = true + sd * rng.normal(size=(TRIALS, n))
    rate = float(np.mean(_codes_paired(d, "equivalent", 1.0) == 1))
    predicted = stats.power_tost(1.0, sd, n, ALPHA, true_effect=true)
    print(
      f"\nTOST power n={n} sd={sd} true={true}: predicted {predicted:.4f}, simulated {rate:.4f}"
    )
    assert abs(rate - predicted) <= _tol(predicted)


def test_false_supported_slope_when_the_true_slope_is_just_outside_the_range():
  rng = np.random.default_rng(3)
  low, high, trials = 0.5, 1.0, TRIALS // 4
  rates = {}
  x = np.linspace(0.0, 1.0, 8)
  for name, beta in (("at high", high), ("just above high", high + 0.01), ("at low", low)):
    # Ungrouped: one OLS slope over 8 points, noise sd 0.1.
    y = beta * x + 0.1 * rng.normal(size=(trials, x.size))
    slope, se = _ols(np.broadcast_to(x, y.shape), y)
    lo, hi = _estimate.interval(slope, se, x.size - 2, ALPHA)
    rates[f"OLS, {name}"] = float(np.mean(_estimate.verdict_codes(lo, hi, (low, high)) == 1))
    # Grouped: 3 seeds × 5 x each; each seed has its own offset and slope deviation (sd 0.05).
    gx = np.linspace(0.0, 1.0, 5)
    seed_slope = beta + 0.05 * rng.normal(size=(trials, 3, 1))
    gy = seed_slope * gx + rng.normal(size=(trials, 3, 1)) + 0.1 * rng.normal(size=(trials, 3, 5))
    per_group = _ols(np.broadcast_to(gx, gy.shape), gy)[0]
    codes = _codes_slope_groups(per_group, (low, high))
    rates[f"3 groups, {name}"] = float(np.mean(codes == 1))
  print(f"\nfalse 'supported' for slope_within [0.5, 1] ({trials} trials): {rates}")
  for name, rate in rates.items():
    assert rate <= ALPHA + _tol(ALPHA, trials), (name, rate)


def _codes_slope_groups(per_group: np.ndarray, bounds):
  mean, se, df = _estimate.mean_se_df(per_group)
  lo, hi = _estimate.interval(mean, se, df, ALPHA)
  return _estimate.verdict_codes(lo, hi, bounds)


def test_n_needed_reaches_80_percent_power_in_simulation():
  rng = np.random.default_rng(5)
  trials = TRIALS // 4
  cases = [("greater", 0.6, 1.0, 0.0), ("greater", 0.3, 0.2, 0.2), ("equivalent", 0.2, 1.0, 1.0)]
  for comparison, effect, sd, margin in cases:
    n = stats.n_needed(comparison, effect, sd, ALPHA, margin=margin)
    rates = []
    for m in (n - 1, n):
      d = effect + sd * rng.normal(size=(trials, m))
      rates.append(float(np.mean(_codes_paired(d, comparison, margin) == 1)))
    print(
      f"\nn_needed {comparison} effect={effect} sd={sd} margin={margin}: n={n}, "
      f"simulated power at n-1, n: {rates}"
    )
    assert rates[1] >= 0.8 - _tol(0.8, trials)
    assert rates[0] < 0.8 + _tol(0.8, trials)
  # "Not supported" is a decision too: an effect below the margin decides that way.
  n = stats.n_needed("greater", 0.0, 1.0, ALPHA, margin=0.5)
  d = 1.0 * rng.normal(size=(trials, n))
  assert float(np.mean(_codes_paired(d, "greater", 0.5) == -1)) >= 0.8 - _tol(0.8, trials)
  assert stats.n_needed("greater", 0.5, 1.0, ALPHA, margin=0.5) is None  # on the bound
  assert stats.n_needed("greater", 0.01, 1.0, ALPHA) is None  # beyond the cap of 1000


def test_an_inconclusive_decision_reports_the_n_that_decides_it():
  a, b = [0.93, 0.90, 0.95], [0.90, 0.91, 0.92]
  d = stats.decide_greater(a, b)
  diffs = np.subtract(a, b)
  sd = float(np.std(diffs, ddof=1))
  assert d.verdict == stats.INCONCLUSIVE
  assert d.n_needed == stats.n_needed("greater", d.effect, sd, ALPHA) > d.n
  assert d.power_at == pytest.approx(sd) and d.power == pytest.approx(
    stats.power_one_sided(sd, sd, 3, ALPHA)
  )
  assert f"~{d.n_needed} pairs would decide it" in d.detail
  assert stats.decide_greater(a, b, power_at=0.1).power == pytest.approx(
    stats.power_one_sided(0.1, sd, 3, ALPHA)
  )


def test_vectorised_verdicts_equal_the_public_decisions():
  rng = np.random.default_rng(9)
  k = 150
  for comparison, n, shift, margin in (
    ("greater", 2, 0.0, 0.0),
    ("less", 3, -0.5, 0.2),
    ("equivalent", 5, 0.3, 0.8),
  ):
    a = rng.normal(size=(k, n)) + shift
    b = rng.normal(size=(k, n))
    codes = _codes_paired(a - b, comparison, margin)
    welch = _codes_welch(a, b, comparison, margin)
    claim = {"comparison": comparison, "margin": margin}
    for i in range(k):
      got = stats.decide(claim, {"a": a[i], "b": b[i]})
      assert got.verdict == stats._VERDICTS[int(codes[i])]
      assert (got.p_value < ALPHA) == (got.verdict == stats.SUPPORTED)
      unpaired = stats.decide({**claim, "paired": False}, {"a": a[i], "b": b[i]})
      assert unpaired.verdict == stats._VERDICTS[int(welch[i])]
  gx = np.tile(np.linspace(0.0, 1.0, 4), 3)
  groups = np.repeat([0, 1, 2], 4)
  for _ in range(k):
    gy = 0.8 * gx + 0.2 * rng.normal(size=gx.size)
    per_group = _ols(gx.reshape(3, 4), gy.reshape(3, 4))[0]
    code = int(_codes_slope_groups(per_group, (0.5, 1.0)))
    got = stats.decide_slope(gx, gy, low=0.5, high=1.0, groups=groups)
    assert got.verdict == stats._VERDICTS[code]


def test_bootstrap_is_deterministic_and_too_narrow_at_three_seeds():
  x = [0.31, 1.24, -0.45, 0.83, 0.12, 2.07, -0.66]
  assert stats.bootstrap_interval(x, ALPHA, seed=1) == stats.bootstrap_interval(x, ALPHA, seed=1)
  assert stats.bootstrap_interval(x, ALPHA, seed=1) != stats.bootstrap_interval(x, ALPHA, seed=2)
  assert stats.bootstrap_interval([2.0], ALPHA) == (2.0, -math.inf, math.inf)
  # Coverage of the true mean 0 by the nominal 90% intervals, 2000 studies of 3 seeds each.
  rng = np.random.default_rng(13)
  studies = rng.normal(size=(2000, 3))
  t_cover = np.mean([lo < 0 < hi for _, lo, hi in (stats.t_interval(s, ALPHA) for s in studies)])
  boot = (stats.bootstrap_interval(s, ALPHA, resamples=1000, seed=i) for i, s in enumerate(studies))
  b_cover = np.mean([lo < 0 < hi for _, lo, hi in boot])
  print(f"\ncoverage of nominal 90% at n=3: t {t_cover:.3f}, percentile bootstrap {b_cover:.3f}")
  assert abs(t_cover - 0.9) <= _tol(0.9, 2000)
  assert b_cover < 0.8


# ---------------------------------------------------------------------------------------------
# Seeds × test items: the crossed random-effects interval.


def test_crossed_mean_squares_by_hand():
  # d = [[1, 2, 3], [3, 4, 8]]: grand mean 3.5; seed means 2, 5; item means 2, 3, 5.5.
  # MS_seed = 3·((2−3.5)² + (5−3.5)²)/1 = 13.5; MS_item = 2·(2.25 + 0.25 + 4)/2 = 6.5;
  # residuals ±[0.5, 0.5, −1] → MS_resid = 3/2 = 1.5. Var = (13.5 + (6.5 − 1.5))/6 = 18.5/6.
  # Satterthwaite: 18.5² / (13.5²/1 + 6.5²/2 + 1.5²/2) = 342.25 / 204.5.
  d = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 8.0]])
  mean, se, df = _estimate.crossed_se_df(d)
  assert mean == 3.5
  np.testing.assert_allclose([se**2, df], [18.5 / 6, 342.25 / 204.5], rtol=1e-12)


def test_crossed_interval_is_the_paired_t_over_seed_means_when_items_share_nothing():
  # Every item has the same mean over seeds (no shared item part): the crossed interval is the
  # paired t interval of the per-seed means, exactly.
  rng = np.random.default_rng(21)
  e = rng.normal(size=(6, 50))
  d = 0.3 + rng.normal(size=(6, 1)) + e - e.mean(axis=0)
  _, lo, hi = stats.seeds_items_interval(d)
  ref = scipy.stats.ttest_1samp(d.mean(axis=1), 0.0).confidence_interval(0.90)
  np.testing.assert_allclose([lo, hi], [ref.low, ref.high], rtol=1e-10)
  a, b = d + 1.0, np.ones_like(d)  # two arms paired by seed and item
  assert stats.decide_greater(a, b).ci == pytest.approx((lo, hi), rel=1e-12)
  with pytest.raises(ValueError, match="paired must be True"):
    stats.decide_greater(a, b, paired=False)


def _crossed_rate(rng, trials, s, i, sd_seed, sd_item, sd_resid, margin):
  """False 'supported' rates of 'greater than margin' when the true effect is the margin: the
  crossed interval, and the paired t over per-seed means that ignores the items."""
  crossed = naive = 0
  for _ in range(trials // 1000):
    d = (
      margin
      + sd_seed * rng.normal(size=(1000, s, 1))
      + sd_item * rng.normal(size=(1000, 1, i))
      + sd_resid * rng.normal(size=(1000, s, i))
    )
    lo, hi = _estimate.interval(*_estimate.crossed_se_df(d), ALPHA)
    crossed += int(np.sum(_estimate.verdict_codes(lo, hi, (margin, math.inf)) == 1))
    lo, hi = _estimate.interval(*_estimate.mean_se_df(d.mean(axis=-1)), ALPHA)
    naive += int(np.sum(_estimate.verdict_codes(lo, hi, (margin, math.inf)) == 1))
  return crossed / trials, naive / trials


def test_false_supported_at_most_alpha_over_seeds_and_items_at_the_margin():
  """Seeds and items both vary, the true effect sits on the margin: the crossed interval keeps
  the false 'supported' rate at α whatever the mix; the paired t over per-seed means does not
  once the items share an effect (a finite test set is a sample too)."""
  rng = np.random.default_rng(31)
  trials, margin, rates = 20_000, 0.01, {}
  mixes = {  # (sd of seed effects, of item effects, of the seed × item residual)
    "seeds only": (0.01, 0.0, 0.0),
    "items only": (0.0, 0.01, 0.0),
    "residual only": (0.0, 0.0, 0.1),
    "balanced": (0.005, 0.005, 0.05),
    "items dominate": (0.001, 0.02, 0.05),
  }
  for name, (a, b, e) in mixes.items():
    rates[name] = _crossed_rate(rng, trials, 10, 200, a, b, e, margin)
  print(
    f"\nfalse 'supported' at the margin, 10 seeds × 200 items, {trials} trials each "
    f"(crossed, per-seed paired t): {rates}"
  )
  for name, (crossed, _) in rates.items():
    assert crossed <= ALPHA + _tol(ALPHA, trials), (name, crossed)
  assert rates["items only"][1] > 0.3 and rates["items dominate"][1] > 2 * ALPHA


def test_false_supported_at_most_alpha_for_accuracy_items_at_the_margin():
  """The same for 0/1 outcomes like the studies' test items: 20 seeds × 1000 items, each item
  with its own difficulty, each arm's gain on it varying by item and seed, and the two arms'
  runs of a seed sharing their randomness on an item (paired); the true gap is the margin."""
  rng = np.random.default_rng(41)
  trials, s, i, margin = 4000, 20, 1000, 0.01
  hits = 0
  for _ in range(trials // 200):
    p = rng.uniform(0.3, 0.8, size=(200, 1, i))  # item difficulty
    gain = margin + rng.uniform(-0.08, 0.08, size=(200, 1, i))  # per item, mean = margin
    gain = gain + rng.uniform(-0.02, 0.02, size=(200, s, 1))  # per seed, mean 0
    u = rng.random((200, s, i))
    shared = rng.random((200, s, i)) < 0.7  # paired runs share the draw on most items
    a = (u < p + gain).astype(float)
    b = (np.where(shared, u, rng.random((200, s, i))) < p).astype(float)
    lo, hi = _estimate.interval(*_estimate.crossed_se_df(a - b), ALPHA)
    hits += int(np.sum(_estimate.verdict_codes(lo, hi, (margin, math.inf)) == 1))
  rate = hits / trials
  print(
    f"\nfalse 'supported' at the margin, 0/1 items, {s} seeds × {i} items: {rate:.4f} "
    f"(n = {trials} simulated studies)"
  )
  assert rate <= ALPHA + _tol(ALPHA, trials)


def test_per_item_slopes_average_to_the_slope_over_item_means():
  rng = np.random.default_rng(51)
  x = rng.normal(size=(4, 3))
  y = rng.normal(size=(4, 3, 30))
  slopes = stats.per_item_slopes(x, y)
  for s in range(4):
    fit = scipy.stats.linregress(x[s], y[s].mean(axis=1))
    assert slopes[s].mean() == pytest.approx(fit.slope, rel=1e-10)
  flat = stats.per_item_slopes(np.ones((1, 3)), np.zeros((1, 3, 2)))
  assert np.isnan(flat).all()  # an x that does not vary gives no slope


def test_more_seeds_cannot_decide_what_the_test_items_leave_undecided():
  # Seeds agree closely; the items carry a shared effect with a large spread: the interval is
  # wide because of the items, and the verdict says more items (not seeds) would decide it.
  rng = np.random.default_rng(61)
  d = 0.002 + 0.0005 * rng.normal(size=(20, 1)) + 0.3 * rng.normal(size=(1, 300))
  got = stats.decide_greater(d, margin=0.0)
  assert got.verdict == stats.INCONCLUSIVE and got.n_needed is None
  assert "more seeds alone would not decide it" in got.detail and "more test items" in got.detail
