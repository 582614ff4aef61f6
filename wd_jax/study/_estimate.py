"""From measured values to an effect, its standard error and t degrees of freedom.

What every verdict of `wd_jax.study.stats` and every power of `wd_jax.study.power` reads: the
argument checks, the claim as an interval (L, H), the estimators (paired by seed, Welch, OLS
slopes, and seeds × test items crossed), the (1−2α) t interval and the one-sided p-values. The
summaries over the last axis work on arrays of any shape, so the simulations in
tests/test_stats.py run the very code the verdicts use, vectorised over trials. Quantiles, tail
probabilities, standard errors, Welch's degrees of freedom and OLS slopes come from
`scipy.stats`; the crossed (seeds × items) estimator is the balanced two-way random-effects
ANOVA, which scipy lacks (see `crossed_se_df`).

The public functions of this module are re-exported by `wd_jax.study.stats`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats

COMPARISONS = ("greater", "less", "equivalent", "slope_within")


def check_alpha(alpha: float) -> float:
  """`alpha` as a float in (0, 0.5), or `ValueError` naming it."""
  if not isinstance(alpha, (int, float)) or not 0.0 < alpha < 0.5:
    raise ValueError(f"alpha must be a number in (0, 0.5), got {alpha!r}.")
  return float(alpha)


def check_margin(name: str, margin: float, *, positive: bool) -> float:
  """A finite margin ≥ 0 (> 0 when `positive`, for equivalence)."""
  if not isinstance(margin, (int, float)) or not math.isfinite(margin):
    raise ValueError(f"{name} must be a finite number, got {margin!r}.")
  if positive and margin <= 0:
    raise ValueError(f"{name} must be > 0 for an equivalence claim, got {margin!r}.")
  if margin < 0:
    raise ValueError(f"{name} must be ≥ 0, got {margin!r}.")
  return float(margin)


def check_range(low: float | None, high: float | None) -> tuple[float, float]:
  """A finite range low < high (a slope claim)."""
  for name, v in (("low", low), ("high", high)):
    if not isinstance(v, (int, float)) or not math.isfinite(v):
      raise ValueError(f"{name} must be a finite number, got {v!r}.")
  if not low < high:
    raise ValueError(f"low must be < high, got low={low!r}, high={high!r}.")
  return float(low), float(high)


def as_array(name: str, x: Any, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
  """`x` as float64 (None, a diverged run, becomes NaN) with one of the dimensions `ndim`."""
  try:
    arr = np.asarray(x, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a sequence of numbers, got {x!r}.") from e
  if arr.ndim not in ndim:
    what = "one-dimensional (one value per seed)"
    if 2 in ndim:
      what = "one value per seed, or seeds × test items"
    raise ValueError(f"{name} must be {what}, got shape {arr.shape}.")
  return arr


def finite_values(name: str, x: Any) -> np.ndarray:
  """A non-empty vector of finite values, or `ValueError`."""
  arr = as_array(name, x)
  if arr.size == 0:
    raise ValueError(f"{name} is empty.")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} has non-finite values ({arr.tolist()}); drop them first.")
  return arr


def claim_bounds(comparison: str, margin: float, low: float, high: float) -> tuple[float, float]:
  """The claim as an interval (L, H) the effect must lie strictly inside."""
  return {
    "greater": (margin, math.inf),
    "less": (-math.inf, -margin),
    "equivalent": (-margin, margin),
    "slope_within": (low, high),
  }[comparison]


# ----------------------------------------------------------------------------------------------
# Summaries over the last axis (vectorised: the simulations run them over many trials at once).


def _quiet(fn, *args, **kwargs):
  """scipy warns on identical values (a spread of exactly 0); those are handled by the caller."""
  with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)
    return fn(*args, **kwargs)


def mean_se_df(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
  """Mean, standard error (`scipy.stats.sem`) and t dof over the last axis (n ≥ 2 values)."""
  n = d.shape[-1]
  # Identical values: the mean is the value itself and the spread exactly 0 (no rounding noise).
  same = np.ptp(d, axis=-1) == 0
  mean = np.where(same, d[..., 0], d.mean(axis=-1))
  se = np.where(same, 0.0, _quiet(scipy.stats.sem, d, axis=-1))
  return mean, se, n - 1


def welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Welch's difference of means, its standard error and Welch–Satterthwaite dof
  (`scipy.stats.ttest_ind` with ``equal_var=False``), over the last axis."""
  ma, sa, _ = mean_se_df(a)
  mb, sb, _ = mean_se_df(b)
  se2 = sa**2 + sb**2
  df = _quiet(scipy.stats.ttest_ind, a, b, axis=-1, equal_var=False).df
  # Both arms without spread: the df is irrelevant (the CI is a point); keep it finite.
  df = np.where(se2 > 0, df, a.shape[-1] + b.shape[-1] - 2)
  return ma - mb, np.sqrt(se2), df


