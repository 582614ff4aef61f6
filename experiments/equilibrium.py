"""Rotational equilibrium: does each scale-invariant layer settle where the theory says?

For AdamW and SGD with momentum at several (α, λ) with a constant learning rate, the measured
angular update per step and the norm of every scale-invariant kernel (the BatchNorm ResNet's
convolutions) are compared with the random-walk predictions of Kosson, Messmer & Jaggi (2023;
REFERENCES §4), averaged over the last part of training and over seeds. Adam+L2, which has no
prediction, is compared with AdamW by how much its angular update differs across layers.
Writes figures, metrics.jsonl (one line per run) and summary.md with the verdicts.

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
import matplotlib.ticker as mticker
import ml_collections
import numpy as np

from wd_jax import study, sweep
from wd_jax.runlog import read_metrics, write_atomic

LABELS = {"adamw": "AdamW", "sgdm": "SGD+momentum (L2)", "adam_l2": "Adam+L2"}
# Colours of wd_jax.study: the variant names it knows for these recipes.
COLOR_KEYS = {"adamw": "adamw", "sgdm": "sgd_l2", "adam_l2": "adam_l2"}
PREDICTED = ("adamw", "sgdm")  # variants with a closed-form prediction
MARKERS = ("o", "s", "^", "D", "v", "P")


def _log_axis(ax, which: str) -> None:
  """Log scale with plain tick labels (0.02, 0.05, 0.1) at 1, 2, 5 × powers of ten."""
  axis = ax.xaxis if which == "x" else ax.yaxis
  (ax.set_xscale if which == "x" else ax.set_yscale)("log")
  axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  axis.set_major_formatter(mticker.FormatStrFormatter("%g"))
  axis.set_minor_formatter(mticker.NullFormatter())


def _color(variant: str) -> str:
  return study.color(COLOR_KEYS.get(variant, variant))


def _validate(config: ml_collections.ConfigDict) -> None:
  if not config.settings:
    raise ValueError("config.settings is empty.")
  for setting in config.settings:
    if len(setting) != 3:
      raise ValueError(f"config.settings entries are (variant, α, λ), got {setting!r}.")
    variant, lr, wd = setting
    if variant not in config.optimizers:
      raise ValueError(
        f"config.settings has variant {variant!r}; valid: {sorted(config.optimizers)}."
      )
    if not (lr > 0 and wd > 0):
      raise ValueError(f"config.settings needs α > 0 and λ > 0, got {setting!r}.")
  if not config.seeds:
    raise ValueError("config.seeds is empty.")
  if config.run.optimizer.lr_schedule != "constant":
    raise ValueError(
      "config.run.optimizer.lr_schedule must be 'constant' (an equilibrium needs a fixed α), "
      f"got {config.run.optimizer.lr_schedule!r}."
    )
  if config.run.optimizer.wd_schedule != "constant":
    raise ValueError(
      f"config.run.optimizer.wd_schedule must be 'constant', got "
      f"{config.run.optimizer.wd_schedule!r}."
    )
  if not config.run.per_leaf_diagnostics or not config.run.diagnostics_every:
    raise ValueError(
      "config.run.per_leaf_diagnostics must be True and diagnostics_every > 0: the study "
      "reads the per-layer angular updates and norms."
    )
  if not 0 < config.last_fraction <= 1:
    raise ValueError(f"config.last_fraction must be in (0, 1], got {config.last_fraction}.")
  if not config.near_margin > 0:
    raise ValueError(f"config.near_margin must be > 0, got {config.near_margin}.")


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


def summarize(res: dict[str, list[dict]], config) -> dict[tuple, dict[int, dict]]:
  """(variant, α, λ) -> seed -> {"layers": layer_stats, "test_accuracy", ...}."""
  out: dict[tuple, dict[int, dict]] = {}
  for variant, rows in res.items():
    for r in rows:
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
      out.setdefault(key, {})[r["seed"]] = {
        "layers": layers,
        "diverged": False,
        "test_accuracy": r["test_accuracy"],
        "window_train_loss": float(np.mean(losses)) if losses else math.nan,
        "free_decay_share": float(np.nanmean(free)) if np.isfinite(free).any() else math.nan,
        "angle_cv": _cv(angles),
        "mean_angle": float(np.nanmean(angles)) if angles else math.nan,
        "mean_angle_ratio": float(np.nanmean([s["angle_ratio"] for s in layers.values()]))
        if layers and variant in PREDICTED
        else math.nan,
        "mean_norm_ratio": float(np.nanmean([s["norm_ratio"] for s in layers.values()]))
        if layers and variant in PREDICTED
        else math.nan,
      }
  return out


def _per_seed(summ, variant: str, field: str) -> list[float]:
  """Per seed: `field` averaged over the variant's settings."""
  by_seed: dict[int, list[float]] = {}
  for (v, _, _), seeds in summ.items():
    if v == variant:
      for seed, s in seeds.items():
        by_seed.setdefault(seed, []).append(s.get(field, math.nan))
  return [float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for v in by_seed.values()]


