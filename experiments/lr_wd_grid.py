"""Does the best λ move when the learning rate changes, and does normalisation decide how?

Loshchilov & Hutter's lr × λ heat maps as a factorial: two models (a plain ReLU MLP, and the same
MLP with bias-free Linear → LayerNorm hidden layers, whose kernels are scale-invariant) × four run
sets (Adam+L2, AdamW, SGD+L2, SGDW), each over lr × strength × seed, run by `wd_jax.engine.sweep`
as one
vmapped program per run set. Strength is gridded as τ/T (`wd_jax.study.strength`), so every grid
spans "barely decays" to "decays many times over" at every lr; λ is each optimizer's own. AdamW's
runs are read in both of its units, λ_lr ("lr" coupling) and λ_schedule = α·λ_lr ("schedule").

For every model, optimizer and seed, a 2-D quadratic of the final *validation* accuracy in
(log α, log λ) is fitted over the upper half of the grid (the cells whose seed-mean accuracy is at
least the median); its ridge, the best log λ at each log α, is a line whose slope d log λ*/d log α
is the measurement. Each cell's claim is its mechanism's prediction ± 0.5, decided on the per-seed
slopes. The per-lr argmax of λ (parabola-refined) is reported beside it without a claim. The test
split is read once per (model, run set), for the (lr, λ) whose mean validation accuracy is best.
Writes heatmaps.png, ridge.png, metrics.jsonl, config.json and summary.md.

  python experiments/lr_wd_grid.py --config=experiments/configs/lr_wd_grid.py --workdir=runs/grid
"""

from __future__ import annotations

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
from configs.lr_wd_grid import LABELS, MODELS, PREDICTED_SLOPE, REASONS, VIEWS

from wd_jax import study
from wd_jax.engine import sweep
from wd_jax.engine.runlog import write_atomic
from wd_jax.study import claims as claims_lib
from wd_jax.study import protocol, report, schema, stats, strength
from wd_jax.study.lr_ridge import (
  analyse,
  view_log_lambda,
)

# run set -> (optimizer recipe, its flags). SGD runs use heavy-ball momentum 0.9, as L&H did.
RUN_SETS = {
  "adam_l2": ("adam_l2", {}),
  "adamw": ("adamw", {"coupling": "lr"}),
  "sgd_l2": ("sgd_l2", {"momentum": 0.9}),
  "sgdw": ("sgdw", {"momentum": 0.9, "coupling": "schedule"}),
}
# What multiplies λ in one step (REFERENCES §1): the unit of each view's λ.
WD_UNITS = {
  "adam_l2": "g ← g + λθ, then Adam",
  "adamw": "θ ← θ − α_t λ θ",
  "adamw_schedule": "θ ← θ − (α_t/α) λ θ",
  "sgd_l2": "g ← g + λθ, then momentum",
  "sgdw": "θ ← θ − (α_t/α) λ θ",
}
METRIC_LABEL = "final validation accuracy (fraction)"
SHORT = {
  "adam_l2": "Adam+L2",
  "adamw": "AdamW λ_lr",
  "adamw_schedule": "AdamW λ_sched",
  "sgd_l2": "SGD+L2",
  "sgdw": "SGDW",
}
ALPHA = 0.05  # the descriptive intervals are 90% t
PER_RUN = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")


def _increasing(where: str, value: Any) -> None:
  schema.numbers()(where, value)
  vals = list(value)
  if len(vals) < 2 or sorted(set(vals)) != vals:
    raise ValueError(f"{where} must be >= 2 increasing values > 0, got {vals}.")


def _learning_rates(where: str, value: Any) -> None:
  schema.choices(tuple(RUN_SETS))(where, list(value.keys()) if value else [])
  for k in value:
    _increasing(f"{where}.{k}", value[k])


def _models(where: str, value: Any) -> None:
  schema.choices(tuple(PREDICTED_SLOPE))(where, list(value.keys()) if value else [])
  for m in value:
    schema.run_config()(f"{where}.{m}", value[m])


FIELDS = {
  "views": schema.choices(tuple(VIEWS)),
  "models": _models,
  "learning_rates": _learning_rates,
  "tau_over_T": schema.numbers(),
  "seeds": schema.ints(),
  "metric": schema.choice(("val_accuracy",)),
  "strategy": schema.choice(sweep.STRATEGIES),
}


def _run_sets(config) -> list[str]:
  return list(dict.fromkeys(VIEWS[v] for v in config.views))


