"""Rotational equilibrium: does each scale-invariant layer settle where the theory says?

For AdamW and SGD with momentum at several (α, λ) with a constant learning rate, the measured
angular update per step and the norm of every scale-invariant kernel (the BatchNorm ResNet's
convolutions) are compared with the random-walk predictions of Kosson, Messmer & Jaggi (2023;
REFERENCES §4), averaged over the last part of training; the claims (declared in the config) read
log(measured/predicted), averaged over layers and settings, one value per seed. Adam+L2, which
has no prediction, is compared with AdamW by how much its angular update differs across layers
(paired by seed). The settings are declared in advance and nothing is selected, so the runs are
evaluated on a validation split only; the test split is not read. Writes figures, metrics.jsonl
(one line per run) and summary.md with the verdicts.

  python experiments/equilibrium.py --config=experiments/configs/equilibrium.py \
      --workdir=runs/equilibrium
"""

from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from wd_jax import study
from wd_jax.engine import sweep
from wd_jax.engine.loop import PREDICTED as PREDICTED_RECIPES
from wd_jax.engine.runlog import read_metrics, write_atomic
from wd_jax.optimizers import OPTIMIZERS
from wd_jax.study import claims as claims_lib
from wd_jax.study import report, schema

LABELS = {"adamw": "AdamW", "sgdm": "SGD+momentum (L2)", "adam_l2": "Adam+L2"}
# Colours of wd_jax.study: the variant names it knows for these recipes.
COLOR_KEYS = {"adamw": "adamw", "sgdm": "sgd_l2", "adam_l2": "adam_l2"}
MARKERS = ("o", "s", "^", "D", "v", "P")
RATIOS = ("angle", "norm")  # measured / predicted angular update, and norm


def _label(variant: str) -> str:
  return LABELS.get(variant, variant)


def _color(variant: str) -> str:
  return study.color(COLOR_KEYS.get(variant, variant))


def _optimizers_rule(where: str, value: Any) -> None:
  if not value or not len(value):
    raise ValueError(f"{where} is empty.")
  for variant, spec in dict(value).items():
    if spec.get("name") not in OPTIMIZERS:
      raise ValueError(
        f"{where}.{variant}.name must be one of {sorted(OPTIMIZERS)}, got {spec.get('name')!r}."
      )


def _settings_rule(where: str, value: Any) -> None:
  if isinstance(value, (str, bytes)) or not value:
    raise ValueError(f"{where} must be a non-empty list of (variant, α, λ), got {value!r}.")
  for setting in value:
    if isinstance(setting, (str, bytes)) or len(setting) != 3:
      raise ValueError(f"{where} entries are (variant, α, λ), got {setting!r}.")
    _, lr, wd = setting
    if not (lr > 0 and wd > 0):
      raise ValueError(f"{where} needs α > 0 and λ > 0, got {setting!r}.")


def _run_rule(where: str, value: Any) -> None:
  schema.run_config()(where, value)
  o = value.optimizer
  if o.lr_schedule != "constant":
    raise ValueError(
      f"{where}.optimizer.lr_schedule must be 'constant' (an equilibrium needs a fixed α), got "
      f"{o.lr_schedule!r}."
    )
  if o.wd_schedule != "constant":
    raise ValueError(f"{where}.optimizer.wd_schedule must be 'constant', got {o.wd_schedule!r}.")
  if not value.per_leaf_diagnostics or not value.diagnostics_every:
    raise ValueError(
      f"{where}.per_leaf_diagnostics must be True and diagnostics_every > 0: the study reads "
      "the per-layer angular updates and norms."
    )


FIELDS = {
  "optimizers": _optimizers_rule,
  "settings": _settings_rule,
  "seeds": schema.ints(),
  "strategy": schema.choice(sweep.STRATEGIES),
  "last_fraction": schema.number(low=0.0, open_low=True, high=1.0),
  "run": _run_rule,
}