def crossed_se_df(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean of d (seeds × items, the last two axes), its standard error over seeds *and* items,
  and Satterthwaite's dof: the balanced two-way crossed random-effects model.

  d[s, i] = μ + a_s + b_i + e_si, seeds s = 1..S and test items i = 1..I random and crossed
  (every seed is scored on every item). Var(mean) = σ_a²/S + σ_b²/I + σ_e²/(SI), estimated from
  the ANOVA mean squares (MS_seed, MS_item, MS_resid) as (MS_seed + max(MS_item − MS_resid,
  0))/(SI): the variance of the seed means (what the paired t over seeds reads) plus the part of
  the items' spread that every seed shares, which more seeds cannot average away. Satterthwaite's
  dof of that sum; with no shared item part, S − 1 and the paired t over per-seed means exactly.

  Why this and not a two-way bootstrap: it is unbiased for the variance in the balanced design
  the studies have (the crossed bootstrap double-counts the residual: McCullagh 2000), it needs
  no resampling of 20 × 20,000 arrays, and it feeds the same t interval, TOST and power as every
  other verdict. tests/test_stats.py checks its false "supported" rate by simulation.

  Returns:
    ``(mean, se, df)`` over the last two axes.

  References:
    Clark (1973), The language-as-fixed-effect fallacy; Satterthwaite (1946); McCullagh (2000),
    Resampling and exchangeable arrays.
  """
  s, i = d.shape[-2], d.shape[-1]
  mean = d.mean(axis=(-2, -1))
  seed_means, item_means = d.mean(axis=-1), d.mean(axis=-2)
  ms_seed = i * ((seed_means - mean[..., None]) ** 2).sum(axis=-1) / (s - 1)
  ms_item = s * ((item_means - mean[..., None]) ** 2).sum(axis=-1) / (i - 1)
  resid = d - seed_means[..., None] - item_means[..., None, :] + mean[..., None, None]
  ms_resid = (resid**2).sum(axis=(-2, -1)) / ((s - 1) * (i - 1))
  shared = np.maximum(ms_item - ms_resid, 0.0)
  var = (ms_seed + shared) / (s * i)
  with np.errstate(invalid="ignore", divide="ignore"):
    terms = ms_seed**2 / (s - 1) + np.where(
      shared > 0, ms_item**2 / (i - 1) + ms_resid**2 / ((s - 1) * (i - 1)), 0.0
    )
    df = np.where(shared > 0, (ms_seed + shared) ** 2 / terms, s - 1)
  df = np.where(np.isfinite(df), df, s - 1)
  return mean, np.sqrt(var), df


def interval(mean, se, df, alpha: float):
  """The two-sided (1−2α) t interval mean ± t_{1−α, df}·se; an se of 0 gives the point."""
  q = scipy.stats.t.ppf(1.0 - alpha, df)
  half = np.where(np.asarray(se) > 0, q * se, 0.0)
  return mean - half, mean + half


def p_above(diff, se, df) -> np.ndarray:
  """p of the one-sided t test of H0: true ≤ bound, where diff = estimate − bound."""
  diff, se = np.asarray(diff, np.float64), np.asarray(se, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    p = scipy.stats.t.sf(diff / se, df)
  # No spread: the estimate is the truth; exactly on the bound is no evidence either way.
  return np.where(se > 0, p, np.where(diff > 0, 0.0, 1.0))


def p_inside(mean, se, df, bounds: tuple[float, float]) -> np.ndarray:
  """p of the claim "L < effect < H": the larger of the two one-sided tests (TOST)."""
  low, high = bounds
  p_low = p_above(mean - low, se, df) if math.isfinite(low) else 0.0
  p_high = p_above(high - mean, se, df) if math.isfinite(high) else 0.0
  return np.maximum(p_low, p_high)


def verdict_codes(lo, hi, bounds: tuple[float, float]) -> np.ndarray:
  """+1 supported (CI strictly inside (L, H)), −1 not supported (CI clear of [L, H]), else 0."""
  low, high = bounds
  lo, hi = np.asarray(lo), np.asarray(hi)
  inside = (lo > low) & (hi < high)
  outside = (lo > high) | (hi < low)
  return np.where(inside, 1, np.where(outside, -1, 0))


# ----------------------------------------------------------------------------------------------
# Samples: what a decision reads from the data.


@dataclasses.dataclass(frozen=True)
class Design:
  """How the standard error and the t dof of a design grow with n (for power and n_needed).

  ``se(n)² = sd²·k/n + floor²``: the part that more seeds average away and, for seeds × items,
  the items' shared part (`floor`), which they do not.
  """

  sd: float  # paired: sd of the differences; unpaired: per-arm sd; ols: se · √n
  kind: str = "paired"  # "paired" (and one-sample, crossed) | "unpaired" (n per arm) | "ols"
  floor: float = 0.0  # crossed: the standard error the test items alone leave

  @property
  def n_min(self) -> int:
    return 3 if self.kind == "ols" else 2

  def se(self, n: int) -> float:
    k = 2.0 if self.kind == "unpaired" else 1.0
    return math.sqrt(self.sd**2 * k / n + self.floor**2)

  def df(self, n: int) -> int:
    return {"paired": n - 1, "unpaired": 2 * n - 2, "ols": n - 2}[self.kind]


@dataclasses.dataclass(frozen=True)
class Sample:
  """The effect's estimate, se and dof, and the design (None: too few values for a spread)."""

  effect: float
  se: float
  df: float
  n: int
  dropped: int
  design: Design | None
  how: str  # "n=5 paired", "n=4+5 unpaired (Welch)", "20 seeds × 20000 items (crossed)", ...
  unit: str  # "pairs", "per arm", "groups", "points", "seeds"
  short: str = ""  # "" or why there is no interval

  @classmethod
  def too_few(cls, effect, n, dropped, how, unit, why) -> Sample:
    return cls(float(effect), math.nan, math.nan, int(n), dropped, None, how, unit, why)


def paired_differences(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, int]:
  """Per-seed differences ``a[i] − b[i]`` over the pairs where both values are finite.

  Args:
    a: one value per seed (None or a non-finite value marks a diverged run).
    b: one value per seed, seed ``i`` at index ``i`` as in `a`.

  Returns:
    ``(d, dropped)``: the finite differences in seed order and how many pairs were dropped.

  Raises:
    ValueError: when the lengths differ (a pair is one seed of each variant).

  Example:
    >>> from wd_jax.study import stats
    >>> d, dropped = stats.paired_differences([1.0, 2.0, None, 4.0], [0.5, 1.0, 1.0, float("nan")])
    >>> d.tolist(), dropped
    ([0.5, 1.0], 2)

  References:
    Student (1908), The probable error of a mean (the paired t test these differences feed).
  """
  a_, b_ = as_array("a", a), as_array("b", b)
  if a_.shape != b_.shape:
    raise ValueError(
      f"a and b must have the same length when paired (one value per seed): "
      f"len(a)={a_.size}, len(b)={b_.size}."
    )
  ok = np.isfinite(a_) & np.isfinite(b_)
  return a_[ok] - b_[ok], int((~ok).sum())


def _paired(d: np.ndarray, dropped: int, how: str, unit: str) -> Sample:
  if d.size < 2:
    why = f"at least 2 {unit} are needed for an interval"
    return Sample.too_few(d[0] if d.size else math.nan, d.size, dropped, how, unit, why)
  mean, se, df = mean_se_df(d)
  design = Design(float(se) * math.sqrt(d.size), "paired")
  return Sample(float(mean), float(se), df, int(d.size), dropped, design, how, unit)


def _welch_sample(a, b) -> Sample:
  a_all, b_all = as_array("a", a), as_array("b", b)
  a_, b_ = a_all[np.isfinite(a_all)], b_all[np.isfinite(b_all)]
  dropped = (a_all.size - a_.size) + (b_all.size - b_.size)
  how = f"n={a_.size}+{b_.size} unpaired (Welch)"
  n = min(a_.size, b_.size)
  if n < 2:
    effect = a_.mean() - b_.mean() if n == 1 else math.nan
    why = "each arm needs at least 2 finite values for an interval"
    return Sample.too_few(effect, n, dropped, how, "per arm", why)
  effect, se, df = (float(v) for v in welch(a_, b_))
  # Power and planning model Welch's test by Student's pooled t with equal arms.
  pooled = math.sqrt(
    ((a_.size - 1) * a_.var(ddof=1) + (b_.size - 1) * b_.var(ddof=1)) / (a_.size + b_.size - 2)
  )
  return Sample(effect, se, df, n, dropped, Design(pooled, "unpaired"), how, "per arm")


def crossed_sample(a, b) -> Sample:
  """The effect of a − b (b None: of a) over seeds × test items (`crossed_se_df`); a seed with
  a non-finite value (a diverged run) is dropped whole."""
  d = as_array("a", a, (2,))
  if b is not None:
    b_ = as_array("b", b, (2,))
    if b_.shape != d.shape:
      raise ValueError(f"a and b must pair seeds and items: shapes {d.shape} and {b_.shape}.")
    d = d - b_
  ok = np.all(np.isfinite(d), axis=1)
  d, dropped = d[ok], int((~ok).sum())
  s, i = d.shape
  how = f"{s} seeds × {i} items (crossed)"
  if s < 2 or i < 2:
    why = "at least 2 seeds and 2 items are needed for an interval"
    return Sample.too_few(d.mean() if d.size else math.nan, s, dropped, how, "seeds", why)
  mean, se, df = (float(v) for v in crossed_se_df(d))
  seed_sd = float(np.std(d.mean(axis=1), ddof=1))
  floor = math.sqrt(max(se**2 - seed_sd**2 / s, 0.0))
  return Sample(mean, se, df, s, dropped, Design(seed_sd, "paired", floor), how, "seeds")


def two_arm_sample(a, b, paired: bool) -> Sample:
  """The effect of a (b=None: against 0) or of a − b: paired by seed, Welch, or (2-D values)
  over seeds × test items."""
  if np.ndim(a) == 2:
    if not paired:
      raise ValueError("seeds × items values are paired by seed and item: paired must be True.")
    return crossed_sample(a, b)
  if b is None:
    if not paired:
      raise ValueError("paired=False needs b (two independent arms); got b=None.")
    xs = as_array("a", a)
    ok = np.isfinite(xs)
    return _paired(xs[ok], int((~ok).sum()), f"n={int(ok.sum())} one-sample", "values")
  if not paired:
    return _welch_sample(a, b)
  d, dropped = paired_differences(a, b)
  return _paired(d, dropped, f"n={d.size} paired", "pairs")


def _grouped_slopes(xs, ys, labels) -> tuple[np.ndarray, int]:
  """One OLS slope (`scipy.stats.linregress`) per group; a group with a non-finite value is
  dropped whole (its x design would differ from the others')."""
  if len(labels) != xs.size:
    raise ValueError(
      f"groups must have one label per point: len(groups)={len(labels)}, len(x)={xs.size}."
    )
  slopes, dropped = [], 0
  for g in dict.fromkeys(labels):  # first-appearance order
    idx = np.asarray([i for i, lab in enumerate(labels) if lab == g])
    gx, gy = xs[idx], ys[idx]
    if not (np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))):
      dropped += 1
      continue
    if np.ptp(gx) == 0:
      raise ValueError(f"group {g!r} needs at least 2 distinct x values, got {gx.tolist()}.")
    slopes.append(_quiet(scipy.stats.linregress, gx, gy).slope)
  return np.asarray(slopes, np.float64), dropped