def measurement_names(config) -> list[str]:
  """``<model>/<view>/ridge_slope_minus_prediction`` (one value per seed) and the per-seed
  metrics of the selected (lr, λ), ``<model>/<view>/<metric>@selected``."""
  for m in config.models:
    if m not in PREDICTED_SLOPE:
      raise ValueError(f"config.models has {m!r}; valid: {sorted(PREDICTED_SLOPE)}.")
  for s in _run_sets(config):
    if s not in config.learning_rates:
      raise ValueError(f"config.learning_rates has no grid for {s!r} (a view needs its runs).")
  out = []
  for m in config.models:
    for v in config.views:
      out.append(f"{m}/{v}/ridge_slope_minus_prediction")
      out += [f"{m}/{v}/{q}@selected" for q in PER_RUN]
  return out


def _interval(values: Sequence[float]) -> tuple[float, float, float]:
  xs = [s for s in values if math.isfinite(s)]
  if not xs:
    return math.nan, -math.inf, math.inf
  return stats.t_interval(xs, ALPHA)


# ----------------------------------------------------------------------------------------------
# Running the grids.


def grid_points(config, model: str, run_set: str, probe) -> tuple[list[dict], dict, np.ndarray]:
  """The run set's configurations (lr × τ/T × seed as lr, λ, seed), (lr, λ) -> τ/T, and the
  (strength, lr) log10 λ matrix (NaN where Adam+L2 cannot reach the strength at that lr)."""
  recipe, kwargs = RUN_SETS[run_set]
  lrs, taus = list(config.learning_rates[run_set]), sorted(config.tau_over_T, reverse=True)
  log_lam = np.full((len(taus), len(lrs)), np.nan)
  points, tau_of = [], {}
  for k, lr in enumerate(lrs):
    run = config.models[model].copy_and_resolve_references()
    run.optimizer.learning_rate, run.optimizer.kwargs = lr, kwargs
    for j, tau in enumerate(taus):
      try:
        (lam,) = strength.weight_decays(run, recipe, [tau], probe=probe)
      except ValueError:
        continue  # reported in the λ table as "unreachable"
      log_lam[j, k] = math.log10(lam)
      tau_of[(lr, lam)] = tau
      points += [{"learning_rate": lr, "weight_decay": lam, "seed": s} for s in config.seeds]
  return points, tau_of, log_lam


def run_set(config, model: str, name: str, workdir: str, probe) -> dict[str, Any]:
  recipe, kwargs = RUN_SETS[name]
  base = config.models[model].copy_and_resolve_references()
  base.optimizer.name, base.optimizer.kwargs = recipe, kwargs
  points, tau_of, log_lam = grid_points(config, model, name, probe)
  rows = sweep.run_sweep(
    base,
    points,
    os.path.join(workdir, model, name),
    strategy=config.strategy,
    verbose=False,
    select=protocol.selector(by=("learning_rate", "weight_decay"), metric=config.metric),
  )
  lrs, taus = list(config.learning_rates[name]), sorted(config.tau_over_T, reverse=True)
  seeds = list(config.seeds)
  scores = np.full((len(seeds), len(taus), len(lrs)), np.nan)
  diverged = np.zeros((len(taus), len(lrs)), int)
  for r in rows:
    r["tau_over_T"] = tau_of[(r["learning_rate"], r["weight_decay"])]
    j, k = taus.index(r["tau_over_T"]), lrs.index(r["learning_rate"])
    diverged[j, k] += r["diverged"]
    x = r.get(config.metric, math.nan)
    if not r["diverged"] and x is not None and math.isfinite(x):
      scores[seeds.index(r["seed"]), j, k] = float(x)
  return {
    "rows": rows,
    "lrs": lrs,
    "taus": taus,
    "log_lam": log_lam,
    "scores": scores,
    "diverged": diverged == len(seeds),
    "selected": protocol.select_best(
      rows, by=("learning_rate", "weight_decay"), metric=config.metric
    ),
  }


