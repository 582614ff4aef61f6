"""Does the best λ move when the learning rate changes? Loshchilov & Hutter's lr × λ heat maps.

Five optimizers (Adam+L2, AdamW with the torch/optax "lr" coupling, AdamW with the paper's
"schedule" coupling, SGD+L2 and SGDW), each over an lr × λ × seed grid run by `wd_jax.sweep` as
one vmapped program, warmup + cosine schedule. For every optimizer and seed: the best log λ at
each lr (argmax of the final *validation* metric over λ, refined by a parabola through the best
cell and its two neighbours), then the slope of best log λ against log lr, decided against the
range each claim in the config declares by `wd_jax.study.stats.decide_slope` (one slope per
seed). The test split is read once, for the (lr, λ) each optimizer selects on validation. Writes
heatmaps.png, best_wd_vs_lr.png, metrics.jsonl (one line per run), config.json and summary.md.

  python experiments/lr_wd_grid.py --config=experiments/configs/lr_wd_grid.py --workdir=runs/grid
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from configs.lr_wd_grid import LABELS

from wd_jax import report, study, sweep
from wd_jax.runlog import write_atomic
from wd_jax.study import claims as claims_lib
from wd_jax.study import protocol, schema, stats

# variant -> (optimizer recipe, its flags). SGD runs use heavy-ball momentum 0.9, as L&H did.
VARIANTS = {
  "adam_l2": ("adam_l2", {}),
  "adamw": ("adamw", {"coupling": "lr"}),
  "adamw_schedule": ("adamw", {"coupling": "schedule"}),
  "sgd_l2": ("sgd_l2", {"momentum": 0.9}),
  "sgdw": ("sgdw", {"momentum": 0.9, "coupling": "schedule"}),
}
# What multiplies λ in one step (REFERENCES §1): the unit of each panel's λ axis.
WD_UNITS = {
  "adam_l2": "g ← g + λθ, then Adam",
  "adamw": "θ ← θ − α_t λ θ",
  "adamw_schedule": "θ ← θ − (α_t/α) λ θ",
  "sgd_l2": "g ← g + λθ, then momentum",
  "sgdw": "θ ← θ − (α_t/α) λ θ",
}
# The validation metrics best λ can be read on, and whether larger is better.
METRICS = {"val_accuracy": True, "val_loss": False}
METRIC_LABELS = {
  "val_accuracy": "final validation accuracy (fraction)",
  "val_loss": "final validation loss (nats)",
}
ALPHA = 0.05  # the descriptive intervals (slopes without a claim, heat-map cells) are 90% t
PER_RUN = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")


# ----------------------------------------------------------------------------------------------
# Config rules.


def _increasing(where: str, value: Any) -> None:
  schema.numbers()(where, value)
  vals = list(value)
  if len(vals) < 2 or sorted(set(vals)) != vals:
    raise ValueError(f"{where} must be >= 2 increasing values > 0, got {vals}.")


def _variants(where: str, value: Any) -> None:
  schema.choices(tuple(VARIANTS))(where, list(value.keys()) if value else [])
  schema.each({"learning_rates": _increasing, "weight_decays": _increasing})(where, value)


FIELDS = {
  "variants": _variants,
  "seeds": schema.ints(),
  "metric": schema.choice(tuple(METRICS)),
  "strategy": schema.choice(sweep.STRATEGIES),
  "run": schema.run_config(),
}


def _same_lrs(config, a: str, b: str) -> bool:
  la, lb = config.variants[a].learning_rates, config.variants[b].learning_rates
  return len(la) == len(lb) and all(math.isclose(x, y, rel_tol=1e-9) for x, y in zip(la, lb))


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them).

  ``<v>/best_log_wd@<metric>``: the slope measurement (x = log10 α, y = best log10 λ, groups =
  seeds) of variant v with best λ read on a validation metric; ``<a>-<b>/best_log_wd@<metric>``:
  the same with y = best log10 λ of a − that of b (two variants on one lr grid); and the
  per-seed metrics of the (lr, λ) each variant selects, ``<v>/<metric>@selected``."""
  out = []
  for v in config.variants:
    out += [f"{v}/best_log_wd@{m}" for m in METRICS]
    out += [f"{v}/{q}@selected" for q in PER_RUN]
  for a, b in itertools.permutations(config.variants, 2):
    if _same_lrs(config, a, b):
      out += [f"{a}-{b}/best_log_wd@{m}" for m in METRICS]
  return out


# ----------------------------------------------------------------------------------------------
# The measurement: best log λ per lr, and the points whose slope is decided.


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