def _variants(config) -> list[str]:
  """The variants of `config.settings` in order; each must be one of `config.optimizers`."""
  out = []
  for variant, _, _ in config.settings:
    if variant not in config.optimizers:
      raise ValueError(
        f"config.settings has variant {variant!r}; valid: {sorted(config.optimizers)}."
      )
    if variant not in out:
      out.append(variant)
  return out


def predicted(config, variant: str) -> bool:
  """Whether the variant's recipe has a closed-form equilibrium (`wd_jax.engine.loop.PREDICTED`)."""
  return config.optimizers[variant].name in PREDICTED_RECIPES


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  out = []
  for v in _variants(config):
    if predicted(config, v):
      out += [f"{v}/log_{r}_ratio" for r in RATIOS]
    out.append(f"{v}/angle_cv")
  return out


def short_name(path: str) -> str:
  """``blocks/1/conv_bn2/conv/kernel`` -> ``b1.conv2``; ``stem/conv/kernel`` -> ``stem``."""
  p = path.removesuffix("/conv/kernel").removesuffix("/kernel")
  p = p.replace("blocks/", "b").replace("conv_bn", "conv").replace("shortcut", "short")
  return p.replace("/", ".")


def _layer_order(path: str) -> tuple:
  return (not path.startswith("stem"), path)


def _settings_by_variant(config) -> dict[str, list[tuple[float, float]]]:
  out: dict[str, list[tuple[float, float]]] = {}
  for variant, lr, wd in config.settings:
    out.setdefault(variant, []).append((float(lr), float(wd)))
  return out


def run_variants(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[dict]]:
  """variant -> rows of `sweep.run_sweep`, each with its metric records under "records"."""
  out = {}
  for variant, pairs in _settings_by_variant(config).items():
    spec = config.optimizers[variant]
    base = config.run.copy_and_resolve_references()
    base.optimizer.name = spec.name
    base.optimizer.kwargs = dict(spec.kwargs)
    grid = [
      {"learning_rate": lr, "weight_decay": wd, "seed": s} for lr, wd in pairs for s in config.seeds
    ]
    vdir = os.path.join(workdir, variant)
    rows = sweep.run_sweep(base, grid, vdir, strategy=config.strategy, verbose=False)
    for r in rows:
      r["records"] = read_metrics(os.path.join(vdir, r["run_dir"], "metrics.jsonl"))
    out[variant] = rows
    print(f"equilibrium/{variant}: {len(rows)} runs done")
  return out


def shrink_per_step(config, variant: str, lr: float, wd: float) -> float:
  """The per-step factor weight decay alone shrinks w by (NaN where it depends on v̂).

  AdamW (torch convention): αλ. Coupled L2 through momentum μ (sgd_l2): αλ/(1−μ) once the
  buffer has settled. Adam+L2: λθ is divided by √v̂, so no fixed rate.
  """
  spec = config.optimizers[variant]
  kwargs = dict(spec.kwargs)
  if spec.name == "adamw" and kwargs.get("coupling", "lr") == "lr":
    return lr * wd
  if spec.name in ("sgd_l2", "sgdw") and kwargs.get("coupling", "lr") == "lr":
    return lr * wd / (1 - kwargs.get("momentum", 0.0))
  return math.nan