def measure(res: dict[str, dict[str, dict]], config) -> dict[str, Any]:
  """Every measurement of `measurement_names(config)`; also each view's analysis under
  ``res[model][view]``'s ``"analysis"``."""
  out: dict[str, Any] = {}
  for m in config.models:
    for v in config.views:
      r = res[m][VIEWS[v]]
      a = analyse(r["scores"], view_log_lambda(v, r["log_lam"], r["lrs"]), r["lrs"])
      res[m].setdefault("analysis", {})[v] = a
      p = PREDICTED_SLOPE[m][v]
      out[f"{m}/{v}/ridge_slope_minus_prediction"] = [s - p for s in a["slopes"]]
      chosen = r["selected"] or {}
      for q in PER_RUN:
        vals = protocol.per_seed(r["rows"], q, chosen) if chosen else []
        out[f"{m}/{v}/{q}@selected"] = vals or [math.nan] * len(config.seeds)
  return out


# ----------------------------------------------------------------------------------------------
# Figures and tables.


def _finding(findings, name: str):
  return next((f for f in findings if f.claim.measurements == (name,)), None)


def _slope_text(findings, model: str, view: str, res, short: bool = False) -> str:
  """ "ridge slope −0.9 [90% CI −1.2, −0.6]; predicted −1: supported" (`short`: for titles)."""
  p = PREDICTED_SLOPE[model][view]
  f = _finding(findings, f"{model}/{view}/ridge_slope_minus_prediction")
  if f is None:
    mean, lo, hi = _interval(res[model]["analysis"][view]["slopes"])
    verdict = "no claim"
  else:
    d = f.decision
    mean, lo, hi, verdict = d.effect + p, d.ci[0] + p, d.ci[1] + p, d.verdict
  if short:
    return f"slope {mean:+.2f} [{lo:+.2f}, {hi:+.2f}] vs {p:+g}: {verdict}"
  return f"ridge slope {mean:+.2f} [90% CI {lo:+.2f}, {hi:+.2f}]; predicted {p:+g}: {verdict}"


def _cell_text(v: float) -> str:
  return f"{v:.3f}"[1:] if 0 < v < 1 else f"{v:.2f}"


def plot_heatmaps(res, config, findings, workdir: str) -> str:
  """Rows: models; columns: run sets. Each cell: seed-mean validation accuracy and its 90% CI over
  (lr, strength T/τ); one shared colour scale at least a typical CI wide; the selected cell
  outlined; the cells the ridge is fitted on marked with a dot."""
  models, sets = list(config.models), _run_sets(config)
  means, halves = {}, {}
  for m in models:
    for s in sets:
      sc = res[m][s]["scores"]
      cells = [
        [report.mean_and_ci(sc[:, j, k]) for k in range(sc.shape[2])] for j in range(sc.shape[1])
      ]
      means[m, s] = np.array([[c[0] for c in row] for row in cells])
      halves[m, s] = np.array([[c[1] for c in row] for row in cells])
  norm, flat = report.heatmap_scale(list(means.values()), list(halves.values()))
  cmap = plt.get_cmap("viridis")
  fig, axes = plt.subplots(
    len(models),
    len(sets),
    figsize=(1.2 + 3.7 * len(sets), 0.6 + 3.9 * len(models)),
    dpi=100,
    squeeze=False,
    layout="constrained",
  )
  mesh = None
  for row, m in zip(axes, models):
    for ax, s in zip(row, sets):
      r = res[m][s]
      ys = [1.0 / t for t in r["taus"]]  # decays per run, increasing
      outline = None
      if r["selected"] is not None:
        t = protocol.rows_of(r["rows"], r["selected"])[0]["tau_over_T"]
        outline = (r["taus"].index(t), r["lrs"].index(r["selected"]["learning_rate"]))
      mesh, _ = report.heatmap_panel(
        ax,
        r["lrs"],
        ys,
        means[m, s],
        norm=norm,
        cmap=cmap,
        half=halves[m, s],
        dead=r["diverged"],
        outline=outline,
        fmt=_cell_text,
        text_at=0.62,
      )
      region = res[m]["analysis"][s]["region"]
      jj, kk = np.nonzero(region)
      ax.scatter([r["lrs"][k] for k in kk], [ys[j] * 0.8 for j in jj], s=6, color="white", lw=0)
      views = [v for v in config.views if VIEWS[v] == s]
      text = "\n".join(f"{SHORT[v]}: {_slope_text(findings, m, v, res, short=True)}" for v in views)
      ax.set_title(f"{m} · {text}", fontsize=7)
      ax.set_xlabel("peak learning rate α (log scale)", fontsize=8)
      ax.set_ylabel("strength T/τ (decay timescales per run)", fontsize=8)
  cbar = fig.colorbar(mesh, ax=list(axes.ravel()), shrink=0.9, pad=0.02)
  cbar.set_label(METRIC_LABEL, fontsize=9)
  run = config.models[models[0]]
  fig.suptitle(
    f"lr × strength grids: {METRIC_LABEL}, mean ± 90% CI of {len(config.seeds)} seeds per cell "
    f"— {run.dataset.name}, {run.steps} steps, warmup + cosine; rows: "
    + "; ".join(f"{m} = {MODELS[m]}" for m in models)
    + "\nred box: the (lr, λ) selected on validation (test split read once); white dots: the "
    "cells the ridge is fitted on" + (f"\n{flat}" if flat else ""),
    fontsize=8,
  )
  path = os.path.join(workdir, "heatmaps.png")
  report.save_png(fig, path)
  return path


