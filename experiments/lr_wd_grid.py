"""Does the best λ move when the learning rate changes? Loshchilov & Hutter's lr × λ heat maps.

Five optimizers (Adam+L2, AdamW with the torch/optax "lr" coupling, AdamW with the paper's
"schedule" coupling, SGD+L2 and SGDW), each over an lr × λ × seed grid run by `wd_jax.sweep` as
one vmapped program, warmup + cosine schedule. For every optimizer and seed: the best log λ at
each lr (argmax of the final test accuracy over λ, refined by a parabola through the best cell
and its two neighbours), then the slope of best log λ against log lr, with a t confidence
interval over seeds. Writes heatmaps.png, best_wd_vs_lr.png, metrics.jsonl (one line per run),
config.json and summary.md with a verdict per optimizer.

  python experiments/lr_wd_grid.py --config=experiments/configs/lr_wd_grid.py --workdir=runs/grid
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import ml_collections
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.patches import Rectangle
from scipy import stats

from wd_jax import report, study, sweep
from wd_jax.runlog import write_atomic

# variant -> (optimizer recipe, its flags). SGD runs use heavy-ball momentum 0.9, as L&H did.
VARIANTS = {
  "adam_l2": ("adam_l2", {}),
  "adamw": ("adamw", {"coupling": "lr"}),
  "adamw_schedule": ("adamw", {"coupling": "schedule"}),
  "sgd_l2": ("sgd_l2", {"momentum": 0.9}),
  "sgdw": ("sgdw", {"momentum": 0.9, "coupling": "schedule"}),
}
LABELS = {
  "adam_l2": "Adam+L2",
  "adamw": 'AdamW, "lr" coupling',
  "adamw_schedule": 'AdamW, "schedule" coupling',
  "sgd_l2": "SGD+L2 (momentum 0.9)",
  "sgdw": 'SGDW, "schedule" coupling',
}
# What multiplies λ in one step (REFERENCES §1): the unit of each panel's λ axis.
WD_UNITS = {
  "adam_l2": "g ← g + λθ, then Adam",
  "adamw": "θ ← θ − α_t λ θ",
  "adamw_schedule": "θ ← θ − (α_t/α) λ θ",
  "sgd_l2": "g ← g + λθ, then momentum",
  "sgdw": "θ ← θ − (α_t/α) λ θ",
}
# The slope d log λ* / d log α each coupling predicts (the reading of L&H's Fig. 2).
PREDICTED_SLOPE = {
  "adam_l2": -1.0,
  "adamw": -1.0,
  "adamw_schedule": 0.0,
  "sgd_l2": -1.0,
  "sgdw": 0.0,
}
REASONS = {
  "adam_l2": (
    "the L2 gradient λθ is scaled by α_t after Adam divides it by √v̂: while the loss gradient "
    "dominates v̂, one step shrinks θ by ≈ α_t λ/√v̂, so only α·λ matters (slope −1); where λθ "
    "dominates v̂ the step becomes ≈ α_t·sign(θ) and the fixed point of loss + λ‖θ‖²/2 does not "
    "involve α (slope → 0). L&H's Fig. 2 shows the coupled, diagonal basin: predicted −1, "
    "possibly pulled towards 0"
  ),
  "adamw": (
    "one step shrinks θ by α_t λ: the product α·λ sets the decay, so the best λ ∝ 1/α. This is "
    "the schedule coupling re-indexed (λ_lr = λ_schedule/α), so its slope is the schedule "
    "coupling's minus 1"
  ),
  "adamw_schedule": (
    "one step shrinks θ by (α_t/α) λ, which does not involve the base lr α: if the decay acts "
    "through its own strength, the best λ does not depend on α (L&H's separable basin)"
  ),
  "sgd_l2": (
    "λθ is added to the gradient, accumulated by momentum and multiplied by α_t: one step shrinks "
    "θ by ≈ α_t λ/(1 − μ), so only α·λ matters (L&H's diagonal basin for SGD)"
  ),
  "sgdw": (
    "L&H's SGDW: one step shrinks θ by (α_t/α) λ, independent of α, so the best λ should not move "
    "(their separable basin)"
  ),
}
METRICS = {"test_accuracy": True, "best_test_accuracy": True, "test_loss": False}


# ----------------------------------------------------------------------------------------------
# The measurement: best log λ per lr, and the slope of best log λ against log lr.


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
  # Parabola through (x_{i-1}, a), (x_i, b), (x_{i+1}, c) on a possibly uneven grid.
  h0, h1 = x[i] - x[i - 1], x[i + 1] - x[i]
  d0, d1 = (b - a) / h0, (c - b) / h1
  curv = (d1 - d0) / (h0 + h1)  # half the second derivative; < 0 at a strict maximum
  if curv >= 0:
    return float(x[i]), True
  # d/dx of the parabola at the midpoints: d0 at x_i − h0/2, d1 at x_i + h1/2; zero between.
  vertex = (x[i] - h0 / 2) + d0 / (d0 - d1) * (h0 + h1) / 2 if d0 != d1 else x[i]
  return float(np.clip(vertex, x[i] - h0 / 2, x[i] + h1 / 2)), True


def fit_slope(log_lrs: Sequence[float], log_best: Sequence[float]) -> float:
  """Least-squares slope of log λ* against log α over the finite points (NaN if < 2)."""
  x, y = np.asarray(log_lrs, np.float64), np.asarray(log_best, np.float64)
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 2 or np.ptp(x[keep]) == 0:
    return math.nan
  return float(np.polyfit(x[keep], y[keep], 1)[0])


def slope_ci(slopes: Sequence[float], level: float = 0.95) -> dict[str, float]:
  """Mean, sd and the t confidence interval mean ± t·sd/√n of per-seed slopes (finite ones).

  With one finite slope the interval is (NaN, NaN): one seed says nothing about the spread.
  """
  xs = np.asarray([s for s in slopes if math.isfinite(s)], np.float64)
  n = int(xs.size)
  if n == 0:
    return {"mean": math.nan, "sd": math.nan, "n": 0, "lo": math.nan, "hi": math.nan}
  mean = float(xs.mean())
  if n == 1:
    return {"mean": mean, "sd": math.nan, "n": 1, "lo": math.nan, "hi": math.nan}
  sd = float(xs.std(ddof=1))
  half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
  return {"mean": mean, "sd": sd, "n": n, "lo": mean - half, "hi": mean + half}


def slope_verdict(ci: dict[str, float], predicted: float, tolerance: float, equivalence: float):
  """Supported / not supported / inconclusive for "the slope is `predicted`".

  Supported: the whole confidence interval lies within `predicted` ± `equivalence` (the seeds
  pin the slope near the prediction). Not supported: the interval misses `predicted` ±
  `tolerance` (the seeds place it away from the prediction). Inconclusive otherwise: too wide
  to tell, or no interval (fewer than two seeds with a slope).
  """
  lo, hi = ci["lo"], ci["hi"]
  detail = (
    f"slope {ci['mean']:+.2f} ± {ci['sd']:.2f} (sd over n={ci['n']} seeds), "
    f"CI [{lo:+.2f}, {hi:+.2f}]; predicted {predicted:+g}"
  )
  if not (math.isfinite(lo) and math.isfinite(hi)):
    return study.Verdict(study.INCONCLUSIVE, detail + ": no interval (fewer than 2 seeds)")
  if predicted - equivalence <= lo and hi <= predicted + equivalence:
    return study.Verdict(study.SUPPORTED, detail + f": the CI lies within ±{equivalence:g} of it")
  if hi < predicted - tolerance or lo > predicted + tolerance:
    return study.Verdict(study.NOT_SUPPORTED, detail + f": the CI misses it by > {tolerance:g}")
  return study.Verdict(study.INCONCLUSIVE, detail + ": the CI is too wide to tell")


# ----------------------------------------------------------------------------------------------
# Running the grids.


def _validate(config: ml_collections.ConfigDict) -> None:
  if not config.variants:
    raise ValueError("config.variants is empty.")
  for v, grid in config.variants.items():
    if v not in VARIANTS:
      raise ValueError(f"config.variants has {v!r}; valid: {sorted(VARIANTS)}.")
    for field in ("learning_rates", "weight_decays"):
      vals = list(grid[field])
      if len(vals) < 2 or any(x <= 0 for x in vals) or sorted(set(vals)) != vals:
        raise ValueError(
          f"config.variants.{v}.{field} must be >= 2 increasing values > 0, got {vals}."
        )
  if not config.seeds:
    raise ValueError("config.seeds is empty.")
  if config.metric not in METRICS:
    raise ValueError(f"config.metric must be one of {sorted(METRICS)}, got {config.metric!r}.")
  if config.secondary_metric and config.secondary_metric not in METRICS:
    raise ValueError(
      f"config.secondary_metric must be '' or one of {sorted(METRICS)}, got "
      f"{config.secondary_metric!r}."
    )
  if not 0 < config.level < 1 or not 0 < config.tolerance <= config.equivalence:
    raise ValueError(
      f"config.level must be in (0, 1) and 0 < config.tolerance <= config.equivalence, got "
      f"{config.level}, {config.tolerance}, {config.equivalence}."
    )


def run_variant(name: str, config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """The variant's lr × λ × seed grid through `sweep.run_sweep` (one compiled program)."""
  recipe, kwargs = VARIANTS[name]
  base = config.run.copy_and_resolve_references()
  base.optimizer.name = recipe
  base.optimizer.kwargs = kwargs
  grid = config.variants[name]
  return sweep.run_sweep(
    base,
    {
      "learning_rate": list(grid.learning_rates),
      "weight_decay": list(grid.weight_decays),
      "seed": list(config.seeds),
    },
    os.path.join(workdir, name),
    strategy=config.strategy,
    verbose=False,
  )