def slope_sample(x, y, groups) -> Sample:
  """The OLS slope of y on x (n − 2 dof), or the mean of per-group slopes (groups − 1 dof)."""
  xs, ys = as_array("x", x), as_array("y", y)
  if xs.shape != ys.shape:
    raise ValueError(f"x and y must have the same length: len(x)={xs.size}, len(y)={ys.size}.")
  finite_x = xs[np.isfinite(xs)]
  if finite_x.size and np.ptp(finite_x) == 0:
    raise ValueError(f"x must take at least 2 distinct values for a slope, got {xs.tolist()}.")
  if groups is not None:
    slopes, dropped = _grouped_slopes(xs, ys, list(groups))
    return _paired(slopes, dropped, f"{slopes.size} groups (per-group OLS)", "groups")
  ok = np.isfinite(xs) & np.isfinite(ys)
  xs, ys, dropped = xs[ok], ys[ok], int((~ok).sum())
  how = f"n={xs.size} points (OLS)"
  if xs.size < 3 or np.ptp(xs) == 0:
    effect = scipy.stats.linregress(xs, ys).slope if xs.size == 2 and np.ptp(xs) > 0 else math.nan
    why = "at least 3 points at 2 distinct x are needed for an interval"
    return Sample.too_few(effect, xs.size, dropped, how, "points", why)
  fit = _quiet(scipy.stats.linregress, xs, ys)
  design = Design(fit.stderr * math.sqrt(xs.size), "ols")
  return Sample(fit.slope, fit.stderr, xs.size - 2, xs.size, dropped, design, how, "points")


