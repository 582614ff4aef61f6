"""Where the best λ sits on an lr × λ grid, and how it moves with the learning rate.

A 2-D quadratic of a score (e.g. the final validation accuracy) in (log α, log λ), fitted over
the upper half of the grid, has a ridge — the best log λ at each log α — whose slope
d log λ*/d log α says how the optimum moves with α (`ridge_slope`, per seed in `analyse`); the
per-lr argmax of λ, refined by a parabola, is its model-free companion (`best_log_wd`,
`fit_slope`). `experiments/lr_wd_grid.py` decides its claims on these slopes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def ridge_slope(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
  """Slope of the ridge of a quadratic surface fitted to z over (x, y).

  Least squares of z = c0 + c1 x + c2 y + c3 x² + c4 xy + c5 y² over the finite points; the best
  y at each x solves ∂z/∂y = 0, the line y*(x) = −(c2 + c4 x)/(2 c5), slope −c4/(2 c5). NaN when
  fewer than 6 finite points, the design is singular, or c5 ≥ 0 (no maximum in y).

  Args:
    x: log α per point.
    y: log λ per point.
    z: the score per point (larger is better).

  Returns:
    d y*/d x.
  """
  x, y, z = (np.asarray(a, np.float64) for a in (x, y, z))
  keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
  x, y, z = x[keep], y[keep], z[keep]
  if x.size < 6:
    return math.nan
  # Centre and scale for conditioning; the slope is computed back in the original units.
  mx, my, sx, sy = x.mean(), y.mean(), x.std() or 1.0, y.std() or 1.0
  u, w = (x - mx) / sx, (y - my) / sy
  design = np.stack([np.ones_like(u), u, w, u * u, u * w, w * w], axis=1)
  coef, _, rank, _ = np.linalg.lstsq(design, z, rcond=None)
  if rank < 6 or coef[5] >= 0:
    return math.nan
  return float(-coef[4] / (2 * coef[5]) * sy / sx)


def upper_half(mean_grid: np.ndarray) -> np.ndarray:
  """The cells whose seed-mean score is at least the median of the finite cells: the region the
  quadratic describes (far below the optimum, accuracy falls off a cliff no quadratic follows)."""
  finite = mean_grid[np.isfinite(mean_grid)]
  if finite.size == 0:
    return np.zeros(mean_grid.shape, bool)
  return np.isfinite(mean_grid) & (mean_grid >= np.median(finite))


def best_log_wd(log_wds: Sequence[float], scores: Sequence[float]) -> tuple[float, bool]:
  """The log λ that maximises `scores` over an increasing grid, refined between grid points.

  The best grid cell (NaN counts as worst; among tied maxima, the middle one) and its two
  neighbours define a parabola in log λ; its vertex is the estimate, which always lies within
  half a grid step of the best cell. At the edge of the grid the edge value is returned.

  Args:
    log_wds: the grid, log λ (any base), strictly increasing.
    scores: one score per grid value, larger is better.

  Returns:
    (estimate, interior): interior is False when the best cell is at an edge of the grid (the
    true optimum may lie outside it), and the estimate is NaN when every score is NaN.
  """
  x = np.asarray(log_wds, np.float64)
  s = np.asarray(scores, np.float64)
  if x.shape != s.shape or x.ndim != 1 or x.size == 0:
    raise ValueError(f"log_wds and scores must be 1-D of one length, got {x.shape}, {s.shape}.")
  if np.any(np.diff(x) <= 0):
    raise ValueError(f"log_wds must be strictly increasing, got {x.tolist()}.")
  if not np.isfinite(s).any():
    return math.nan, False
  s = np.where(np.isfinite(s), s, -np.inf)
  ties = np.flatnonzero(s == s.max())
  i = int(ties[(len(ties) - 1) // 2])
  if i == 0 or i == len(x) - 1:
    return float(x[i]), False
  a, b, c = s[i - 1], s[i], s[i + 1]
  if not (np.isfinite(a) and np.isfinite(c)):
    return float(x[i]), True
  h0, h1 = x[i] - x[i - 1], x[i + 1] - x[i]
  d0, d1 = (b - a) / h0, (c - b) / h1
  if (d1 - d0) >= 0:
    return float(x[i]), True
  vertex = (x[i] - h0 / 2) + d0 / (d0 - d1) * (h0 + h1) / 2 if d0 != d1 else x[i]
  return float(np.clip(vertex, x[i] - h0 / 2, x[i] + h1 / 2)), True


def fit_slope(log_lrs: Sequence[float], log_best: Sequence[float]) -> float:
  """Least-squares slope of log λ* against log α over the finite points (NaN if < 2)."""
  x, y = np.asarray(log_lrs, np.float64), np.asarray(log_best, np.float64)
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 2 or np.ptp(x[keep]) == 0:
    return math.nan
  return float(np.polyfit(x[keep], y[keep], 1)[0])


def nan_mean(x: np.ndarray, axis: int) -> np.ndarray:
  """Mean over `axis` of the finite values; NaN (without numpy's warning) where there are none."""
  x = np.asarray(x, np.float64)
  ok = np.isfinite(x)
  n = ok.sum(axis=axis)
  total = np.where(ok, x, 0.0).sum(axis=axis)
  return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def analyse(scores: np.ndarray, log_lam: np.ndarray, lrs: Sequence[float]) -> dict[str, Any]:
  """The ridge slope per seed and the per-lr best λ, on one view of one run set.

  Args:
    scores: (seed, strength, lr) validation accuracy, NaN where diverged or left out.
    log_lam: (strength, lr) log10 λ of each cell in this view's unit, NaN where left out;
      increasing along the strength axis at every lr.
    lrs: the peak learning rates.

  Returns:
    ``slopes`` (per seed), ``region`` (the fitted cells), ``best_log10_wd`` (seed, lr) and
    ``interior`` from `best_log_wd`, the seed-mean grid, and ``argmax_slopes`` (per seed, the
    least-squares slope of the per-lr best log λ: the descriptive companion of the ridge).
  """
  n_seeds = scores.shape[0]
  log_lr = np.log10(np.asarray(lrs, np.float64))
  x = np.broadcast_to(log_lr[None, :], log_lam.shape)
  mean_grid = nan_mean(scores, axis=0)
  region = upper_half(mean_grid)
  slopes = [ridge_slope(x[region], log_lam[region], scores[i][region]) for i in range(n_seeds)]
  best = np.full((n_seeds, len(lrs)), np.nan)
  interior = np.zeros((n_seeds, len(lrs)), bool)
  for k in range(len(lrs)):
    col = np.isfinite(log_lam[:, k])
    if col.sum() < 1:
      continue
    for i in range(n_seeds):
      best[i, k], interior[i, k] = best_log_wd(log_lam[col, k], scores[i, col, k])
  return {
    "slopes": slopes,
    "region": region,
    "best_log10_wd": best,
    "interior": interior,
    "mean_grid": mean_grid,
    "argmax_slopes": [fit_slope(log_lr, best[i]) for i in range(n_seeds)],
  }


def view_log_lambda(view: str, log_lam: np.ndarray, lrs: Sequence[float]) -> np.ndarray:
  """log10 λ of a run set's cells in a view's unit: AdamW's "schedule" view is λ_lr·α."""
  if view == "adamw_schedule":
    return log_lam + np.log10(np.asarray(lrs, np.float64))[None, :]
  return log_lam