def score_grid(rows: list[dict], lrs, wds, seeds, metric: str) -> np.ndarray:
  """(seed, λ, lr) array of the metric, larger is better (loss negated); diverged runs NaN."""
  sign = 1.0 if METRICS[metric] else -1.0
  out = np.full((len(seeds), len(wds), len(lrs)), np.nan)
  for r in rows:
    x = r.get(metric, math.nan)
    if r["diverged"] or x is None or not math.isfinite(x):
      continue
    i = seeds.index(r["seed"])
    j = _index(wds, r["weight_decay"])
    k = _index(lrs, r["learning_rate"])
    out[i, j, k] = sign * float(x)
  return out


def _index(values: Sequence[float], x: float) -> int:
  for i, v in enumerate(values):
    if math.isclose(v, x, rel_tol=1e-9):
      return i
  raise ValueError(f"{x} is not in the grid {list(values)}.")


def nan_mean(x: np.ndarray, axis: int) -> np.ndarray:
  """Mean over `axis` of the finite values; NaN (without numpy's warning) where there are none."""
  x = np.asarray(x, np.float64)
  ok = np.isfinite(x)
  n = ok.sum(axis=axis)
  total = np.where(ok, x, 0.0).sum(axis=axis)
  return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def analyse(scores: np.ndarray, lrs, wds, level: float) -> dict[str, Any]:
  """Best log10 λ per (seed, lr), per-seed slopes and their CI; also on the seed-mean grid."""
  log_lr, log_wd = np.log10(lrs), np.log10(wds)
  n_seeds = scores.shape[0]
  best = np.full((n_seeds, len(lrs)), np.nan)
  interior = np.zeros((n_seeds, len(lrs)), bool)
  for i in range(n_seeds):
    for k in range(len(lrs)):
      best[i, k], interior[i, k] = best_log_wd(log_wd, scores[i, :, k])
  slopes = [fit_slope(log_lr, best[i]) for i in range(n_seeds)]
  mean_grid = nan_mean(scores, axis=0)
  mean_best = np.array([best_log_wd(log_wd, mean_grid[:, k])[0] for k in range(len(lrs))])
  return {
    "best_log10_wd": best,
    "interior": interior,
    "slopes": slopes,
    "ci": slope_ci(slopes, level),
    "mean_grid": mean_grid,
    "mean_best_log10_wd": mean_best,
    "mean_grid_slope": fit_slope(log_lr, mean_best),
  }