def _layer_values(summ, key, field) -> dict[str, list[float]]:
  """layer -> per-seed values of `field` for one setting."""
  out: dict[str, list[float]] = {}
  for s in summ[key].values():
    for p, st in s["layers"].items():
      out.setdefault(p, []).append(st[field])
  return out


def _setting_label(key) -> str:
  v, lr, wd = key
  return f"{LABELS[v]} α={lr:g} λ={wd:g}"


def findings_for(summ, config) -> list[study.Finding]:
  margin = config.near_margin
  out = []
  band = f"{1 - margin:g}–{1 + margin:g}"
  for v in PREDICTED:
    keys = [k for k in summ if k[0] == v]
    if not keys:
      continue
    for field, what in (("angle_ratio", "angular update"), ("norm_ratio", "weight norm")):
      per_setting = []
      all_layers = []
      for k in keys:
        lv = _layer_values(summ, k, field)
        means = [study.mean_spread(x)[0] for x in lv.values()]
        all_layers += means
        per_setting.append(f"α={k[1]:g} λ={k[2]:g}: {np.nanmean(means):.3f}")
      vals = _per_seed(summ, v, f"mean_{field}")
      lo, hi = (np.nanmin(all_layers), np.nanmax(all_layers)) if all_layers else (math.nan,) * 2
      out.append(
        study.Finding(
          f"Under {LABELS[v]} with a constant α, each scale-invariant layer's {what} reaches "
          f"the rotational-equilibrium prediction (measured/predicted near 1, i.e. {band}).",
          "Kosson, Messmer & Jaggi 2023; REFERENCES §4",
          study.compare(
            vals, [1.0], expect="equal", margin=margin, names=("measured/predicted", "theory")
          ),
          f"measured/predicted {what}, mean over layers and settings per seed: "
          f"{study.fmt(vals)}; per setting: {'; '.join(per_setting)}; per-layer means range "
          f"{lo:.3f}–{hi:.3f}",
        )
      )
  if "adam_l2" in {k[0] for k in summ} and "adamw" in {k[0] for k in summ}:
    a, b = _per_seed(summ, "adam_l2", "angle_cv"), _per_seed(summ, "adamw", "angle_cv")
    out.append(
      study.Finding(
        "Adam+L2 has no single equilibrium angular update: its angular update differs across "
        "layers more than AdamW's (coefficient of variation across layers, larger).",
        "Kosson, Messmer & Jaggi 2023; REFERENCES §4",
        study.compare(a, b, expect="greater", names=("Adam+L2 CV", "AdamW CV")),
        f"CV (sd/mean) of the per-layer angular update over the last "
        f"{config.last_fraction:.2g} of training, mean over settings per seed: Adam+L2 "
        f"{study.fmt(a)}, AdamW {study.fmt(b)}",
      )
    )
  return out


def _ratio_table(summ, field: str) -> str:
  keys = [k for k in summ if k[0] in PREDICTED]
  layers = sorted(
    {p for k in keys for s in summ[k].values() for p in s["layers"]}, key=_layer_order
  )
  rows = []
  for k in keys:
    lv = _layer_values(summ, k, field)
    cells = [study.fmt(lv.get(p, []), 2).split(" (n=")[0] for p in layers]
    seeds_mean = [study.mean_spread(x)[0] for x in lv.values()]
    rows.append([LABELS[k[0]], f"{k[1]:g}", f"{k[2]:g}", *cells, f"{np.nanmean(seeds_mean):.3f}"])
  return study.markdown_table(
    ["optimizer", "α", "λ", *[short_name(p) for p in layers], "mean over layers"], rows
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
        LABELS[k[0]],
        f"{k[1]:g}",
        f"{k[2]:g}",
        study.fmt(col("mean_angle"), 4),
        "—" if not np.isfinite(pred).any() else f"{np.nanmean(pred):.4f}",
        study.fmt(col("angle_cv"), 3),
        "—"
        if not np.isfinite(col("free_decay_share")).any()
        else study.fmt(col("free_decay_share"), 2),
        study.fmt(col("window_train_loss"), 4),
        study.fmt(col("test_accuracy"), 3),
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
      "test accuracy",
    ],
    rows,
  )