# ----------------------------------------------------------------------------------------------
# Public summaries (re-exported by `wd_jax.study.stats`).


def seeds_items_interval(a: Any, b: Any = None, alpha: float = 0.05) -> tuple[float, float, float]:
  """The mean of a (seeds, items) array, or of a − b paired by seed and item, and its (1−2α)
  interval over seeds *and* items (`crossed_se_df`); seeds with a non-finite value dropped.

  Args:
    a: (seeds, items) values, e.g. each test item's accuracy in each seed's run.
    b: optional (seeds, items) values of another arm, the same seeds and items.
    alpha: one-sided level in (0, 0.5).

  Returns:
    ``(mean, lo, hi)``; infinite bounds with fewer than 2 seeds or items.

  Example:
    >>> import numpy as np
    >>> from wd_jax.study import stats
    >>> a = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    >>> [round(v, 3) for v in stats.seeds_items_interval(a)]  # 3 seeds × 4 items
    [0.667, 0.423, 0.91]

  References:
    Clark (1973), The language-as-fixed-effect fallacy; Satterthwaite (1946).
  """
  alpha = check_alpha(alpha)
  sample = crossed_sample(a, b)
  if sample.design is None:
    return sample.effect, -math.inf, math.inf
  lo, hi = interval(sample.effect, sample.se, sample.df, alpha)
  return sample.effect, float(lo), float(hi)