# ----------------------------------------------------------------------------------------------
# Figures.


def _edges(values: Sequence[float]) -> np.ndarray:
  """Geometric cell edges around increasing positive grid values."""
  t = np.log(np.asarray(values, np.float64))
  mids = (t[1:] + t[:-1]) / 2
  return np.exp(np.concatenate([[2 * t[0] - mids[0]], mids, [2 * t[-1] - mids[-1]]]))


def plot_heatmaps(res: dict[str, dict], config, workdir: str) -> str:
  """One panel per optimizer, log axes, one shared colour scale, best cell outlined in red and
  the seed-mean best λ at each lr (parabola-refined) marked in white."""
  metric = config.metric
  larger = METRICS[metric]
  sign = 1.0 if larger else -1.0
  names = list(res)
  grids = {v: sign * res[v]["analysis"]["mean_grid"] for v in names}
  finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
  vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
  norm = mcolors.Normalize(vmin, vmax if vmax > vmin else vmin + 1e-3)
  cmap = plt.get_cmap("viridis" if larger else "viridis_r")
  k = len(names)
  fig, axes = plt.subplots(
    1, k, figsize=(1.2 + 3.5 * k, 4.3), dpi=100, squeeze=False, layout="constrained"
  )
  mesh = None
  for ax, v in zip(axes[0], names):
    lrs, wds = res[v]["lrs"], res[v]["wds"]
    xe, ye = _edges(lrs), _edges(wds)
    g = grids[v]
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(g), cmap=cmap, norm=norm)
    dead = res[v]["diverged"]
    for i in range(len(wds)):
      for j in range(len(lrs)):
        # The value sits in the cell's upper part; the best-λ marker may cross the middle.
        cx, cy = math.sqrt(xe[j] * xe[j + 1]), ye[i] ** 0.3 * ye[i + 1] ** 0.7
        if dead[i, j]:
          ax.add_patch(
            Rectangle(
              (xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i], fc="0.8", ec="0.45", hatch="///"
            )
          )
          ax.text(cx, cy, "div.", ha="center", va="center", fontsize=7)
        elif np.isfinite(g[i, j]):
          rgb = cmap(norm(g[i, j]))[:3]
          dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5
          ax.text(
            cx,
            cy,
            f"{g[i, j]:.3f}"[1:] if 0 < g[i, j] < 1 else f"{g[i, j]:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if dark else "black",
          )
    if np.isfinite(g).any():
      i, j = np.unravel_index(np.nanargmax(sign * g), g.shape)
      ax.add_patch(
        Rectangle(
          (xe[j], ye[i]),
          xe[j + 1] - xe[j],
          ye[i + 1] - ye[i],
          fill=False,
          ec="red",
          lw=2.2,
          clip_on=False,
        )
      )
    a = res[v]["analysis"]
    best = 10.0 ** a["mean_best_log10_wd"]
    ax.plot(lrs, best, color="white", ls="--", lw=1.0, marker="o", ms=4, mec="black", mew=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(lrs, [f"{x:g}" for x in lrs], fontsize=8, rotation=30)
    ax.set_yticks(wds, [f"{x:g}" for x in wds], fontsize=8)
    ax.minorticks_off()
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ci = a["ci"]
    ax.set_title(
      f"{LABELS[v]}\nslope {ci['mean']:+.2f}, CI [{ci['lo']:+.2f}, {ci['hi']:+.2f}]"
      f" (pred. {PREDICTED_SLOPE[v]:+g})",
      fontsize=9,
      color=study.color(v),
    )
    ax.set_xlabel("peak learning rate α (log scale)", fontsize=8)
    ax.set_ylabel(f"λ (log scale): {WD_UNITS[v]}", fontsize=8)
  cbar = fig.colorbar(mesh, ax=list(axes[0]), shrink=0.9, pad=0.02)
  label = {"test_accuracy": "final test accuracy", "best_test_accuracy": "best test accuracy"}
  cbar.set_label(label.get(metric, "final test loss (nats)") + " (fraction)", fontsize=9)
  run = config.run
  fig.suptitle(
    f"lr × λ grids: {label.get(metric, metric)}, mean of {len(config.seeds)} seeds per cell — "
    f"{run.dataset.name} {run.model.name}, {run.steps} steps, warmup + cosine\n"
    "red box: best cell; white dots: best λ at each lr (seed-mean grid, parabola-refined); "
    "title: slope of best log λ on log α, 95% CI over seeds",
    fontsize=10,
  )
  path = os.path.join(workdir, "heatmaps.png")
  report.save_png(fig, path)
  return path


def plain_log_ticks(ax, axis: str = "y") -> None:
  """Tick labels of a log axis as plain numbers (0.5, 2, 30): every minor tick within about a
  decade, only the 2s and 5s beyond."""
  ax_ = ax.yaxis if axis == "y" else ax.xaxis
  lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
  every = hi / max(lo, 1e-30) < 15

  def minor(v, _):
    digit = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
    return f"{v:g}" if every or digit in (2, 5) else ""

  ax_.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax_.set_minor_formatter(mticker.FuncFormatter(minor))
  ax.tick_params(axis=axis, which="minor", labelsize=7)


def plot_best_wd(res: dict[str, dict], workdir: str, level: float) -> str:
  """Best λ against the peak lr, both relative to the grid's smallest lr, one line per optimizer
  (the optimizers' grids differ, the relative axes put their slopes side by side)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
  hi_rel = 1.0
  for n, (v, r) in enumerate(res.items()):
    a, lrs = r["analysis"], np.asarray(r["lrs"])
    x = lrs / lrs[0]
    hi_rel = max(hi_rel, x[-1])
    best = a["best_log10_wd"]  # (seed, lr)
    rel = best - nan_mean(best[:, 0], axis=0)
    jitter = 1.0 + 0.025 * (n - (len(res) - 1) / 2)  # side by side, not on top of each other
    for i in range(rel.shape[0]):
      ax.scatter(x * jitter, 10.0 ** rel[i], color=study.color(v), s=12, alpha=0.45, lw=0)
    mean = nan_mean(rel, axis=0)
    ci = a["ci"]
    ax.plot(
      x * jitter,
      10.0**mean,
      color=study.color(v),
      marker="o",
      ms=4,
      label=f"{LABELS[v]}: {ci['mean']:+.2f} [{ci['lo']:+.2f}, {ci['hi']:+.2f}]",
    )
  xs = np.geomspace(1.0, hi_rel, 20)
  ax.plot(xs, 1.0 / xs, color="0.5", ls=":", lw=1.2, label="slope −1 (best λ ∝ 1/α)")
  ax.plot(xs, np.ones_like(xs), color="0.5", ls="--", lw=1.0, label="slope 0 (best λ fixed)")
  ax.plot(xs, xs, color="0.5", ls="-.", lw=1.0, label="slope +1 (best λ ∝ α)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.xaxis.set_minor_formatter(mticker.NullFormatter())
  ticks = sorted(
    {float(f"{x:.3g}") for r in res.values() for x in np.asarray(r["lrs"]) / r["lrs"][0]}
  )
  ax.set_xticks(ticks)
  plain_log_ticks(ax, "y")
  ax.set(
    title=f"Best λ against the peak lr (legend: slope, {100 * level:g}% CI over seeds)",
    xlabel="peak lr α / smallest α of the grid (log scale)",
    ylabel="best λ / mean best λ at the smallest α (log scale)",
  )
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  path = os.path.join(workdir, "best_wd_vs_lr.png")
  report.save_png(fig, path)
  return path


# ----------------------------------------------------------------------------------------------
# Findings and the study.


def findings_for(res: dict[str, dict], config) -> list[study.Finding]:
  out = []
  for v, r in res.items():
    p = PREDICTED_SLOPE[v]
    a = r["analysis"]
    edge = int((~a["interior"]).sum())
    measured = (
      f"per-seed slopes {', '.join(f'{s:+.2f}' for s in a['slopes'])}; "
      f"{100 * config.level:g}% CI [{a['ci']['lo']:+.2f}, {a['ci']['hi']:+.2f}]; slope of the "
      f"seed-mean grid {a['mean_grid_slope']:+.2f}; best λ at the grid's edge in {edge} of "
      f"{a['interior'].size} (seed, lr) cells"
    )
    if "secondary" in r:
      c2 = r["secondary"]["ci"]
      v2 = slope_verdict(c2, p, config.tolerance, config.equivalence)
      measured += (
        f". Best λ by {config.secondary_metric.replace('_', ' ')} instead: slope "
        f"{c2['mean']:+.2f}, CI [{c2['lo']:+.2f}, {c2['hi']:+.2f}] ({v2.status} by the same rule)"
      )
    out.append(
      study.Finding(
        f"[{LABELS[v]}] best λ ∝ α^({p:+g}): {REASONS[v]}.",
        "Loshchilov & Hutter 2019, Fig. 2; REFERENCES §1–2",
        slope_verdict(a["ci"], p, config.tolerance, config.equivalence),
        measured,
      )
    )
  if {"adamw", "adamw_schedule"} <= res.keys():
    lr_s = res["adamw"]["analysis"]["slopes"]
    sc_s = res["adamw_schedule"]["analysis"]["slopes"]
    diff = [a - b for a, b in zip(lr_s, sc_s)]
    out.append(
      study.Finding(
        "[AdamW] The two couplings are one family re-indexed (λ_lr = λ_schedule/α), so the "
        "lr-coupled slope is the schedule-coupled slope minus 1: a check of the measurement.",
        "REFERENCES §1 (algebra)",
        study.compare(
          diff,
          [-1.0] * len(diff),
          expect="equal",
          margin=config.tolerance,
          names=("slope(lr) − slope(schedule)", "−1"),
        ),
      )
    )
  return out


def _table(res: dict[str, dict], metric: str, secondary: str) -> str:
  header = ["optimizer", "lr grid", "λ grid", "per-seed slopes", "slope (CI)", "best cell"]
  if secondary:
    header.append(f"slope on {secondary.replace('_', ' ')} (CI)")
  rows = []
  sign = 1.0 if METRICS[metric] else -1.0
  for v, r in res.items():
    a = r["analysis"]
    g = sign * a["mean_grid"]
    if np.isfinite(g).any():
      i, j = np.unravel_index(np.nanargmax(sign * g), g.shape)
      best = f"{g[i, j]:.3f} at α={r['lrs'][j]:g}, λ={r['wds'][i]:g}"
    else:
      best = "all diverged"
    ci = a["ci"]
    row = [
      LABELS[v],
      ", ".join(f"{x:g}" for x in r["lrs"]),
      ", ".join(f"{x:g}" for x in r["wds"]),
      ", ".join(f"{s:+.2f}" for s in a["slopes"]),
      f"{ci['mean']:+.2f} [{ci['lo']:+.2f}, {ci['hi']:+.2f}]",
      best,
    ]
    if secondary:
      c2 = r["secondary"]["ci"]
      row.append(f"{c2['mean']:+.2f} [{c2['lo']:+.2f}, {c2['hi']:+.2f}]")
    rows.append(row)
  return study.markdown_table(header, rows)


def _best_table(res: dict[str, dict]) -> str:
  header = ["optimizer", *["α", "best λ per seed (parabola-refined)", "at grid edge"]]
  rows = []
  for v, r in res.items():
    a = r["analysis"]
    for k, lr in enumerate(r["lrs"]):
      vals = ", ".join(f"{10.0**b:.3g}" for b in a["best_log10_wd"][:, k])
      edge = int((~a["interior"][:, k]).sum())
      rows.append([LABELS[v], f"{lr:g}", vals, f"{edge}/{a['interior'].shape[0]}"])
  return study.markdown_table(header, rows)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  _validate(config)
  study.begin(config, workdir)
  seeds = list(config.seeds)
  res, lines = {}, []
  for v in config.variants:
    rows = run_variant(v, config, workdir)
    lrs = list(config.variants[v].learning_rates)
    wds = list(config.variants[v].weight_decays)
    scores = score_grid(rows, lrs, wds, seeds, config.metric)
    diverged = np.zeros((len(wds), len(lrs)), int)
    for r in rows:
      diverged[_index(wds, r["weight_decay"]), _index(lrs, r["learning_rate"])] += r["diverged"]
    res[v] = {
      "lrs": lrs,
      "wds": wds,
      "rows": rows,
      "diverged": diverged == len(seeds),
      "analysis": analyse(scores, lrs, wds, config.level),
    }
    if config.secondary_metric:
      second = score_grid(rows, lrs, wds, seeds, config.secondary_metric)
      res[v]["secondary"] = analyse(second, lrs, wds, config.level)
    for r in rows:
      lines.append(
        {
          "variant": v,
          "optimizer": r["optimizer"],
          "coupling": VARIANTS[v][1].get("coupling", "l2"),
          "learning_rate": r["learning_rate"],
          "weight_decay": r["weight_decay"],
          "seed": r["seed"],
          "test_accuracy": r["test_accuracy"],
          "best_test_accuracy": r["best_test_accuracy"],
          "test_loss": r["test_loss"],
          "train_loss": r["loss"],
          "diverged": r["diverged"],
          "run_dir": os.path.join(v, r["run_dir"]),
        }
      )
    ci = res[v]["analysis"]["ci"]
    print(f"{v}: {len(rows)} runs; slope {ci['mean']:+.2f} [{ci['lo']:+.2f}, {ci['hi']:+.2f}]")
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  findings = findings_for(res, config)
  figures = [
    (
      f"lr × λ heat maps of the {config.metric.replace('_', ' ')} (one shared colour scale)",
      plot_heatmaps(res, config, workdir),
    ),
    (
      "Best λ against the peak lr, relative to the smallest lr",
      plot_best_wd(res, workdir, config.level),
    ),
  ]
  run_cfg = config.run
  study.write_summary(
    workdir,
    "Does the best λ move when the learning rate changes? (lr × λ grids)",
    findings,
    intro=(
      f"{run_cfg.dataset.name} / {run_cfg.model.name} {dict(run_cfg.model.kwargs)}, "
      f"{run_cfg.steps} steps of batch {run_cfg.batch_size}, {run_cfg.optimizer.lr_schedule} "
      f"(warmup {run_cfg.optimizer.warmup_fraction:g} of the steps, cosine to 0; the swept α is "
      f"the peak), decay mask {run_cfg.optimizer.mask} (biases undecayed), seeds {seeds}. "
      f"For each optimizer and seed, the best log λ at each α is the argmax over λ of the "
      f"{config.metric.replace('_', ' ')}, refined by a parabola through the best cell and its "
      "two neighbours in log λ; the slope is the least-squares slope of best log λ on log α; "
      f"the interval is mean ± t·sd/√n over seeds ({100 * config.level:g}%). A verdict is "
      f"*supported* when the whole interval lies within ±{config.equivalence:g} of the predicted "
      f"slope, *not supported* when it misses the prediction by more than {config.tolerance:g}, "
      "*inconclusive* otherwise (the seeds disagree too much to tell). The question it "
      "answers is the one users ask of torch AdamW, apex and schedule-free AdamW: when I change "
      "the lr, must I change λ too?"
    ),
    tables=[
      (
        "Slopes of best log λ on log α",
        _table(res, config.metric, config.secondary_metric),
      ),
      ("Best λ per lr and seed", _best_table(res)),
    ],
    figures=figures,
    footer=(
      "Why a network can disagree with L&H's heat maps (a hypothesis, not tested here): their "
      "ResNet had BatchNorm, and a scale-invariant weight depends only on its direction, which "
      "moves by the angular update √(2·α·λ_lr) at equilibrium (REFERENCES §4): only α·λ_lr "
      "matters, so λ_lr ∝ 1/α and the schedule coupling's λ is free of α. A network without "
      "normalisation depends on the weights' scale as well: AdamW's weights are (1/λ_lr) times "
      "an average of its bounded updates over the last 1/(α·λ_lr) steps, so λ_lr alone sets "
      "their size; coupled L2 drives θ towards the minimiser of loss + λ‖θ‖²/2, which does not "
      "involve α. Either would keep the best λ of the L2 and lr-coupled runs still (slope 0) "
      "and make the schedule-coupled one follow α (slope +1).\n\n"
      "Per-run records: metrics.jsonl (one line per run); each optimizer's sweep workdir "
      "(results.csv, runs/*/metrics.jsonl) is the sub-directory named after it."
    ),
  )
  return {"findings": findings, "results": res}


if __name__ == "__main__":
  study.main(run, claim_width=100)