def layer_stats(
  row: dict, steps: int, last_fraction: float, shrink: float = math.nan
) -> dict[str, dict[str, float]]:
  """Per scale-invariant layer: measured and predicted angle and norm over the last part.

  Also ``free_decay_share``: the share of the window's logging intervals in which the layer's
  norm fell at ≥ 75% of the rate weight decay alone gives (`shrink` per step), i.e. the
  gradient was too small to push back — which the random-walk model rules out.
  """
  start = steps * (1 - last_fraction)
  recs = [r for r in row["records"] if r["step"] > start and any("/" in k for k in r)]
  # train logs grad_norm_unit/<path> for exactly the scale-invariant leaves.
  paths = sorted(
    {k.split("/", 1)[1] for rec in recs for k in rec if k.startswith("grad_norm_unit/")},
    key=_layer_order,
  )
  out = {}
  for p in paths:

    def mean(key, p=p):
      xs = [rec[f"{key}/{p}"] for rec in recs if f"{key}/{p}" in rec]
      xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
      return float(np.mean(xs)) if xs else math.nan

    s = {
      "angular_update": mean("angular_update"),
      "pred_angular_update": mean("pred_angular_update"),
      "norm": mean("param_norm"),
      "pred_norm": mean("pred_norm"),
    }
    s["angle_ratio"] = s["angular_update"] / s["pred_angular_update"]
    s["norm_ratio"] = s["norm"] / s["pred_norm"]
    pts = [(rec["step"], rec[f"param_norm/{p}"]) for rec in recs if f"param_norm/{p}" in rec]
    free = [
      math.log(n1 / n0) <= 0.75 * (t1 - t0) * math.log1p(-shrink)
      for (t0, n0), (t1, n1) in itertools.pairwise(pts)
      if n0 > 0 and n1 > 0
    ]
    s["free_decay_share"] = float(np.mean(free)) if free and shrink < 1 else math.nan
    out[p] = s
  return out


def _cv(xs) -> float:
  """Coefficient of variation (sd / mean) of the finite values."""
  xs = np.asarray([x for x in xs if math.isfinite(x)], np.float64)
  return float(xs.std(ddof=1) / xs.mean()) if xs.size > 1 and xs.mean() > 0 else math.nan


def _mean_log(ratios) -> float:
  """Mean of log(ratio) over layers; NaN if any layer's ratio is missing or not positive."""
  xs = np.asarray(list(ratios), np.float64)
  if xs.size == 0 or not np.all(np.isfinite(xs) & (xs > 0)):
    return math.nan
  return float(np.mean(np.log(xs)))


def summarize(res: dict[str, list[dict]], config) -> dict[tuple, dict[int, dict]]:
  """(variant, α, λ) -> seed -> {"layers": layer_stats, "val_accuracy", ...}."""
  out: dict[tuple, dict[int, dict]] = {}
  for variant, rows in res.items():
    for r in sorted(rows, key=lambda r: r["seed"]):
      key = (variant, float(r["learning_rate"]), float(r["weight_decay"]))
      if r["diverged"]:
        out.setdefault(key, {})[r["seed"]] = {"layers": {}, "diverged": True}
        continue
      shrink = shrink_per_step(config, *key)
      layers = layer_stats(r, config.run.steps, config.last_fraction, shrink)
      angles = [s["angular_update"] for s in layers.values()]
      start = config.run.steps * (1 - config.last_fraction)
      losses = [rec["loss"] for rec in r["records"] if rec["step"] > start and "loss" in rec]
      free = [s["free_decay_share"] for s in layers.values()]
      has_pred = predicted(config, variant)
      out.setdefault(key, {})[r["seed"]] = {
        "layers": layers,
        "diverged": False,
        "val_accuracy": r["val_accuracy"],
        "window_train_loss": float(np.mean(losses)) if losses else math.nan,
        "free_decay_share": float(np.nanmean(free)) if np.isfinite(free).any() else math.nan,
        "angle_cv": _cv(angles),
        "mean_angle": float(np.nanmean(angles)) if angles else math.nan,
        **{
          f"mean_log_{q}_ratio": _mean_log(s[f"{q}_ratio"] for s in layers.values())
          if has_pred
          else math.nan
          for q in RATIOS
        },
      }
  return out


def pooled(summ, variant: str, field: str, seeds) -> list[float]:
  """One value per seed (in `seeds` order): `field` averaged over the variant's settings.

  A seed whose run diverged in any setting gets NaN (the statistics then drop its pair), so
  every seed's value averages the same settings."""
  by_seed: dict[int, list[float]] = {s: [] for s in seeds}
  for (v, _, _), per_seed in summ.items():
    if v == variant:
      for s in seeds:
        by_seed[s].append(per_seed.get(s, {}).get(field, math.nan))
  return [float(np.mean(x)) if x else math.nan for x in by_seed.values()]


