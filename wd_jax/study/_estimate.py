"""From per-seed values to an effect, its interval and p-values (behind `wd_jax.study.stats`).

The (1−2α) Student-t and Welch intervals, the percentile bootstrap, the one-sided p-values and
Holm's correction, plus the private `_Sample` a verdict is read from. The summaries (`_mean_se_df`,
`_welch`, `_ols`) work over the last axis of arrays of any shape, so the simulations in
tests/test_stats.py run the very code the verdicts use, vectorised over trials. The public
functions are re-exported by `wd_jax.study.stats`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats

COMPARISONS = ("greater", "less", "equivalent", "slope_within")


def _check_alpha(alpha: float) -> float:
  if not isinstance(alpha, (int, float)) or not 0.0 < alpha < 0.5:
    raise ValueError(f"alpha must be a number in (0, 0.5), got {alpha!r}.")
  return float(alpha)


def _check_margin(name: str, margin: float, *, positive: bool) -> float:
  if not isinstance(margin, (int, float)) or not math.isfinite(margin):
    raise ValueError(f"{name} must be a finite number, got {margin!r}.")
  if positive and margin <= 0:
    raise ValueError(f"{name} must be > 0 for an equivalence claim, got {margin!r}.")
  if margin < 0:
    raise ValueError(f"{name} must be ≥ 0, got {margin!r}.")
  return float(margin)


def _check_range(low: float | None, high: float | None) -> tuple[float, float]:
  for name, v in (("low", low), ("high", high)):
    if not isinstance(v, (int, float)) or not math.isfinite(v):
      raise ValueError(f"{name} must be a finite number, got {v!r}.")
  if not low < high:
    raise ValueError(f"low must be < high, got low={low!r}, high={high!r}.")
  return float(low), float(high)


def _vector(name: str, x: Any) -> np.ndarray:
  try:
    arr = np.asarray(x, dtype=np.float64)  # None (a diverged run) becomes nan
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a sequence of numbers, got {x!r}.") from e
  if arr.ndim != 1:
    raise ValueError(f"{name} must be one-dimensional (one value per seed), got shape {arr.shape}.")
  return arr


def _finite_only(name: str, x: Any) -> np.ndarray:
  arr = _vector(name, x)
  if arr.size == 0:
    raise ValueError(f"{name} is empty.")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} has non-finite values ({arr.tolist()}); drop them first.")
  return arr


@functools.lru_cache(maxsize=4096)
def _t_quantile(alpha: float, df: float) -> float:
  """t_{1−α, df}: the one-sided critical value, i.e. the half-width factor of the (1−2α) CI."""
  return float(scipy.stats.t.ppf(1.0 - alpha, df))


def _mean_se_df(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
  """Mean, standard error and t degrees of freedom over the last axis (n ≥ 2 finite values)."""
  n = d.shape[-1]
  mean = d.mean(axis=-1)
  sd = d.std(axis=-1, ddof=1)
  # Identical values: the mean is the value itself and the spread exactly 0 (no rounding noise).
  same = np.ptp(d, axis=-1) == 0
  mean = np.where(same, d[..., 0], mean)
  sd = np.where(same, 0.0, sd)
  return mean, sd / math.sqrt(n), n - 1


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Welch's difference of means, its standard error and Welch–Satterthwaite degrees of freedom."""
  na, nb = a.shape[-1], b.shape[-1]
  ma, va = _mean_se_df(a)[0], a.var(axis=-1, ddof=1)
  mb, vb = _mean_se_df(b)[0], b.var(axis=-1, ddof=1)
  va = np.where(np.ptp(a, axis=-1) == 0, 0.0, va)
  vb = np.where(np.ptp(b, axis=-1) == 0, 0.0, vb)
  ea, eb = va / na, vb / nb
  se2 = ea + eb
  with np.errstate(invalid="ignore", divide="ignore"):
    df = se2**2 / (ea**2 / (na - 1) + eb**2 / (nb - 1))
  # Both arms without spread: the df is irrelevant (the CI is a point); keep it finite.
  df = np.where(se2 > 0, df, na + nb - 2)
  return ma - mb, np.sqrt(se2), df


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """OLS slope of y on x over the last axis, its standard error (n − 2 dof), and Sxx."""
  n = x.shape[-1]
  xc = x - x.mean(axis=-1, keepdims=True)
  yc = y - y.mean(axis=-1, keepdims=True)
  sxx = (xc * xc).sum(axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    slope = (xc * yc).sum(axis=-1) / sxx
    resid = yc - slope[..., None] * xc
    se = (
      np.sqrt((resid * resid).sum(axis=-1) / (n - 2) / sxx) if n > 2 else np.full_like(sxx, np.inf)
    )
  return slope, se, sxx


def _interval(mean, se, df, alpha: float):
  """The two-sided (1−2α) t interval; an se of 0 gives the point itself."""
  q = scipy.stats.t.ppf(1.0 - alpha, df) if np.ndim(df) else _t_quantile(alpha, float(df))
  half = np.where(se > 0, q * se, 0.0)
  return mean - half, mean + half


def _bounds(comparison: str, margin: float, low: float, high: float) -> tuple[float, float]:
  """The claim as an interval (L, H) the effect must lie strictly inside."""
  return {
    "greater": (margin, math.inf),
    "less": (-math.inf, -margin),
    "equivalent": (-margin, margin),
    "slope_within": (low, high),
  }[comparison]


def _p_above(diff, se, df) -> np.ndarray:
  """p of the one-sided t test of H0: true ≤ bound, where diff = estimate − bound."""
  diff, se = np.asarray(diff, np.float64), np.asarray(se, np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    p = scipy.stats.t.sf(diff / se, df)
  # No spread: the estimate is the truth; exactly on the bound is no evidence either way.
  return np.where(se > 0, p, np.where(diff > 0, 0.0, 1.0))


def _p_inside(mean, se, df, bounds: tuple[float, float]) -> np.ndarray:
  """p of the claim "L < effect < H": the larger of the two one-sided tests (TOST)."""
  low, high = bounds
  p_low = _p_above(mean - low, se, df) if math.isfinite(low) else 0.0
  p_high = _p_above(high - mean, se, df) if math.isfinite(high) else 0.0
  return np.maximum(p_low, p_high)


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
  a_, b_ = _vector("a", a), _vector("b", b)
  if a_.shape != b_.shape:
    raise ValueError(
      f"a and b must have the same length when paired (one value per seed): "
      f"len(a)={a_.size}, len(b)={b_.size}."
    )
  ok = np.isfinite(a_) & np.isfinite(b_)
  return a_[ok] - b_[ok], int((~ok).sum())


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
  alpha = _check_alpha(alpha)
  xs = _finite_only("x", x)
  if xs.size == 1:
    return float(xs[0]), -math.inf, math.inf
  mean, se, df = _mean_se_df(xs)
  lo, hi = _interval(mean, se, df, alpha)
  return float(mean), float(lo), float(hi)


def bootstrap_interval(
  x: Sequence[float], alpha: float, *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
  """The mean of `x` and its percentile-bootstrap (1−2α) interval (resampling the seeds).

  The α and 1−α quantiles of the means of `resamples` resamples drawn with replacement. It
  assumes no noise shape, but at a handful of seeds it is too narrow (at n = 3 it covers the
  mean in well under 1 − 2α of studies; see the tests), which is why verdicts use `t_interval`.
  Use it for bands over many seeds or for strongly skewed metrics.

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
  alpha = _check_alpha(alpha)
  xs = _finite_only("x", x)
  if not isinstance(resamples, int) or resamples < 100:
    raise ValueError(f"resamples must be an int ≥ 100, got {resamples!r}.")
  if xs.size == 1:
    return float(xs[0]), -math.inf, math.inf
  rng = np.random.default_rng(seed)
  means = xs[rng.integers(0, xs.size, size=(resamples, xs.size))].mean(axis=1)
  lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
  return float(xs.mean()), float(lo), float(hi)


def holm(p_values: Sequence[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
  """Holm's step-down correction: adjusted p-values and which hypotheses are rejected.

  Sort the k p-values ascending; reject p_(1), p_(2), ... while p_(i) ≤ α / (k − i + 1) and stop
  at the first that fails. Adjusted: p̃_(i) = max_{j ≤ i} min(1, (k − j + 1) p_(j)); rejected iff
  p̃ ≤ α. Controls the family-wise error rate at α. A nan p-value counts as 1.

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


@dataclasses.dataclass(frozen=True)
class _Design:
  """How the standard error and the t dof of a design grow with n (for power and n_needed)."""

  sd: float  # paired: sd of the differences; unpaired: per-arm sd; ols: se · √n
  kind: str = "paired"  # "paired" (and one-sample) | "unpaired" (n per arm) | "ols" (n points)

  @property
  def n_min(self) -> int:
    return 3 if self.kind == "ols" else 2

  def se(self, n: int) -> float:
    return self.sd * math.sqrt(2.0 / n) if self.kind == "unpaired" else self.sd / math.sqrt(n)

  def df(self, n: int) -> int:
    return {"paired": n - 1, "unpaired": 2 * n - 2, "ols": n - 2}[self.kind]


@dataclasses.dataclass(frozen=True)
class _Sample:
  """What a decision needs from the data: the effect's estimate, se and dof, and the design."""

  effect: float
  se: float
  df: float
  n: int
  dropped: int
  design: _Design | None  # None: too few values for a spread estimate
  how: str  # "n=5 paired", "n=4+5 unpaired (Welch)", ...
  unit: str  # "pairs", "per arm", "groups", "points"
  short: str  # "" or why there is no interval


def _two_arm_sample(a, b, paired: bool) -> _Sample:
  """The effect of a (b=None: against 0) or of a − b, paired by seed or Welch, as a `_Sample`."""
  if b is None:
    if not paired:
      raise ValueError("paired=False needs b (two independent arms); got b=None.")
    xs = _vector("a", a)
    ok = np.isfinite(xs)
    d, dropped, how, unit = xs[ok], int((~ok).sum()), "n={} one-sample", "values"
  elif paired:
    d, dropped = paired_differences(a, b)
    how, unit = "n={} paired", "pairs"
  else:
    a_, b_ = _vector("a", a), _vector("b", b)
    a_, b_ = a_[np.isfinite(a_)], b_[np.isfinite(b_)]
    dropped = (len(_vector("a", a)) - a_.size) + (len(_vector("b", b)) - b_.size)
    how = f"n={a_.size}+{b_.size} unpaired (Welch)"
    n = min(a_.size, b_.size)
    if n < 2:
      effect = float(a_.mean() - b_.mean()) if n == 1 else math.nan
      why = "each arm needs at least 2 finite values for an interval"
      return _Sample(effect, math.nan, math.nan, n, dropped, None, how, "per arm", why)
    effect, se, df = (float(v) for v in _welch(a_, b_))
    # Power and planning model Welch's test by Student's pooled t with equal arms.
    pooled = math.sqrt(
      ((a_.size - 1) * a_.var(ddof=1) + (b_.size - 1) * b_.var(ddof=1)) / (a_.size + b_.size - 2)
    )
    design = _Design(pooled, "unpaired")
    return _Sample(effect, se, df, n, dropped, design, how, "per arm", "")
  how = how.format(d.size)
  if d.size < 2:
    effect = float(d[0]) if d.size == 1 else math.nan
    why = f"at least 2 {unit} are needed for an interval"
    return _Sample(effect, math.nan, math.nan, int(d.size), dropped, None, how, unit, why)
  mean, se, df = _mean_se_df(d)
  design = _Design(float(se) * math.sqrt(d.size), "paired")
  return _Sample(float(mean), float(se), df, int(d.size), dropped, design, how, unit, "")


def _slope_sample(x, y, groups) -> _Sample:
  """The OLS slope of y on x (n − 2 dof), or the mean of per-group slopes (groups − 1 dof)."""
  xs, ys = _vector("x", x), _vector("y", y)
  if xs.shape != ys.shape:
    raise ValueError(f"x and y must have the same length: len(x)={xs.size}, len(y)={ys.size}.")
  finite_x = xs[np.isfinite(xs)]
  if finite_x.size and np.ptp(finite_x) == 0:
    raise ValueError(f"x must take at least 2 distinct values for a slope, got {xs.tolist()}.")
  if groups is None:
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys, dropped = xs[ok], ys[ok], int((~ok).sum())
    how = f"n={xs.size} points (OLS)"
    if xs.size < 3 or np.ptp(xs) == 0:
      effect = float(_ols(xs, ys)[0]) if xs.size == 2 and np.ptp(xs) > 0 else math.nan
      why = "at least 3 points at 2 distinct x are needed for an interval"
      return _Sample(effect, math.nan, math.nan, int(xs.size), dropped, None, how, "points", why)
    slope, se, _ = _ols(xs, ys)
    design = _Design(float(se) * math.sqrt(xs.size), "ols")
    return _Sample(
      float(slope), float(se), xs.size - 2, xs.size, dropped, design, how, "points", ""
    )
  labels = list(groups)
  if len(labels) != xs.size:
    raise ValueError(
      f"groups must have one label per point: len(groups)={len(labels)}, len(x)={xs.size}."
    )
  slopes, dropped = [], 0
  for g in dict.fromkeys(labels):  # first-appearance order
    idx = np.asarray([i for i, lab in enumerate(labels) if lab == g])
    gx, gy = xs[idx], ys[idx]
    if not (np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))):
      dropped += 1  # the whole group: its x design would differ from the others'
      continue
    if np.ptp(gx) == 0:
      raise ValueError(f"group {g!r} needs at least 2 distinct x values, got {gx.tolist()}.")
    slopes.append(float(_ols(gx, gy)[0]))
  s = np.asarray(slopes)
  how = f"{s.size} groups (per-group OLS)"
  if s.size < 2:
    effect = float(s[0]) if s.size == 1 else math.nan
    why = "at least 2 groups are needed for an interval"
    return _Sample(effect, math.nan, math.nan, int(s.size), dropped, None, how, "groups", why)
  mean, se, df = _mean_se_df(s)
  design = _Design(float(se) * math.sqrt(s.size), "paired")
  return _Sample(float(mean), float(se), df, int(s.size), dropped, design, how, "groups", "")