def per_item_slopes(x: Any, y: Any) -> np.ndarray:
  """Each (seed, item)'s OLS slope of y on x across K conditions (e.g. strengths): x is
  (seeds, K), one regressor per seed and condition; y is (seeds, K, items). The mean of the
  slopes over items is the slope of the item means, so `crossed_sample` of the result is the
  slope over seeds and items; a seed whose x does not vary gets NaN.

  Args:
    x: (seeds, K) regressor.
    y: (seeds, K, items) responses.

  Returns:
    (seeds, items) slopes.

  Example:
    >>> import numpy as np
    >>> from wd_jax.study import stats
    >>> x = np.array([[0.0, 1.0, 2.0]])
    >>> y = np.array([[[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]])  # one seed, 3 conditions, 2 items
    >>> stats.per_item_slopes(x, y).tolist()
    [[2.0, 0.0]]

  References:
    Student (1908); the OLS slope as in `scipy.stats.linregress`.
  """
  x, y = as_array("x", x, (2,)), np.asarray(y, np.float64)
  if y.shape[:2] != x.shape or y.ndim != 3:
    raise ValueError(f"y must be (seeds, K, items) with x (seeds, K) = {x.shape}, got {y.shape}.")
  xc = x - x.mean(axis=1, keepdims=True)
  sxx = (xc**2).sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    slopes = np.einsum("sk,ski->si", xc, y - y.mean(axis=1, keepdims=True)) / sxx[:, None]
  return np.where((sxx > 0)[:, None], slopes, np.nan)