def measure(summ, config) -> dict[str, list[float]]:
  """The study's measurements (`measurement_names`), one value per seed in seed order."""
  seeds = sorted(config.seeds)
  out = {}
  for v in _variants(config):
    if predicted(config, v):
      for q in RATIOS:
        out[f"{v}/log_{q}_ratio"] = pooled(summ, v, f"mean_log_{q}_ratio", seeds)
    out[f"{v}/angle_cv"] = pooled(summ, v, "angle_cv", seeds)
  return out


def _layer_values(summ, key, field) -> dict[str, list[float]]:
  """layer -> per-seed values of `field` for one setting."""
  out: dict[str, list[float]] = {}
  for s in summ[key].values():
    for p, st in s["layers"].items():
      out.setdefault(p, []).append(st[field])
  return out


def _setting_label(key) -> str:
  v, lr, wd = key
  return f"{_label(v)} α={lr:g} λ={wd:g}"


def _describe(summ, values, config):
  """What each claim's measurement was, in words (for the summary)."""

  def text(c: claims_lib.Claim) -> str:
    parts = []
    for m in c.measurements:
      v, q = m.split("/", 1)
      if q.startswith("log_"):
        field = q.removeprefix("log_")  # angle_ratio / norm_ratio
        per_setting, layer_means = [], []
        for k in (k for k in summ if k[0] == v):
          means = [study.mean_spread(x)[0] for x in _layer_values(summ, k, field).values()]
          layer_means += means
          geo = math.exp(_mean_log(means)) if means else math.nan
          per_setting.append(f"α={k[1]:g} λ={k[2]:g}: {geo:.3f}")
        ratio = [math.exp(x) for x in values[m]]
        lo, hi = (min(layer_means), max(layer_means)) if layer_means else (math.nan,) * 2
        parts.append(
          f"{m} per seed: {study.fmt(values[m])}, i.e. measured/predicted (geometric mean over "
          f"layers and settings) {study.fmt(ratio)}; per setting: {'; '.join(per_setting)}; "
          f"per-layer means range {lo:.3f}–{hi:.3f}"
        )
      else:
        parts.append(f"{m}: {study.fmt(values[m])}")
    if any(m.endswith("/angle_cv") for m in c.measurements):
      parts.append(
        f"CV = sd/mean over layers of the angular update over the last "
        f"{config.last_fraction:.2g} of training, averaged over settings per seed"
      )
    return "; ".join(parts)

  return text


def _ratio_table(summ, field: str, keys) -> str:
  layers = sorted(
    {p for k in keys for s in summ[k].values() for p in s["layers"]}, key=_layer_order
  )
  rows = []
  for k in keys:
    lv = _layer_values(summ, k, field)
    cells = [study.fmt(lv.get(p, []), 2).split(" (n=")[0] for p in layers]
    geo = math.exp(_mean_log(study.mean_spread(x)[0] for x in lv.values())) if lv else math.nan
    rows.append([_label(k[0]), f"{k[1]:g}", f"{k[2]:g}", *cells, f"{geo:.3f}"])
  return study.markdown_table(
    ["optimizer", "α", "λ", *[short_name(p) for p in layers], "geometric mean over layers"], rows
  )