def slope_measurement(best: np.ndarray, lrs: Sequence[float], seeds: Sequence[int]) -> dict:
  """The points of a slope claim: x = log10 α, y = best log10 λ, groups = the seed of each point.

  `best` is (seed, lr). An lr at which no seed has a best λ (every run diverged) is left out for
  all seeds, so the seeds keep one design; a seed missing a best λ at a kept lr is passed on as
  NaN and `wd_jax.study.stats.decide_slope` drops that seed (and says so).
  """
  best = np.asarray(best, np.float64)
  keep = [k for k in range(len(lrs)) if np.isfinite(best[:, k]).any()]
  x = [math.log10(lrs[k]) for _ in seeds for k in keep]
  y = [float(best[i, k]) for i in range(len(seeds)) for k in keep]
  groups = [int(s) for s in seeds for _ in keep]
  return {"x": x, "y": y, "groups": groups}


def per_seed_slopes(measurement: dict) -> list[float]:
  """The OLS slope of each group (seed) of a slope measurement, NaN where a point is missing:
  the per-seed values whose mean and t interval `stats.decide_slope` reads."""
  x, y = np.asarray(measurement["x"]), np.asarray(measurement["y"])
  labels = list(measurement["groups"])
  out = []
  for g in dict.fromkeys(labels):
    idx = [i for i, lab in enumerate(labels) if lab == g]
    ok = np.all(np.isfinite(y[idx])) and np.ptp(x[idx]) > 0
    out.append(float(np.polyfit(x[idx], y[idx], 1)[0]) if ok else math.nan)
  return out


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


def analyse(scores: np.ndarray, lrs, wds, seeds: Sequence[int] | None = None) -> dict[str, Any]:
  """Best log10 λ per (seed, lr), the slope measurement and per-seed slopes; also the best λ and
  its slope on the seed-mean grid (descriptive)."""
  log_lr, log_wd = np.log10(lrs), np.log10(wds)
  n_seeds = scores.shape[0]
  seeds = list(range(n_seeds)) if seeds is None else list(seeds)
  best = np.full((n_seeds, len(lrs)), np.nan)
  interior = np.zeros((n_seeds, len(lrs)), bool)
  for i in range(n_seeds):
    for k in range(len(lrs)):
      best[i, k], interior[i, k] = best_log_wd(log_wd, scores[i, :, k])
  measurement = slope_measurement(best, lrs, seeds)
  mean_grid = nan_mean(scores, axis=0)
  mean_best = np.array([best_log_wd(log_wd, mean_grid[:, k])[0] for k in range(len(lrs))])
  return {
    "best_log10_wd": best,
    "interior": interior,
    "measurement": measurement,
    "slopes": per_seed_slopes(measurement),
    "mean_grid": mean_grid,
    "mean_best_log10_wd": mean_best,
    "mean_grid_slope": fit_slope(log_lr, mean_best),
  }


def _interval(slopes: Sequence[float]) -> tuple[float, float, float]:
  """Mean and 90% t interval of the finite per-seed slopes (infinite bounds below two)."""
  xs = [s for s in slopes if math.isfinite(s)]
  if not xs:
    return math.nan, -math.inf, math.inf
  return stats.t_interval(xs, ALPHA)


# ----------------------------------------------------------------------------------------------
# Running the grids.


def run_variant(name: str, config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """The variant's lr × λ × seed grid through `sweep.run_sweep` (one compiled program); the test
  split is read for the seeds of the (lr, λ) with the best mean validation metric only."""
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
    select=protocol.selector(
      by=("learning_rate", "weight_decay"), metric=config.metric, larger=METRICS[config.metric]
    ),
  )


def measure(res: dict[str, dict], config) -> dict[str, Any]:
  """Every measurement of `measurement_names(config)` from the variants' results."""
  out: dict[str, Any] = {}
  for v, r in res.items():
    for m in METRICS:
      out[f"{v}/best_log_wd@{m}"] = r["analysis"][m]["measurement"]
    chosen = r["selected"] or {}
    for q in PER_RUN:
      vals = protocol.per_seed(r["rows"], q, chosen) if chosen else []
      out[f"{v}/{q}@selected"] = vals or [math.nan] * len(config.seeds)
  for a, b in itertools.permutations(res, 2):
    if _same_lrs(config, a, b):
      for m in METRICS:
        gap = res[a]["analysis"][m]["best_log10_wd"] - res[b]["analysis"][m]["best_log10_wd"]
        out[f"{a}-{b}/best_log_wd@{m}"] = slope_measurement(gap, res[a]["lrs"], config.seeds)
  return out