def plot_ridges(res, config, findings, workdir: str) -> str:
  """Per model: the per-seed ridge slopes of every view against its prediction."""
  models, views = list(config.models), list(config.views)
  fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.6), dpi=100, squeeze=False)
  for ax, m in zip(axes[0], models):
    for i, v in enumerate(views):
      slopes = res[m]["analysis"][v]["slopes"]
      finite = [s for s in slopes if math.isfinite(s)]
      ax.scatter([i] * len(finite), finite, color=study.color(v), s=14, alpha=0.6, lw=0)
      mean, lo, hi = _interval(slopes)
      if math.isfinite(mean):
        ax.errorbar(
          [i + 0.15],
          [mean],
          yerr=[[mean - lo], [hi - mean]] if math.isfinite(lo) else None,
          color=study.color(v),
          marker="D",
          ms=5,
          capsize=3,
        )
      p = PREDICTED_SLOPE[m][v]
      ax.fill_between([i - 0.3, i + 0.4], p - 0.5, p + 0.5, color="0.85", lw=0, zorder=0)
      ax.plot([i - 0.3, i + 0.4], [p, p], color="0.4", lw=1, ls="--", zorder=0)
    ax.set_xticks(range(len(views)), [LABELS[v].replace(", ", ",\n") for v in views], fontsize=6.5)
    ax.set(title=f"{m}: {MODELS[m]}", ylabel="ridge slope d log λ* / d log α")
    ax.title.set_fontsize(8)
  fig.suptitle(
    "Ridge slopes per seed (dots), mean and 90% CI (diamonds); grey: predicted ± 0.5", fontsize=9
  )
  return report.finish(fig, os.path.join(workdir, "ridge.png"), [], legend=False)


def _slopes_table(res, config, findings) -> str:
  header = [
    "model",
    "optimizer (λ unit)",
    "mechanism",
    "per-seed ridge slopes",
    "slope, prediction, verdict",
  ]
  header += ["per-lr argmax slope (no claim)", "best λ at the grid's edge"]
  rows = []
  for m in config.models:
    for v in config.views:
      a = res[m]["analysis"][v]
      mean, lo, hi = _interval(a["argmax_slopes"])
      rows.append(
        [
          m,
          f"{LABELS[v]} ({WD_UNITS[v]})",
          REASONS[m].split(":")[0],
          ", ".join(f"{s:+.2f}" for s in a["slopes"]),
          _slope_text(findings, m, v, res),
          f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]",
          f"{int((~a['interior']).sum())} of {a['interior'].size} (seed, lr)",
        ]
      )
  return study.markdown_table(header, rows)


def _lambda_table(res, config) -> str:
  header = [
    "model",
    "run set",
    "τ/T",
    *[f"α={x:g}" for x in config.learning_rates[_run_sets(config)[0]]],
  ]
  rows = []
  for m in config.models:
    for s in _run_sets(config):
      r = res[m][s]
      for j, t in enumerate(r["taus"]):
        lams = [
          "unreachable" if not math.isfinite(v) else f"{10.0**v:.3g}" for v in r["log_lam"][j]
        ]
        rows.append([m, s, f"{t:g}", *lams])
  grids = "; ".join(
    f"{s}: " + ", ".join(f"{x:g}" for x in config.learning_rates[s]) for s in _run_sets(config)
  )
  return study.markdown_table(header, rows) + (
    f"\n\nColumns are each run set's own lrs in order ({grids}). Unreachable: Adam+L2 cannot "
    "shrink the weights that fast at that lr."
  )