def _spread_table(summ) -> str:
  rows = []
  for k, seeds in summ.items():
    pred = [st["pred_angular_update"] for s in seeds.values() for st in s["layers"].values()] or [
      math.nan
    ]
    col = lambda f, seeds=seeds: [s.get(f, math.nan) for s in seeds.values()]
    rows.append(
      [
        _label(k[0]),
        f"{k[1]:g}",
        f"{k[2]:g}",
        study.fmt(col("mean_angle"), 4),
        "—" if not np.isfinite(pred).any() else f"{np.nanmean(pred):.4f}",
        study.fmt(col("angle_cv"), 3),
        "—"
        if not np.isfinite(col("free_decay_share")).any()
        else study.fmt(col("free_decay_share"), 2),
        study.fmt(col("window_train_loss"), 4),
        study.fmt(col("val_accuracy"), 3),
      ]
    )
  return study.markdown_table(
    [
      "optimizer",
      "α",
      "λ",
      "angular update, mean over layers (rad/step)",
      "predicted (rad/step)",
      "CV across layers",
      "free-decay share",
      "train loss (window)",
      "validation accuracy",
    ],
    rows,
  )


def _footer(summ, keys) -> str:
  """What the free-decay share says about the model's assumption, from the measurements."""
  shares = {
    k: study.mean_spread([s.get("free_decay_share", math.nan) for s in summ[k].values()])[0]
    for k in keys
  }
  free = [k for k, x in shares.items() if x > 0.5]
  text = (
    "**Free-decay share**: share of the averaging window's logging intervals in which a "
    "kernel's norm fell at ≥ 75% of the rate weight decay alone gives (αλ per step for AdamW, "
    "αλ/(1−μ) for SGD+momentum), averaged over layers. In the random-walk equilibrium the "
    "gradient pushes the norm back every step, so this share should be near 0."
  )
  if free:
    names = ", ".join(_setting_label(k) for k in free)
    text += (
      f" It exceeds 0.5 in {len(free)} of {len(keys)} settings ({names}): there, for most of "
      "the window, the gradient was too small to balance weight decay; the norms decay freely "
      "until a loss spike pushes them back up (the saw-tooth in the norm figure), a regime the "
      "random-walk model does not describe."
    )
  return text