def t_interval(x: Sequence[float], alpha: float) -> tuple[float, float, float]:
  """The mean of `x` and its two-sided (1−2α) Student-t confidence interval.

  ``mean ± t_{1−α, n−1} · s / √n`` with s the sample standard deviation (ddof 1). Each bound is
  a one-sided level-α test; the interval covers the true mean with probability 1 − 2α under
  normal noise.

  Args:
    x: finite values (drop diverged runs first, e.g. with `paired_differences`).
    alpha: one-sided level in (0, 0.5); the interval is 1 − 2α (90% at 0.05).

  Returns:
    ``(mean, lo, hi)``; a single value gives infinite bounds (no spread estimate).

  Example:
    >>> from wd_jax.study import stats
    >>> [round(v, 4) for v in stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.05)]
    [3.0, 1.4926, 4.5074]

  References:
    Student (1908), The probable error of a mean.
  """
  alpha = check_alpha(alpha)
  xs = finite_values("x", x)
  if xs.size == 1:
    return float(xs[0]), -math.inf, math.inf
  mean, se, df = mean_se_df(xs)
  lo, hi = interval(mean, se, df, alpha)
  return float(mean), float(lo), float(hi)


def bootstrap_interval(
  x: Sequence[float], alpha: float, *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
  """The mean of `x` and its percentile-bootstrap (1−2α) interval (resampling the seeds).

  `scipy.stats.bootstrap` with ``method="percentile"``: the α and 1−α quantiles of the means
  of `resamples` resamples drawn with replacement. It assumes no noise shape, but at a handful
  of seeds it is too narrow (at n = 3 it covers the mean in well under 1 − 2α of studies; see
  the tests), which is why verdicts use `t_interval`. Use it for bands over many seeds or for
  strongly skewed metrics.

  Args:
    x: finite values.
    alpha: one-sided level in (0, 0.5).
    resamples: number of bootstrap resamples.
    seed: seed of the resampling (the result is deterministic given it).

  Returns:
    ``(mean, lo, hi)``; a single value gives infinite bounds.

  Example:
    >>> from wd_jax.study import stats
    >>> [round(v, 3) for v in stats.bootstrap_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.05)]
    [3.0, 2.0, 4.0]

  References:
    Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13.
  """
  alpha = check_alpha(alpha)
  xs = finite_values("x", x)
  if not isinstance(resamples, int) or resamples < 100:
    raise ValueError(f"resamples must be an int ≥ 100, got {resamples!r}.")
  if xs.size == 1:
    return float(xs[0]), -math.inf, math.inf
  ci = scipy.stats.bootstrap(
    (xs,),
    np.mean,
    confidence_level=1.0 - 2.0 * alpha,
    n_resamples=resamples,
    method="percentile",
    rng=np.random.default_rng(seed),
  ).confidence_interval
  return float(xs.mean()), float(ci.low), float(ci.high)


def holm(p_values: Sequence[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
  """Holm's step-down correction: adjusted p-values and which hypotheses are rejected.

  Sort the k p-values ascending; reject p_(1), p_(2), ... while p_(i) ≤ α / (k − i + 1) and stop
  at the first that fails. Adjusted: p̃_(i) = max_{j ≤ i} min(1, (k − j + 1) p_(j)); rejected iff
  p̃ ≤ α. Controls the family-wise error rate at α. A nan p-value counts as 1. (scipy has
  Benjamini–Hochberg, `scipy.stats.false_discovery_control`, which controls the false discovery
  rate, not the family-wise error rate; hence these few lines.)

  Args:
    p_values: one p-value per hypothesis.
    alpha: the family-wise level, in (0, 1).

  Returns:
    ``(adjusted, rejected)`` in the input order.

  Example:
    >>> from wd_jax.study import stats
    >>> adjusted, rejected = stats.holm([0.01, 0.04, 0.03], 0.05)
    >>> adjusted.round(3).tolist(), rejected.tolist()
    ([0.03, 0.06, 0.06], [True, False, False])

  References:
    Holm (1979), A simple sequentially rejective multiple test procedure.
  """
  if not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
    raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")
  p = np.nan_to_num(np.asarray(p_values, np.float64), nan=1.0)
  k = p.size
  order = np.argsort(p, kind="stable")
  stepped = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
  adjusted = np.empty(k)
  adjusted[order] = stepped
  return adjusted, adjusted <= alpha


# Which keys of a declared claim and of its values belong to each comparison.
_CLAIM_KEYS = {
  "greater": {"margin", "paired", "power_at"},
  "less": {"margin", "paired", "power_at"},
  "equivalent": {"margin", "paired", "power_at"},
  "slope_within": {"low", "high", "power_at"},
}
_VALUE_KEYS = {"greater": {"a", "b"}, "less": {"a", "b"}, "equivalent": {"a", "b"}}
_VALUE_KEYS["slope_within"] = {"x", "y", "groups"}
_STATS_KEYS = {"comparison", "alpha", "names"}.union(*_CLAIM_KEYS.values())


def check_claim_keys(claim: Mapping[str, Any], values: Mapping[str, Any]) -> str:
  """`stats.decide`'s key check: a known comparison, and no claim or values key of another
  comparison; returns the comparison."""
  if "comparison" not in claim:
    raise ValueError(f"claim needs the key 'comparison' (one of {COMPARISONS}); got {dict(claim)}.")
  comparison = claim["comparison"]
  if comparison not in COMPARISONS:
    raise ValueError(f"claim['comparison'] must be one of {COMPARISONS}, got {comparison!r}.")
  for key in claim:
    if key in _STATS_KEYS and key not in _CLAIM_KEYS[comparison] | {"comparison", "alpha", "names"}:
      raise ValueError(f"claim key {key!r} does not apply to a {comparison!r} claim.")
  for key in values:
    if key not in _VALUE_KEYS[comparison]:
      raise ValueError(
        f"values key {key!r} does not apply to a {comparison!r} claim "
        f"(expected {sorted(_VALUE_KEYS[comparison])})."
      )
  return comparison