def _footer(summ) -> str:
  """What the free-decay share says about the model's assumption, from the measurements."""
  keys = [k for k in summ if k[0] in PREDICTED]
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


def plot_angle_scatter(summ, workdir: str) -> tuple[str, str]:
  fig, ax = plt.subplots(figsize=(5.5, 4.4), dpi=100)
  lo, hi = math.inf, 0.0
  counters: dict[str, int] = {}
  for k in summ:
    v = k[0]
    if v not in PREDICTED:
      continue
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
      label=f"{LABELS[v]} α={k[1]:g} λ={k[2]:g}",
    )
    finite = [z for z in xs + ys if math.isfinite(z) and z > 0]
    if finite:
      lo, hi = min(lo, *finite), max(hi, *finite)
  if hi > 0:
    line = np.array([lo / 1.5, hi * 1.5])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.plot(line, 0.8 * line, "k:", lw=0.8, label="y = 0.8x, 1.2x")
    ax.plot(line, 1.2 * line, "k:", lw=0.8)
  _log_axis(ax, "x")
  _log_axis(ax, "y")
  ax.set(
    title="Angular update per scale-invariant layer",
    xlabel="predicted angular update (rad/step)",
    ylabel="measured angular update (rad/step)",
  )
  ax.legend(fontsize=6.5, loc="upper left")
  ax.grid(alpha=0.3, which="both")
  path = os.path.join(workdir, "angular_update_scatter.png")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return (
    "Measured vs predicted angular update, one point per layer and setting (mean over the last "
    "part of training and over seeds); dotted: the ±20% band",
    path,
  )


def _mean_series(rows, key: str) -> tuple[np.ndarray, np.ndarray]:
  series = [
    [(rec["step"], rec[key]) for rec in r["records"] if key in rec]
    for r in rows
    if not r["diverged"]
  ]
  series = [s for s in series if s]
  if not series:
    return np.array([]), np.array([])
  n = min(len(s) for s in series)
  return np.array([p[0] for p in series[0][:n]]), np.mean(
    [[p[1] for p in s[:n]] for s in series], axis=0
  )