def plot_angle_scatter(summ, keys, band: float | None, workdir: str) -> tuple[str, str]:
  fig, ax = plt.subplots(figsize=(5.5, 4.4), dpi=100)
  lo, hi = math.inf, 0.0
  counters: dict[str, int] = {}
  for k in keys:
    v = k[0]
    i = counters[v] = counters.get(v, -1) + 1
    meas = _layer_values(summ, k, "angular_update")
    pred = _layer_values(summ, k, "pred_angular_update")
    xs = [study.mean_spread(pred[p])[0] for p in meas]
    ys = [study.mean_spread(meas[p])[0] for p in meas]
    ax.scatter(
      xs,
      ys,
      color=_color(v),
      marker=MARKERS[i % len(MARKERS)],
      s=26,
      alpha=0.8,
      label=_setting_label(k),
    )
    finite = [z for z in xs + ys if math.isfinite(z) and z > 0]
    if finite:
      lo, hi = min(lo, *finite), max(hi, *finite)
  if hi > 0:
    line = np.array([lo / 1.5, hi * 1.5])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    if band:
      f = math.exp(band)
      ax.plot(line, line / f, "k:", lw=0.8, label=f"y = x/{f:.3g}, {f:.3g}x (claims' margin)")
      ax.plot(line, line * f, "k:", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  report.plain_log_ticks(ax, "x")
  report.plain_log_ticks(ax, "y")
  ax.set(
    title="Angular update per scale-invariant layer",
    xlabel="predicted angular update (rad/step)",
    ylabel="measured angular update (rad/step)",
  )
  ax.legend(fontsize=6.5, loc="upper left")
  path = report.finish(fig, os.path.join(workdir, "angular_update_scatter.png"), [ax], legend=False)
  return (
    "Measured vs predicted angular update, one point per layer and setting (mean over the last "
    "part of training and over seeds); dotted: the equivalence margin the claims declare",
    path,
  )


def plot_norms(res, summ, keys, config, workdir: str) -> tuple[str, str] | None:
  by_variant: dict[str, list[tuple]] = {}
  for k in keys:
    by_variant.setdefault(k[0], []).append(k)
  if not by_variant:
    return None
  nrows, ncols = len(by_variant), max(len(ks) for ks in by_variant.values())
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(max(3.4 * ncols, 7.0), 2.8 * nrows), dpi=90, squeeze=False, sharex=True
  )
  start = config.run.steps * (1 - config.last_fraction)
  cmap = plt.get_cmap("viridis")
  used = []
  for i, (v, ks) in enumerate(by_variant.items()):
    for j in range(ncols):
      ax = axes[i][j]
      if j >= len(ks):
        ax.axis("off")
        continue
      used.append(ax)
      _, lr, wd = ks[j]
      rows = [
        r
        for r in res[v]
        if math.isclose(r["learning_rate"], lr) and math.isclose(r["weight_decay"], wd)
      ]
      layers = sorted({p for s in summ[ks[j]].values() for p in s["layers"]}, key=_layer_order)
      first = i == 0 and j == 0  # the one legend: layer colours, measured vs predicted
      for li, p in enumerate(layers):
        c = cmap(li / max(len(layers) - 1, 1) * 0.9)
        steps, meas = report.seed_series(rows, f"param_norm/{p}")
        if steps.size:
          ax.plot(steps, meas.mean(0), color=c, lw=1.4, label=short_name(p) if first else None)
        steps, pred = report.seed_series(rows, f"pred_norm/{p}")
        if steps.size:
          ax.plot(steps, pred.mean(0), color=c, lw=1.0, ls="--")
      if first:
        ax.plot([], [], color="k", lw=1.4, label="measured")
        ax.plot([], [], color="k", lw=1.0, ls="--", label="predicted")
      ax.axvspan(start, config.run.steps, color="0.85", alpha=0.5, lw=0)
      ax.set_yscale("log")
      report.plain_log_ticks(ax, "y")
      ax.set_title(f"{_label(v)}: α={lr:g}, λ={wd:g}", fontsize=9, color=_color(v))
      ax.tick_params(labelsize=7)
      if j == 0:
        ax.set_ylabel("‖w‖₂ of the layer (log)", fontsize=8)
      if i == nrows - 1:
        ax.set_xlabel("training step", fontsize=8)
  fig.suptitle("Layer norms vs the equilibrium prediction (grey: averaging window)", fontsize=10)
  path = report.finish(fig, os.path.join(workdir, "norm_trajectories.png"), used, fontsize=6)
  return (
    "Norm of each scale-invariant kernel over training (solid, mean over seeds) and the "
    "predicted equilibrium norm (dashed), per optimizer and (α, λ)",
    path,
  )