# ----------------------------------------------------------------------------------------------
# Figures.


def _finding(findings, name: str):
  return next((f for f in findings if f.claim.measurements == (name,)), None)


def _slope_text(findings, v: str, r: dict, metric: str, sep: str = "; ") -> str:
  """ "slope +0.12 [90% CI −0.3, +0.5]; claim [−1.5, −0.5]: not supported" (or no claim)."""
  f = _finding(findings, f"{v}/best_log_wd@{metric}")
  if f is not None:
    d = f.decision
    pct = f"{100 * (1 - 2 * d.alpha):.3g}%"
    low, high = f.claim.test["low"], f.claim.test["high"]
    return (
      f"slope {d.effect:+.2f} [{pct} CI {d.ci[0]:+.2f}, {d.ci[1]:+.2f}]{sep}"
      f"claim [{low:g}, {high:g}]: {d.verdict}"
    )
  mean, lo, hi = _interval(r["analysis"][metric]["slopes"])
  return f"slope {mean:+.2f} [90% CI {lo:+.2f}, {hi:+.2f}] (no claim)"


def _cell_text(v: float) -> str:
  return f"{v:.3f}"[1:] if 0 < v < 1 else f"{v:.2f}"


def plot_heatmaps(res: dict[str, dict], config, findings, workdir: str) -> str:
  """One panel per optimizer: the validation metric's seed mean and 90% CI in each cell, one
  shared colour scale at least a typical cell's CI wide, the selected (lr, λ) outlined in red and
  the seed-mean best λ at each lr (parabola-refined) marked in white."""
  metric = config.metric
  larger = METRICS[metric]
  sign = 1.0 if larger else -1.0
  names = list(res)
  means, halves = {}, {}
  for v in names:
    vals = sign * res[v]["scores"][metric]  # (seed, λ, lr), the metric itself
    cells = [
      [report.mean_and_ci(vals[:, i, j]) for j in range(vals.shape[2])]
      for i in range(vals.shape[1])
    ]
    means[v] = np.array([[c[0] for c in row] for row in cells])
    halves[v] = np.array([[c[1] for c in row] for row in cells])
  norm, flat = report.heatmap_scale(list(means.values()), list(halves.values()))
  cmap = plt.get_cmap("viridis" if larger else "viridis_r")
  k = len(names)
  fig, axes = plt.subplots(
    1, k, figsize=(1.2 + 3.6 * k, 4.6), dpi=100, squeeze=False, layout="constrained"
  )
  mesh = None
  for ax, v in zip(axes[0], names):
    r = res[v]
    lrs, wds = r["lrs"], r["wds"]
    chosen = r["selected"]
    outline = None
    if chosen is not None:
      outline = (_index(wds, chosen["weight_decay"]), _index(lrs, chosen["learning_rate"]))
    mesh, _ = report.heatmap_panel(
      ax,
      lrs,
      wds,
      means[v],
      norm=norm,
      cmap=cmap,
      half=halves[v],
      dead=r["diverged"],
      higher_is_better=larger,
      outline=outline,
      fmt=_cell_text,
      text_at=0.68,  # above the best-λ marker, which may cross the cell's middle
    )
    best = 10.0 ** r["analysis"][metric]["mean_best_log10_wd"]
    ax.plot(lrs, best, color="white", ls="--", lw=1.0, marker="o", ms=4, mec="black", mew=0.6)
    slope = _slope_text(findings, v, r, metric, sep="\n")
    ax.set_title(f"{LABELS[v]}\n{slope}", fontsize=8)
    ax.set_xlabel("peak learning rate α (log scale)", fontsize=8)
    ax.set_ylabel(f"λ (log scale): {WD_UNITS[v]}", fontsize=8)
  cbar = fig.colorbar(mesh, ax=list(axes[0]), shrink=0.9, pad=0.02)
  cbar.set_label(METRIC_LABELS[metric], fontsize=9)
  run = config.run
  fig.suptitle(
    f"lr × λ grids: {METRIC_LABELS[metric]}, mean ± 90% CI of {len(config.seeds)} seeds per "
    f"cell — {run.dataset.name} {run.model.name}, {run.steps} steps, warmup + cosine\n"
    "red box: the (lr, λ) selected on validation (its test split read once); white dots: best λ "
    "at each lr (seed-mean grid, parabola-refined)" + (f"\n{flat}" if flat else ""),
    fontsize=9,
  )
  path = os.path.join(workdir, "heatmaps.png")
  report.save_png(fig, path)
  return path


