"""Power of the verdicts' tests and the n that decides a claim.

One-sided tests: the noncentral t (`scipy.stats.nct`). Intervals inside (L, H) (TOST, slope
ranges): the normal probability that the estimate lands inside (L + q·ŝe, H − q·ŝe), integrated
exactly over the sampling distribution of the estimated se (no normal approximation). A design
over seeds × test items has a floor: the standard error the items alone leave, which no number
of seeds removes (`wd_jax.study._estimate.Design`). `power_one_sided`, `power_tost` and
`n_needed` are re-exported by `wd_jax.study.stats`; `power_inside`, `decisive_power` and
`n_to_decide` are what a verdict's detail reads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import scipy.special
import scipy.stats

from wd_jax.study._estimate import (
  COMPARISONS,
  Design,
  check_alpha,
  check_margin,
  check_range,
  claim_bounds,
)

TARGET_POWER = 0.8  # n_needed: the power an undecided claim should reach
CAP = 1000  # n_needed: the largest n searched (beyond it: undecidable at this effect)
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(128)


@functools.lru_cache(maxsize=4096)
def _quantile(alpha: float, df: float) -> float:
  return float(scipy.stats.t.ppf(1.0 - alpha, df))


def _t_quantile(alpha: float, df: float) -> float:
  """t_{1−α, df}: the half-width factor of the (1−2α) CI (cached: n searches repeat it)."""
  return _quantile(float(alpha), float(df))


def power_above(shift: float, se: float, df: float, alpha: float) -> float:
  """P(lo > bound) when the truth lies `shift` above the bound: the noncentral t tail.

  Args:
    shift: true effect minus the bound.
    se: the estimate's standard error.
    df: its t degrees of freedom.
    alpha: the one-sided level.

  Returns:
    The probability.
  """
  if se == 0:
    return 1.0 if shift > 0 else 0.0
  return float(scipy.stats.nct.sf(_t_quantile(alpha, df), df, shift / se))


def power_inside(low: float, high: float, true: float, se: float, df: float, alpha: float) -> float:
  """P(L < lo and hi < H) for a (1−2α) t interval whose estimate is N(true, se²).

  Given the estimated se ŝ = se·w (w² df ~ χ²_df), the interval is inside iff the estimate lies
  in (L + q ŝ, H − q ŝ), a normal probability; integrate it over the distribution of w. Agrees
  with adaptive quadrature to < 1e-5 for df from 1 to 2000 (tests/test_stats.py).

  Args:
    low: L (may be -inf).
    high: H (may be inf).
    true: the true effect.
    se: the estimate's standard error.
    df: its t degrees of freedom.
    alpha: the level of each one-sided test.

  Returns:
    The probability.
  """
  if not math.isfinite(low) and not math.isfinite(high):
    return 1.0
  if not math.isfinite(low):
    return power_above(high - true, se, df, alpha)
  if not math.isfinite(high):
    return power_above(true - low, se, df, alpha)
  if se == 0:
    return 1.0 if low < true < high else 0.0
  q = _t_quantile(alpha, df)
  w_max = (high - low) / (2.0 * q * se)  # beyond it the interval is wider than (L, H)
  # Integrate over u = P(W ≤ w) (Gauss–Legendre): smooth in u, and no narrow χ peak to miss.
  u_max = float(scipy.special.gammainc(df / 2, w_max**2 * df / 2))
  u = (_GL_NODES + 1.0) / 2.0 * u_max
  w = np.sqrt(2.0 * scipy.special.gammaincinv(df / 2, u) / df)
  inside = scipy.special.ndtr((high - q * se * w - true) / se) - scipy.special.ndtr(
    (low + q * se * w - true) / se
  )
  value = float(np.sum(_GL_WEIGHTS * np.maximum(inside, 0.0)) * u_max / 2.0)
  return min(max(value, 0.0), 1.0)


def _check_design(sd: float, n: int) -> None:
  if not isinstance(sd, (int, float)) or not (math.isfinite(sd) and sd >= 0):
    raise ValueError(f"sd must be a finite number ≥ 0, got {sd!r}.")
  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n must be an int ≥ 1, got {n!r}.")


def power_one_sided(
  effect: float, sd: float, n: int, alpha: float, *, paired: bool = True
) -> float:
  """Power of the one-sided level-α t test when the truth lies `effect` beyond its null bound.

  ``P(T' > t_{1−α, df})`` with T' noncentral t, noncentrality ``effect / se``: paired (or one
  sample) ``se = sd/√n, df = n − 1``; unpaired (n per arm, Student's pooled t as the model of
  Welch's) ``se = sd·√(2/n), df = 2n − 2``. For ``greater`` with margin δ pass ``μ − δ``.

  Args:
    effect: true effect minus the null bound (positive: the claim is true).
    sd: noise sd (of the paired differences, or per arm when unpaired).
    n: pairs (or per-arm n).
    alpha: one-sided level in (0, 0.5).
    paired: paired design (default) or two independent arms.

  Returns:
    The probability of a "supported" verdict; 0 for n = 1 (never decided).

  Example:
    >>> from wd_jax.study import stats
    >>> round(stats.power_one_sided(1.0, 1.0, 8, 0.05), 3)
    0.815

  References:
    Student (1908); the noncentral t, e.g. Lakens (2017) for its use in planning.
  """
  alpha = check_alpha(alpha)
  _check_design(sd, n)
  if n < 2:
    return 0.0
  design = Design(float(sd), "paired" if paired else "unpaired")
  return power_above(float(effect), design.se(n), design.df(n), alpha)


def power_tost(
  margin: float,
  sd: float,
  n: int,
  alpha: float,
  true_effect: float = 0.0,
  *,
  paired: bool = True,
) -> float:
  """Power of TOST (equivalence within ±margin at level α) when the true effect is `true_effect`.

  The probability that the (1−2α) t interval lies inside (−margin, +margin), integrated exactly
  over the sampling distribution of the sd (no normal approximation). Same se and dof as
  `power_one_sided`. At ``|true_effect| = margin`` it is at most α.

  Args:
    margin: equivalence margin δ > 0.
    sd: noise sd (of the paired differences, or per arm when unpaired).
    n: pairs (or per-arm n).
    alpha: level of each one-sided test, in (0, 0.5).
    true_effect: the true difference.
    paired: paired design (default) or two independent arms.

  Returns:
    The probability of an "equivalent: supported" verdict; 0 for n = 1.

  Example:
    >>> from wd_jax.study import stats
    >>> round(stats.power_tost(1.0, 1.0, 10, 0.05), 3)
    0.795

  References:
    Schuirmann (1987); Lakens (2017).
  """
  alpha = check_alpha(alpha)
  check_margin("margin", margin, positive=True)
  _check_design(sd, n)
  if n < 2:
    return 0.0
  design = Design(float(sd), "paired" if paired else "unpaired")
  return power_inside(-margin, margin, float(true_effect), design.se(n), design.df(n), alpha)


def decisive_power(
  effect: float, bounds: tuple[float, float], alpha: float
) -> Callable[[float, float], float] | None:
  """P(the verdict `effect` points to) as a function of (se, df); None on a bound.

  Args:
    effect: the true effect (e.g. the observed one).
    bounds: the claim as (L, H).
    alpha: the level.

  Returns:
    ``power(se, df)``: of "supported" when `effect` lies inside (L, H), else of "not supported".
  """
  low, high = bounds
  if low < effect < high:
    return lambda se, df: power_inside(low, high, effect, se, df, alpha)
  if effect > high:
    return lambda se, df: power_above(effect - high, se, df, alpha)  # lo > H: not supported
  if effect < low:
    return lambda se, df: power_above(low - effect, se, df, alpha)  # hi < L: not supported
  return None


def _smallest_n(power: Callable[[int], float], n_min: int, target: float, cap: int) -> int | None:
  """Smallest n in [n_min, cap] with power(n) ≥ target (power increases with n), else None."""
  if power(cap) < target:
    return None
  lo, hi = n_min, cap  # power(hi) ≥ target
  while lo < hi:
    mid = (lo + hi) // 2
    if power(mid) >= target:
      hi = mid
    else:
      lo = mid + 1
  return lo


def n_to_decide(
  effect: float,
  bounds: tuple[float, float],
  design: Design,
  alpha: float,
  target: float = TARGET_POWER,
  cap: int = CAP,
) -> int | None:
  """The smallest n at which `design` reaches the verdict `effect` points to with probability
  ≥ `target` (`decisive_power`), or None (on a bound, or beyond `cap`; over seeds × items also
  when the items' floor alone keeps the power below `target`).

  Args:
    effect: the true effect.
    bounds: the claim as (L, H).
    design: how se and dof grow with n.
    alpha: the level.
    target: the power to reach.
    cap: the largest n searched.

  Returns:
    n or None.
  """
  decisive = decisive_power(effect, bounds, alpha)
  if decisive is None:
    return None
  if design.sd == 0 and design.floor == 0:
    return design.n_min
  return _smallest_n(lambda n: decisive(design.se(n), design.df(n)), design.n_min, target, cap)


def n_needed(
  comparison: str,
  effect: float,
  sd: float,
  alpha: float,
  *,
  margin: float = 0.0,
  low: float | None = None,
  high: float | None = None,
  paired: bool = True,
  target: float = TARGET_POWER,
  cap: int = CAP,
) -> int | None:
  """The smallest n (≥ 2) that reaches a decided verdict with probability ≥ `target`.

  The verdict is the one a true effect of `effect` points to: "supported" when it satisfies the
  claim, "not supported" when it lies beyond the claim's bound the other way (e.g. for
  ``greater`` an effect below the margin). Powers as in `power_one_sided` and `power_tost`
  (for ``slope_within`` `sd` is the sd of per-group slopes and n counts groups).

  Args:
    comparison: "greater" | "less" | "equivalent" | "slope_within".
    effect: the true effect (e.g. the observed one).
    sd: noise sd (of the paired differences, per arm when unpaired, of per-group slopes).
    alpha: level in (0, 0.5).
    margin: δ for greater/less/equivalent.
    low: lower end of the slope range (slope_within).
    high: upper end of the slope range (slope_within).
    paired: paired design (default) or n per arm.
    target: the power to reach (0.8).
    cap: the largest n searched.

  Returns:
    n, or None when the effect sits exactly on a bound (undecidable at this effect) or more
    than `cap` would be needed.

  Example:
    >>> from wd_jax.study import stats
    >>> stats.n_needed("greater", 1.0, 1.0, 0.05)
    8

  References:
    Lakens (2017), Equivalence tests: a practical primer for t tests, correlations, and
    meta-analyses (power and sample size of one-sided tests and TOST).
  """
  alpha = check_alpha(alpha)
  if comparison not in COMPARISONS:
    raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}.")
  _check_design(sd, 2)
  if not 0.0 < target < 1.0:
    raise ValueError(f"target must be in (0, 1), got {target!r}.")
  if not isinstance(cap, int) or cap < 2:
    raise ValueError(f"cap must be an int ≥ 2, got {cap!r}.")
  if comparison == "slope_within":
    low, high = check_range(low, high)
  else:
    check_margin("margin", margin, positive=comparison == "equivalent")
  bounds = claim_bounds(comparison, margin, low, high)
  design = Design(float(sd), "paired" if paired else "unpaired")
  return n_to_decide(float(effect), bounds, design, alpha, target, cap)