def plot_layer_angles(summ, workdir: str) -> tuple[str, str]:
  fig, ax = plt.subplots(figsize=(6.6, 3.8), dpi=100)
  layers = sorted(
    {p for seeds in summ.values() for s in seeds.values() for p in s["layers"]}, key=_layer_order
  )
  x = np.arange(len(layers), dtype=float)
  counters: dict[str, int] = {}
  for n, k in enumerate(summ):
    v = k[0]
    i = counters[v] = counters.get(v, -1) + 1
    lv = _layer_values(summ, k, "angular_update")
    shift = 0.05 * (n - (len(summ) - 1) / 2)  # keep the settings' error bars apart
    report.ci_errorbar(
      ax,
      x + shift,
      [lv.get(p, []) for p in layers],
      color=_color(v),
      marker=MARKERS[i % len(MARKERS)],
      ms=4,
      lw=1.2,
      ls=("-", "--", ":", "-.")[i % 4],
      label=_setting_label(k),
    )
  ax.set_xticks(x, [short_name(p) for p in layers], fontsize=8)
  ax.set_yscale("log")
  report.plain_log_ticks(ax, "y")
  ax.set(
    title="Measured angular update per layer (averaging window)",
    xlabel="scale-invariant layer (input → output)",
    ylabel="angular update (rad/step, log)",
  )
  ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
  path = report.finish(
    fig, os.path.join(workdir, "angular_update_per_layer.png"), [ax], legend=False
  )
  return (
    "Measured angular update of every scale-invariant layer per optimizer and (α, λ) (mean and "
    "90% CI over seeds of the mean over the last part of training): flat lines mean one rate "
    "for all layers",
    path,
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  study.begin(config, workdir)
  res = run_variants(config, workdir)
  return write_report(config, workdir, res, declared)


def write_report(config, workdir: str, res: dict[str, list[dict]], declared) -> dict[str, Any]:
  """metrics.jsonl, the figures and summary.md from the runs of `run_variants`."""
  summ = summarize(res, config)
  lines = []
  for (v, lr, wd), seeds in summ.items():
    for seed, s in seeds.items():
      lines.append(
        {
          "variant": v,
          "optimizer": config.optimizers[v].name,
          "learning_rate": lr,
          "weight_decay": wd,
          "seed": seed,
          **{k: x for k, x in s.items() if k != "layers"},
          "layers": s["layers"],
        }
      )
  write_atomic(
    os.path.join(workdir, "metrics.jsonl"),
    "".join(json.dumps(x, default=float) + "\n" for x in lines),
  )
  values = measure(summ, config)
  findings = claims_lib.decide(declared, values, _describe(summ, values, config))
  keys = [k for k in summ if predicted(config, k[0])]
  margins = [c.test["margin"] for c in declared if c.comparison == "equivalent"]
  figures = [plot_angle_scatter(summ, keys, max(margins, default=None), workdir)]
  norm_fig = plot_norms(res, summ, keys, config, workdir)
  if norm_fig:
    figures.append(norm_fig)
  figures.append(plot_layer_angles(summ, workdir))
  rc = config.run
  window = round(rc.steps * config.last_fraction)
  tables = [
    (
      "Measured / predicted angular update per layer (mean ± sd over seeds)",
      _ratio_table(summ, "angle_ratio", keys),
    ),
    (
      "Measured / predicted norm per layer (mean ± sd over seeds)",
      _ratio_table(summ, "norm_ratio", keys),
    ),
    ("Angular update across layers, every optimizer (mean ± sd over seeds)", _spread_table(summ)),
  ]
  widths = rc.model.kwargs.get("widths")
  model = f"{rc.model.name}" + (f" widths {tuple(widths)}" if widths else "")
  study.write_summary(
    workdir,
    "Rotational equilibrium of scale-invariant layers",
    findings,
    intro=(
      f"{model} on {rc.dataset.name}: every conv kernel feeds a BatchNorm and is "
      f"scale-invariant. Constant learning rate, {rc.steps} steps of batch {rc.batch_size}, "
      f"seeds {tuple(config.seeds)} (the same initial weights and batches for every optimizer "
      f"at a given seed); measurements (one step's angle and the norm, every "
      f"{rc.diagnostics_every} steps) averaged over the last {window} steps, then ratio = mean "
      "measured / mean predicted per layer and seed. The claims read log(ratio), averaged over "
      "layers and then over an optimizer's settings, one value per seed; 'at equilibrium' is "
      "equivalence of that to 0 (ratio 1) within the declared margin (TOST). Predictions: AdamW "
      "√(2αλ(1−β1)/(1+β1)) and √(αC/(2λ)); SGD+momentum (coupled L2) √(2αλ/(1+μ)) and "
      "(α‖g̃‖²/(2λ(1−μ)))^{1/4} with ‖g̃‖ the measured gradient norm at unit weight norm. "
      f"{rc.dataset.validation_fraction:g} of the training data is held out and the accuracy "
      "below is on it; the settings are declared in advance and nothing is selected, so the "
      "test split is not read."
    ),
    tables=tables,
    figures=figures,
    footer=_footer(summ, keys),
  )
  return {"findings": findings, "results": res, "summary": summ, "values": values}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  return len(config.settings) * len(config.seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, work=work)