def _selected_table(res, values, config) -> str:
  header = ["model", "optimizer", "selected α", "selected τ/T (λ)", "val accuracy", "test accuracy"]
  rows = []
  for m in config.models:
    for s in _run_sets(config):
      r = res[m][s]
      chosen = r["selected"]
      if chosen is None:
        rows.append([m, s, "none (every configuration diverged somewhere)", "", "", ""])
        continue
      t = protocol.rows_of(r["rows"], chosen)[0]["tau_over_T"]
      rows.append(
        [
          m,
          s,
          f"{chosen['learning_rate']:g}",
          f"{t:g} ({chosen['weight_decay']:.3g})",
          study.fmt(values[f"{m}/{s}/val_accuracy@selected"]),
          study.fmt(values[f"{m}/{s}/test_accuracy@selected"]),
        ]
      )
  return study.markdown_table(header, rows)


def _describe(values):
  def text(c: claims_lib.Claim) -> str:
    return "; ".join(f"{name}: {study.fmt(values[name])}" for name in c.measurements)

  return text


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  t0 = time.perf_counter()
  probes = {
    m: strength.initial_grad_sq(config.models[m]) if "adam_l2" in _run_sets(config) else None
    for m in config.models
  }
  study.begin(config, workdir)
  res: dict[str, dict] = {m: {} for m in config.models}
  lines = []
  for m in config.models:
    for s in _run_sets(config):
      r = res[m][s] = run_set(config, m, s, workdir, probes[m])
      for row in r["rows"]:
        lines.append(
          {
            "model": m,
            "run_set": s,
            "learning_rate": row["learning_rate"],
            "tau_over_T": row["tau_over_T"],
            "weight_decay": row["weight_decay"],
            "seed": row["seed"],
            **{k: row[k] for k in PER_RUN if k in row},
            "train_loss": row["loss"],
            "diverged": row["diverged"],
            "run_dir": os.path.join(m, s, row["run_dir"]),
          }
        )
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  values = measure(res, config)
  findings = claims_lib.decide(declared, values, _describe(values))
  figures = [
    (
      "lr × strength heat maps of the validation accuracy (mean ± 90% CI over seeds)",
      plot_heatmaps(res, config, findings, workdir),
    ),
    (
      "Ridge slopes per seed against each cell's prediction",
      plot_ridges(res, config, findings, workdir),
    ),
  ]
  wall = time.perf_counter() - t0
  run0 = config.models[next(iter(config.models))]
  study.write_summary(
    workdir,
    "Does the best λ move when the learning rate changes? (lr × strength factorial)",
    findings,
    intro=(
      f"{run0.dataset.name}, models {', '.join(f'{m} ({MODELS[m]})' for m in config.models)}; "
      f"{run0.steps} steps of batch {run0.batch_size}, warmup {run0.optimizer.warmup_fraction:g} "
      "of the steps then cosine to 0 (the swept α is the peak); decay mask: kernels only; seeds "
      f"{list(config.seeds)}; {run0.dataset.validation_fraction:g} of the training data held out "
      "for validation. Strength τ/T = "
      + ", ".join(f"{t:g}" for t in sorted(config.tau_over_T, reverse=True))
      + " at every lr, converted to each optimizer's λ (wd_jax.study.strength). For each model, "
      "view and seed, a quadratic of the validation accuracy in (log α, log λ) is fitted over the "
      "cells whose seed-mean accuracy is at least the median; the claim is decided on the "
      "per-seed ridge slopes minus the cell's prediction (equivalence within ±0.5, TOST). AdamW's "
      '"lr" and "schedule" views are one run set, so their slopes differ by exactly 1 by '
      "construction; their two verdicts are one measurement read against two predictions."
    ),
    tables=[
      (
        "Ridge slopes of best log λ on log α, per cell of the factorial",
        _slopes_table(res, config, findings),
      ),
      ("Each run set's λ at each strength and lr", _lambda_table(res, config)),
      (
        "Selected on validation, test split read once (mean ± sd over seeds)",
        _selected_table(res, values, config),
      ),
    ],
    figures=figures,
    footer=(
      f"Wall time {wall:.0f} s. Per-run records: metrics.jsonl; each run set's sweep workdir "
      "is <model>/<run set>/."
    ),
  )
  return {"findings": findings, "results": res, "measurements": values, "wall_time_sec": wall}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  runs = sum(
    len(config.learning_rates[s]) * len(config.tau_over_T) * len(config.seeds)
    for s in _run_sets(config)
  )
  return runs * sum(config.models[m].steps for m in config.models)


if __name__ == "__main__":
  study.main(run, claim_width=100, work=work)