def plot_best_wd(res: dict[str, dict], config, findings, workdir: str) -> str:
  """Best λ against the peak lr, both relative to the grid's smallest lr, one line per optimizer
  (the optimizers' grids differ, the relative axes put their slopes side by side); dots: seeds."""
  metric = config.metric
  fig, ax = plt.subplots(figsize=(6.8, 4.6), dpi=100)
  hi_rel = 1.0
  for n, (v, r) in enumerate(res.items()):
    a, lrs = r["analysis"][metric], np.asarray(r["lrs"])
    x = lrs / lrs[0]
    hi_rel = max(hi_rel, x[-1])
    best = a["best_log10_wd"]  # (seed, lr)
    first = best[:, 0][np.isfinite(best[:, 0])]
    rel = best - (first.mean() if first.size else 0.0)
    jitter = 1.0 + 0.025 * (n - (len(res) - 1) / 2)  # side by side, not on top of each other
    for i in range(rel.shape[0]):
      ax.scatter(x * jitter, 10.0 ** rel[i], color=study.color(v), s=12, alpha=0.45, lw=0)
    ax.plot(
      x * jitter,
      10.0 ** nan_mean(rel, axis=0),
      color=study.color(v),
      marker="o",
      ms=4,
      label=f"{LABELS[v]}: {_slope_text(findings, v, r, metric)}",
    )
  xs = np.geomspace(1.0, hi_rel, 20)
  ax.plot(xs, 1.0 / xs, color="0.5", ls=":", lw=1.2, label="slope −1 (best λ ∝ 1/α)")
  ax.plot(xs, np.ones_like(xs), color="0.5", ls="--", lw=1.0, label="slope 0 (best λ fixed)")
  ax.plot(xs, xs, color="0.5", ls="-.", lw=1.0, label="slope +1 (best λ ∝ α)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ticks = sorted(
    {float(f"{t:.3g}") for r in res.values() for t in np.asarray(r["lrs"]) / r["lrs"][0]}
  )
  ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
  ax.tick_params(axis="x", which="minor", labelbottom=False)  # the grid's ratios only
  report.plain_log_ticks(ax, "y")
  ax.set(
    title="Best λ (on validation) against the peak lr; dots: seeds",
    xlabel="peak lr α / smallest α of the grid (log scale)",
    ylabel="best λ / mean best λ at the smallest α (log scale)",
  )
  return report.finish(fig, os.path.join(workdir, "best_wd_vs_lr.png"), [ax], fontsize=6)


# ----------------------------------------------------------------------------------------------
# Tables and the study.


def _slopes_table(res: dict[str, dict], config, findings) -> str:
  other = next(m for m in METRICS if m != config.metric)
  header = ["optimizer", "lr grid", "λ grid", "per-seed slopes", "slope, claim, verdict"]
  header += ["best λ at the grid's edge", f"slope on {other.replace('_', ' ')} (no claim)"]
  rows = []
  for v, r in res.items():
    a = r["analysis"][config.metric]
    mean, lo, hi = _interval(r["analysis"][other]["slopes"])
    rows.append(
      [
        LABELS[v],
        ", ".join(f"{x:g}" for x in r["lrs"]),
        ", ".join(f"{x:g}" for x in r["wds"]),
        ", ".join(f"{s:+.2f}" for s in a["slopes"]),
        _slope_text(findings, v, r, config.metric),
        f"{int((~a['interior']).sum())} of {a['interior'].size} (seed, lr)",
        f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]",
      ]
    )
  return study.markdown_table(header, rows)


def _best_table(res: dict[str, dict], metric: str) -> str:
  header = ["optimizer", "α", "best λ per seed (parabola-refined)", "at grid edge"]
  rows = []
  for v, r in res.items():
    a = r["analysis"][metric]
    for k, lr in enumerate(r["lrs"]):
      vals = ", ".join(f"{10.0**b:.3g}" for b in a["best_log10_wd"][:, k])
      edge = int((~a["interior"][:, k]).sum())
      rows.append([LABELS[v], f"{lr:g}", vals, f"{edge}/{a['interior'].shape[0]}"])
  return study.markdown_table(header, rows)