def plot_norms(res, summ, config, workdir: str) -> tuple[str, str] | None:
  by_variant = {v: [k for k in summ if k[0] == v] for v in PREDICTED if v in res}
  by_variant = {v: ks for v, ks in by_variant.items() if ks}
  if not by_variant:
    return None
  nrows, ncols = len(by_variant), max(len(ks) for ks in by_variant.values())
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(max(3.4 * ncols, 7.0), 2.8 * nrows), dpi=90, squeeze=False, sharex=True
  )
  start = config.run.steps * (1 - config.last_fraction)
  cmap = plt.get_cmap("viridis")
  for i, (v, keys) in enumerate(by_variant.items()):
    for j in range(ncols):
      ax = axes[i][j]
      if j >= len(keys):
        ax.axis("off")
        continue
      _, lr, wd = keys[j]
      rows = [
        r
        for r in res[v]
        if math.isclose(r["learning_rate"], lr) and math.isclose(r["weight_decay"], wd)
      ]
      layers = sorted({p for s in summ[keys[j]].values() for p in s["layers"]}, key=_layer_order)
      for li, p in enumerate(layers):
        c = cmap(li / max(len(layers) - 1, 1) * 0.9)
        steps, meas = _mean_series(rows, f"param_norm/{p}")
        if steps.size:
          ax.plot(steps, meas, color=c, lw=1.4, label=short_name(p))
        steps, pred = _mean_series(rows, f"pred_norm/{p}")
        if steps.size:
          ax.plot(steps, pred, color=c, lw=1.0, ls="--")
      ax.axvspan(start, config.run.steps, color="0.85", alpha=0.5, lw=0)
      _log_axis(ax, "y")
      ax.set_title(f"{LABELS[v]}: α={lr:g}, λ={wd:g}", fontsize=9, color=_color(v))
      ax.grid(alpha=0.3, which="both")
      ax.tick_params(labelsize=7)
      if j == 0:
        ax.set_ylabel("‖w‖₂ of the layer (log)", fontsize=8)
      if i == nrows - 1:
        ax.set_xlabel("training step", fontsize=8)
  handles, labels = axes[0][0].get_legend_handles_labels()
  handles += [
    plt.Line2D([], [], color="k", lw=1.4),
    plt.Line2D([], [], color="k", lw=1.0, ls="--"),
  ]
  labels += ["measured", "predicted"]
  fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
  fig.suptitle(
    "Layer norms vs the equilibrium prediction (grey: averaging window)",
    fontsize=10,
  )
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  path = os.path.join(workdir, "norm_trajectories.png")
  fig.savefig(path)
  plt.close(fig)
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
  x = np.arange(len(layers))
  counters: dict[str, int] = {}
  for k in summ:
    v = k[0]
    i = counters[v] = counters.get(v, -1) + 1
    lv = _layer_values(summ, k, "angular_update")
    ys = [study.mean_spread(lv.get(p, []))[0] for p in layers]
    ax.plot(
      x,
      ys,
      color=_color(v),
      marker=MARKERS[i % len(MARKERS)],
      ms=4,
      lw=1.2,
      ls=("-", "--", ":", "-.")[i % 4],
      label=f"{LABELS[v]} α={k[1]:g} λ={k[2]:g}",
    )
  ax.set_xticks(x, [short_name(p) for p in layers], fontsize=8)
  _log_axis(ax, "y")
  ax.set(
    title="Measured angular update per layer (averaging window)",
    xlabel="scale-invariant layer (input → output)",
    ylabel="angular update (rad/step, log)",
  )
  ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
  ax.grid(alpha=0.3, which="both")
  path = os.path.join(workdir, "angular_update_per_layer.png")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return (
    "Measured angular update of every scale-invariant layer per optimizer and (α, λ) (mean "
    "over the last part of training and over seeds): flat lines mean one rate for all layers",
    path,
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  _validate(config)
  study.begin(config, workdir)
  res = run_variants(config, workdir)
  return report(config, workdir, res)


def report(config: ml_collections.ConfigDict, workdir: str, res: dict[str, list[dict]]):
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
  findings = findings_for(summ, config)
  figures = [plot_angle_scatter(summ, workdir)]
  norm_fig = plot_norms(res, summ, config, workdir)
  if norm_fig:
    figures.append(norm_fig)
  figures.append(plot_layer_angles(summ, workdir))
  rc = config.run
  window = round(rc.steps * config.last_fraction)
  tables = [
    (
      "Measured / predicted angular update per layer (mean ± sd over seeds)",
      _ratio_table(summ, "angle_ratio"),
    ),
    (
      "Measured / predicted norm per layer (mean ± sd over seeds)",
      _ratio_table(summ, "norm_ratio"),
    ),
    ("Angular update across layers, every optimizer (mean ± sd over seeds)", _spread_table(summ)),
  ]
  study.write_summary(
    workdir,
    "Rotational equilibrium of scale-invariant layers",
    findings,
    intro=(
      f"ResNet widths {tuple(rc.model.kwargs['widths'])} on {rc.dataset.name}: every conv "
      f"kernel feeds a BatchNorm and is scale-invariant. Constant learning rate, {rc.steps} "
      f"steps of batch {rc.batch_size}, seeds {tuple(config.seeds)}; measurements (one step's "
      f"angle and the norm, every {rc.diagnostics_every} steps) averaged over the last "
      f"{window} steps, then ratio = mean measured / mean predicted per layer and seed. "
      f"'Near 1' means |mean ratio − 1| ≤ {config.near_margin:g}. Predictions: AdamW "
      "√(2αλ(1−β1)/(1+β1)) and √(αC/(2λ)); SGD+momentum (coupled L2) √(2αλ/(1+μ)) and "
      "(α‖g̃‖²/(2λ(1−μ)))^{1/4} with ‖g̃‖ the measured gradient norm at unit weight norm."
    ),
    tables=tables,
    figures=figures,
    footer=_footer(summ),
  )
  return {"findings": findings, "results": res, "summary": summ}


if __name__ == "__main__":
  study.main(run)