def _selected_table(res: dict[str, dict], values: dict[str, Any], metric: str) -> str:
  header = ["optimizer", "selected α", "selected λ", f"{metric} there", "test accuracy"]
  header.append("test loss")
  rows = []
  for v, r in res.items():
    chosen = r["selected"]
    if chosen is None:
      rows.append([LABELS[v], "none (every configuration diverged somewhere)", "", "", "", ""])
      continue
    rows.append(
      [
        LABELS[v],
        f"{chosen['learning_rate']:g}",
        f"{chosen['weight_decay']:g}",
        study.fmt(values[f"{v}/{metric}@selected"]),
        study.fmt(values[f"{v}/test_accuracy@selected"]),
        study.fmt(values[f"{v}/test_loss@selected"]),
      ]
    )
  return study.markdown_table(header, rows)


def _describe(values):
  def text(c: claims_lib.Claim) -> str:
    m = values[c.measurements[0]]
    if isinstance(m, dict):
      slopes = per_seed_slopes(m)
      return "per-seed slopes " + ", ".join(f"{s:+.2f}" for s in slopes)
    return "; ".join(f"{name}: {study.fmt(values[name])}" for name in c.measurements)

  return text


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  t0 = time.perf_counter()
  study.begin(config, workdir)
  seeds = list(config.seeds)
  res, lines = {}, []
  for v in config.variants:
    rows = run_variant(v, config, workdir)
    lrs = list(config.variants[v].learning_rates)
    wds = list(config.variants[v].weight_decays)
    scores = {m: score_grid(rows, lrs, wds, seeds, m) for m in METRICS}
    diverged = np.zeros((len(wds), len(lrs)), int)
    for r in rows:
      diverged[_index(wds, r["weight_decay"]), _index(lrs, r["learning_rate"])] += r["diverged"]
    res[v] = {
      "lrs": lrs,
      "wds": wds,
      "rows": rows,
      "scores": scores,
      "diverged": diverged == len(seeds),
      "analysis": {m: analyse(scores[m], lrs, wds, seeds) for m in METRICS},
      "selected": protocol.select_best(
        rows,
        by=("learning_rate", "weight_decay"),
        metric=config.metric,
        larger=METRICS[config.metric],
      ),
    }
    for r in rows:
      lines.append(
        {
          "variant": v,
          "optimizer": r["optimizer"],
          "coupling": VARIANTS[v][1].get("coupling", "l2"),
          "learning_rate": r["learning_rate"],
          "weight_decay": r["weight_decay"],
          "seed": r["seed"],
          **{k: r[k] for k in PER_RUN if k in r},
          "train_loss": r["loss"],
          "diverged": r["diverged"],
          "run_dir": os.path.join(v, r["run_dir"]),
        }
      )
    print(f"{v}: {len(rows)} runs done")
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  values = measure(res, config)
  findings = claims_lib.decide(declared, values, _describe(values))
  label = config.metric.replace("_", " ")
  figures = [
    (
      f"lr × λ heat maps of the {label} (mean ± 90% CI over seeds, one shared colour scale)",
      plot_heatmaps(res, config, findings, workdir),
    ),
    (
      "Best λ against the peak lr, relative to the smallest lr",
      plot_best_wd(res, config, findings, workdir),
    ),
  ]
  wall = time.perf_counter() - t0
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
      f"{run_cfg.dataset.validation_fraction:g} of the training data is held out for "
      f"validation. For each optimizer and seed, the best log λ at each α is the argmax over λ "
      f"of the {label}, refined by a parabola through the best cell and its two neighbours in "
      "log λ; each claim is decided on the per-seed least-squares slopes of best log λ on log α "
      "(their mean and (1−2α) t interval; a seed missing a best λ is dropped). The test split "
      "is read once per optimizer, for the (α, λ) whose mean validation metric is best. The "
      "question it answers is the one users ask of torch AdamW, apex and schedule-free AdamW: "
      "when I change the lr, must I change λ too?"
    ),
    tables=[
      ("Slopes of best log λ on log α", _slopes_table(res, config, findings)),
      ("Best λ per lr and seed", _best_table(res, config.metric)),
      (
        f"Selected on validation ({label}), test split read once (mean ± sd over seeds)",
        _selected_table(res, values, config.metric),
      ),
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
      f"Wall time {wall:.0f} s. Per-run records: metrics.jsonl (one line per run); each "
      "optimizer's sweep workdir (results.csv, runs/*/metrics.jsonl) is the sub-directory named "
      "after it."
    ),
  )
  return {"findings": findings, "results": res, "measurements": values, "wall_time_sec": wall}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  runs = sum(
    len(g.learning_rates) * len(g.weight_decays) * len(config.seeds)
    for g in config.variants.values()
  )
  return runs * config.run.steps


if __name__ == "__main__":
  study.main(run, claim_width=100, work=work)
