"""Figures from run outputs: lr × λ heat maps of a sweep workdir, and a generic line plot.

Everything is drawn with matplotlib's Agg backend (no display needed) into small PNGs
(100 dpi, well under 150 kB), from files the runs wrote, never inside a training step::

  path = heatmap("runs/sweep")  # runs/sweep/heatmap_test_accuracy.png
  line_plot({"adamw": (steps, losses)}, "train loss", "step", "loss", "loss.png", logy=True)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib import colors as mcolors
from matplotlib.patches import Rectangle
from PIL import Image

matplotlib.use("Agg")

import numpy as np

from wd_jax.study import stats

DPI = 100
_LABELS = {
  "test_accuracy": "final test accuracy",
  "best_test_accuracy": "best test accuracy",
  "test_loss": "final test loss",
  "loss": "final train loss (last logged batch)",
  "accuracy": "final train accuracy (last logged batch)",
}


def save_png(fig, path: str, dpi: int = 100) -> None:
  """Saves `fig` as a 256-colour PNG (about a third of the bytes of matplotlib's RGBA PNG, the
  same picture for line plots and heat maps), then closes it."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  buf.seek(0)
  with Image.open(buf) as im:
    im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
      path, optimize=True
    )


def _float(text: str) -> float:
  try:
    return float(text)
  except (TypeError, ValueError):
    return math.nan


def read_results(workdir: str) -> list[dict[str, Any]]:
  """The rows of a sweep's ``results.csv``, numbers parsed (empty cells: NaN / None)."""
  path = os.path.join(workdir, "results.csv")
  if not os.path.exists(path):
    raise ValueError(f"{workdir!r} holds no results.csv: is it a finished sweep workdir?")
  rows = []
  with open(path, newline="") as f:
    for raw in csv.DictReader(f):
      row: dict[str, Any] = dict(raw)
      for k, v in raw.items():
        if k in ("name", "optimizer", "strategy", "run_dir"):
          continue
        if k == "diverged":
          row[k] = v == "True"
        elif v != "" and not math.isnan(_float(v)):
          row[k] = _float(v)
        elif v == "" or v.lower() == "nan":
          row[k] = math.nan
      rows.append(row)
  return rows


def _edges(values: Sequence[float], log: bool) -> np.ndarray:
  """Cell edges around sorted grid values: geometric (log axes) or arithmetic midpoints."""
  v = np.asarray(values, float)
  if len(v) == 1:
    return np.array([v[0] / 2, v[0] * 2]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
  t = np.log(v) if log else v
  mids = (t[1:] + t[:-1]) / 2
  e = np.concatenate([[t[0] - (mids[0] - t[0])], mids, [t[-1] + (t[-1] - mids[-1])]])
  return np.exp(e) if log else e


def _subtitle(workdir: str) -> str:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    base = json.load(f).get("base", {})
  try:
    o = base["optimizer"]
    coupling = o.get("kwargs", {}).get("coupling")
    extra = f", coupling {coupling}" if coupling else ""
    return (
      f"{base['dataset']['name']} / {base['model']['name']}, {base['steps']} steps, "
      f"batch {base['batch_size']}, lr schedule {o['lr_schedule']}{extra}"
    )
  except (KeyError, TypeError):
    return ""


def _panels(rows: Sequence[dict[str, Any]]):
  """Each row's panel label: the optimizer and every grid field besides lr, λ and seed (e.g.
  optimizer.kwargs.b1; the test metrics a selecting sweep reads for some rows sit among the
  columns too but are not grid fields)."""
  cols = list(rows[0])
  extra = cols[cols.index("seed") + 1 : cols.index("loss")] if "seed" in cols else []
  extra = [c for c in extra if c not in ("test_loss", "test_accuracy")]

  def panel_of(r: dict[str, Any]) -> str:
    parts = [str(r["optimizer"])]
    parts += [f"{c.split('.')[-1]}={_fmt(r.get(c))}" for c in extra]
    return ", ".join(parts)

  return panel_of


def _cells(rows, metric: str, panel: str, panel_of, lrs, wds):
  """One panel's (λ × lr) cell means, CI half-widths, all-diverged mask and runs per cell."""
  values: list[list[list[float]]] = [[[] for _ in lrs] for _ in wds]
  seen = np.zeros((len(wds), len(lrs)))
  div = np.zeros_like(seen)
  for r in rows:
    if panel_of(r) != panel:
      continue
    i, j = wds.index(r["weight_decay"]), lrs.index(r["learning_rate"])
    seen[i, j] += 1
    div[i, j] += bool(r["diverged"])
    v = r.get(metric, math.nan)
    if not r["diverged"] and isinstance(v, float) and math.isfinite(v):
      values[i][j].append(v)
  cells = [[mean_and_ci(v) for v in row] for row in values]
  mean = np.array([[c[0] for c in row] for row in cells])
  half = np.array([[c[1] for c in row] for row in cells])
  return mean, half, (seen > 0) & (div == seen), int(seen.max()) if seen.size else 0


def panel_axes(k: int):
  """A figure with `k` panels, at most 4 per row (the rest hidden), constrained layout."""
  ncols = min(k, 4)
  nrows = math.ceil(k / ncols)
  fig, axes = plt.subplots(
    nrows,
    ncols,
    figsize=(1.4 + 3.6 * ncols, 0.5 + 3.4 * nrows),
    dpi=DPI,
    squeeze=False,
    layout="constrained",
  )
  for ax in axes.flat[k:]:
    ax.set_visible(False)
  return fig, axes


def _label_panel(ax, title: str, g, best, lrs, wds) -> None:
  if best is not None:
    i, j = best
    ax.set_title(f"{title}: best {g[i, j]:.3g} at lr {lrs[j]:g}, λ {wds[i]:g}", fontsize=9)
  else:
    ax.set_title(f"{title}: every run diverged", fontsize=9)
  log_x, log_y = min(lrs) > 0, min(wds) > 0
  ax.set_xlabel("peak learning rate (per step" + (", log scale)" if log_x else ")"), fontsize=9)
  ax.set_ylabel("weight decay λ (per step" + (", log scale)" if log_y else ")"), fontsize=9)


def heatmap(
  workdir: str,
  metric: str = "test_accuracy",
  out: str | None = None,
  *,
  higher_is_better: bool | None = None,
) -> str:
  """Draws the sweep's lr × λ grid coloured by `metric`, one panel per optimizer (and per value of
  any other grid field besides lr, λ and seed).

  Configurations that share a panel, lr and λ (several seeds) are averaged and their 90% t
  interval is written under the mean (``±`` half-width); the colour scale then spans at least a
  typical cell's interval (`heatmap_scale`), so seed noise is not painted as a finding. A cell
  whose configurations all diverged is grey and hatched. The best cell of each panel is outlined
  in red. Axes are log-scaled when every value is > 0 (a λ of 0 gives evenly spaced values).

  Args:
    workdir: a sweep workdir (`wd_jax.engine.sweep.run_sweep`) holding ``results.csv``.
    metric: a results column: ``test_accuracy`` (final), ``best_test_accuracy``, ``test_loss``,
      ``loss`` (final train loss); ``val_accuracy``... in a sweep with a validation split.
    out: the PNG path; default ``<workdir>/heatmap_<metric>.png``.
    higher_is_better: which end is best; default: True for accuracies, False otherwise.

  Returns:
    The path of the PNG written.

  Raises:
    ValueError: no results.csv, or `metric` is not one of its columns.
  """
  rows = read_results(workdir)
  if not rows or metric not in rows[0]:
    cols = sorted(rows[0]) if rows else []
    raise ValueError(f"metric must be a column of results.csv {cols}, got {metric!r}.")
  if higher_is_better is None:
    higher_is_better = "accuracy" in metric
  out = out or os.path.join(workdir, f"heatmap_{metric}.png")
  panel_of = _panels(rows)
  panels = list(dict.fromkeys(panel_of(r) for r in rows))
  lrs = sorted({r["learning_rate"] for r in rows})
  wds = sorted({r["weight_decay"] for r in rows})
  cells = {p: _cells(rows, metric, p, panel_of, lrs, wds) for p in panels}
  norm, flat = heatmap_scale([c[0] for c in cells.values()], [c[1] for c in cells.values()])
  cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r")
  fig, axes = panel_axes(len(panels))
  mesh = None
  for ax, p in zip(axes.flat, panels):
    mean, half, dead, _ = cells[p]
    mesh, best = heatmap_panel(
      ax,
      lrs,
      wds,
      mean,
      norm=norm,
      cmap=cmap,
      half=half,
      dead=dead,
      higher_is_better=higher_is_better,
      annotate=len(lrs) * len(wds) <= 64,
    )
    _label_panel(ax, p, mean, best, lrs, wds)
  label = _LABELS.get(metric, metric)
  seeds = max(c[3] for c in cells.values())
  avg = f", mean ± 90% CI of {seeds} runs per cell" if seeds > 1 else ""
  cbar = fig.colorbar(mesh, ax=list(axes.flat[: len(panels)]), shrink=0.95, pad=0.03)
  cbar.set_label(label, fontsize=9)
  cbar.ax.tick_params(labelsize=8)
  lines = [f"Sweep: {label}{avg}", _subtitle(workdir), flat]
  width = int(13 * fig.get_figwidth())  # characters of 10 pt text across the figure
  fig.suptitle("\n".join(textwrap.fill(t, width) for t in lines if t), fontsize=10)
  fig.savefig(out, dpi=DPI)
  plt.close(fig)
  return out


def heatmap_scale(
  means: Sequence[np.ndarray], halves: Sequence[np.ndarray] = ()
) -> tuple[mcolors.Normalize, str]:
  """One colour scale for heat-map panels that does not paint seed noise as a finding.

  The scale spans the finite cell means of every panel, widened about its centre to at least the
  typical width of a cell's confidence interval (the median over cells of twice the half-width in
  `halves`): when the whole grid lies within one interval, stretching the colour map over it
  would show differences the seeds cannot tell apart.

  Args:
    means: one array of cell means per panel (NaN: no value).
    halves: matching arrays of CI half-widths (NaN: unknown, e.g. one seed); empty: no widening.

  Returns:
    ``(norm, note)``: the `matplotlib.colors.Normalize` and "" or a "flat: ..." note for the
    figure when the scale was widened.

  Example:
    >>> from wd_jax.study import report
    >>> norm, note = report.heatmap_scale([[[0.90, 0.91]]], [[[0.02, 0.02]]])  # 1 × 2 cells
    >>> round(norm.vmin, 3), round(norm.vmax, 3), note.startswith("flat")
    (0.885, 0.925, True)
  """
  finite = np.concatenate([np.asarray(g, float).ravel() for g in means] or [np.zeros(0)])
  finite = finite[np.isfinite(finite)]
  if not finite.size:
    return mcolors.Normalize(0.0, 1.0), ""
  vmin, vmax = float(finite.min()), float(finite.max())
  widths = np.concatenate([2 * np.asarray(h, float).ravel() for h in halves] or [np.zeros(0)])
  widths = widths[np.isfinite(widths)]
  typical = float(np.median(widths)) if widths.size else 0.0
  note = ""
  if typical > vmax - vmin:
    note = (
      f"flat: the cells differ by at most {vmax - vmin:.2g}, less than a typical cell's 90% CI "
      f"({typical:.2g}), which the colour scale spans"
    )
    mid = (vmin + vmax) / 2
    vmin, vmax = mid - typical / 2, mid + typical / 2
  if vmin == vmax:
    pad = max(abs(vmin) * 0.05, 1e-3)
    vmin, vmax = vmin - pad, vmax + pad
  return mcolors.Normalize(vmin, vmax), note


def heatmap_panel(
  ax,
  xs: Sequence[float],
  ys: Sequence[float],
  mean: np.ndarray,
  *,
  norm: mcolors.Normalize,
  cmap,
  half: np.ndarray | None = None,
  dead: np.ndarray | None = None,
  higher_is_better: bool = True,
  outline: tuple[int, int] | None = None,
  annotate: bool = True,
  fmt=lambda v: f"{v:.3g}",
  text_at: float = 0.5,
):
  """One heat-map panel: a grid of cells coloured by `mean`, with the value (and its CI) written
  in each cell, diverged cells hatched and one cell outlined in red.

  Axes whose values are all > 0 are log-scaled with a tick at each grid value; others are evenly
  spaced. The caller sets the title, axis labels and colour bar (`heatmap_scale` gives one `norm`
  for several panels).

  Args:
    ax: the matplotlib axes.
    xs: the grid's x values (increasing): the columns of `mean`.
    ys: the grid's y values (increasing): the rows of `mean`.
    mean: (len(ys), len(xs)) cell values; NaN: not in the grid or no value (left blank).
    norm: the colour scale.
    cmap: the colour map.
    half: optional CI half-widths of the cells, written as ``±`` under the value (NaN: omitted).
    dead: optional boolean (len(ys), len(xs)): every run of the cell diverged (hatched grey).
    higher_is_better: which end of `mean` the default outline marks.
    outline: the (row, column) to outline; default the best finite cell.
    annotate: write the values in the cells.
    fmt: formats a value (and a half-width) for the cell text.
    text_at: height of the text within its cell, 0 (bottom) to 1 (top).

  Returns:
    ``(mesh, outlined)``: the `QuadMesh` (for a colour bar) and the outlined (row, column), or
    None when no cell has a value.
  """
  mean = np.asarray(mean, float)
  log_x, log_y = min(xs) > 0, min(ys) > 0
  px = list(xs) if log_x else list(range(len(xs)))
  py = list(ys) if log_y else list(range(len(ys)))
  xe, ye = _edges(px, log_x), _edges(py, log_y)
  mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(mean), cmap=cmap, norm=norm)
  for i in range(len(ys)):
    for j in range(len(xs)):
      x = math.sqrt(xe[j] * xe[j + 1]) if log_x else (xe[j] + xe[j + 1]) / 2
      y = (
        ye[i] ** (1 - text_at) * ye[i + 1] ** text_at
        if log_y
        else ye[i] + text_at * (ye[i + 1] - ye[i])
      )
      if dead is not None and dead[i, j]:  # every run of the cell diverged
        cell = (xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i]
        ax.add_patch(Rectangle(*cell, facecolor="0.8", edgecolor="0.45", hatch="///", lw=0))
        if annotate:
          box = {"facecolor": "0.8", "edgecolor": "none", "pad": 1}
          ax.text(x, y, "diverged", ha="center", va="center", fontsize=7, color="0.1", bbox=box)
      elif annotate and np.isfinite(mean[i, j]):
        h = half[i, j] if half is not None else math.nan
        _cell_text(ax, x, y, mean[i, j], h, cmap(norm(mean[i, j])), fmt)
  if outline is None and np.isfinite(mean).any():
    flat = np.nanargmax(mean) if higher_is_better else np.nanargmin(mean)
    outline = tuple(int(v) for v in np.unravel_index(flat, mean.shape))
  if outline is not None:
    i, j = outline
    cell = (xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i]
    ax.add_patch(Rectangle(*cell, fill=False, edgecolor="red", lw=2.2, clip_on=False))
  if log_x:
    ax.set_xscale("log")
  if log_y:
    ax.set_yscale("log")
  ax.set_xticks(px, [f"{v:g}" for v in xs], fontsize=8, rotation=30 if len(xs) > 5 else 0)
  ax.set_yticks(py, [f"{v:g}" for v in ys], fontsize=8)
  ax.minorticks_off()
  ax.set_xlim(xe[0], xe[-1])
  ax.set_ylim(ye[0], ye[-1])
  return mesh, outline


def _cell_text(ax, x, y, value, half, rgba, fmt) -> None:
  """The value (and ``±`` its CI half-width) in white on dark cells, black on light ones."""
  dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
  text = fmt(value) + (f"\n±{fmt(half)}" if np.isfinite(half) else "")
  color = "white" if dark else "black"
  ax.text(x, y, text, ha="center", va="center", fontsize=7, color=color, linespacing=1.0)


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:g}"
  return str(v)


def line_plot(
  series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
  title: str,
  xlabel: str,
  ylabel: str,
  out: str,
  *,
  logx: bool = False,
  logy: bool = False,
) -> str:
  """One line per labelled series ``label -> (x, y)``; non-finite points are left out.

  Args:
    series: label -> (x values, y values), each a sequence of numbers of the same length.
    title: the figure title.
    xlabel: x-axis label (with its unit).
    ylabel: y-axis label (with its unit).
    out: the PNG path.
    logx: log-scaled x axis.
    logy: log-scaled y axis.

  Returns:
    `out`.

  Raises:
    ValueError: a series whose x and y differ in length.
  """
  fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=DPI)
  for label, (x, y) in series.items():
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
      raise ValueError(f"series {label!r}: x has shape {x.shape} but y has {y.shape}.")
    keep = np.isfinite(x) & np.isfinite(y)
    if logx:
      keep &= x > 0
    if logy:
      keep &= y > 0
    ax.plot(x[keep], y[keep], label=str(label), lw=1.5)
  if logx:
    ax.set_xscale("log")
  if logy:
    ax.set_yscale("log")
  ax.set_title(title, fontsize=10)
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel(ylabel, fontsize=9)
  ax.tick_params(labelsize=8)
  ax.grid(alpha=0.3, which="both" if (logx or logy) else "major")
  if len(series) > 1 or any(series):
    ax.legend(fontsize=8, frameon=False)
  fig.tight_layout()
  fig.savefig(out, dpi=DPI)
  plt.close(fig)
  return out


# ----------------------------------------------------------------------------------------------
# Pieces every study figure shares.


def plain_log_ticks(ax, axis: str = "y") -> None:
  """Tick labels of a log axis as plain numbers (0.5, 2, 30): every minor tick within about a
  decade, only the 2s and 5s beyond."""
  from matplotlib import ticker

  ax_ = ax.yaxis if axis == "y" else ax.xaxis
  lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
  every = hi / max(lo, 1e-30) < 15

  def minor(v, _):
    digit = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
    return f"{v:g}" if every or digit in (2, 5) else ""

  ax_.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax_.set_minor_formatter(ticker.FuncFormatter(minor))
  ax.tick_params(axis=axis, which="minor", labelsize=7)


def finish(fig, path: str, axes: Sequence[Any] = (), *, legend: bool = True, fontsize=8) -> str:
  """The last lines of every figure: grid, legend, tight layout, a small PNG (`save_png`)."""
  for ax in axes:
    ax.grid(alpha=0.3, which="major")
    if legend and ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=fontsize)
  fig.tight_layout()
  save_png(fig, path)
  return path


def mean_and_ci(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float, int]:
  """Mean, half-width of the two-sided (1−2α) t interval (`wd_jax.study.stats.t_interval`; NaN
  for one value) and n, over the finite values (diverged runs are left out and counted by the
  caller)."""
  x = [v for v in values if v is not None and math.isfinite(v)]
  if len(x) < 2:
    return (float(x[0]) if x else math.nan), math.nan, len(x)
  mean, lo, hi = stats.t_interval(x, alpha)
  return mean, (hi - lo) / 2, len(x)


def ci_errorbar(ax, x: Sequence[float], per_x: Sequence[Sequence[float]], **kw) -> None:
  """Means over seeds at each x with their (1−2α) t interval as error bars (α = 0.05: 90%)."""
  cis = [mean_and_ci(v) for v in per_x]
  means = np.array([s[0] for s in cis])
  half = np.nan_to_num(np.array([s[1] for s in cis]))
  ax.errorbar(np.asarray(x, float), means, yerr=half, capsize=3, **kw)


def ci_band(
  ax,
  x: Sequence[float],
  per_seed: Sequence[Sequence[float]],
  *,
  color,
  label=None,
  log: bool = False,
  **line,
):
  """One line (the mean over seeds) and a shaded 90% t interval; `per_seed` is seeds × len(x).

  `log`: for positive quantities on a log axis (norms): the geometric mean and the interval of
  the logs, a multiplicative band that cannot cross 0. `line`: more `ax.plot` keywords (``ls``)."""
  m = np.asarray(per_seed, float)
  if log:
    m = np.log(np.where(m > 0, m, np.nan))
  cis = [mean_and_ci(m[:, j]) for j in range(m.shape[1])]
  mean = np.array([s[0] for s in cis])
  half = np.nan_to_num(np.array([s[1] for s in cis]))
  lo, hi = mean - half, mean + half
  if log:
    mean, lo, hi = np.exp(mean), np.exp(lo), np.exp(hi)
  ax.plot(x, mean, color=color, label=label, **{"lw": 1.5, **line})
  ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def seed_series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """Steps and the seeds × steps array of `key` over training, ready for `ci_band`.

  Diverged rows and rows that never logged `key` are left out, and every series is cut to the
  shortest (the runs share one logging cadence, so the steps line up).

  Args:
    rows: sweep rows (one per seed), each with its run's metric records under ``"records"``
      (`wd_jax.engine.runlog.read_metrics`).
    key: a record field, e.g. ``"param_norm"``.

  Returns:
    ``(steps, values)``: shapes ``(n,)`` and ``(seeds, n)``; both empty when no row has `key`.

  Example:
    >>> from wd_jax.study import report
    >>> rows = [{"records": [{"step": 1, "x": 1.0}, {"step": 2, "x": 2.0}]},
    ...         {"records": [{"step": 1, "x": 3.0}]}]
    >>> report.seed_series(rows, "x")
    (array([1.]), array([[1.],
           [3.]]))
  """
  series = [
    [(rec["step"], rec[key]) for rec in r["records"] if rec.get(key) is not None]
    for r in rows
    if not r.get("diverged")
  ]
  series = [s for s in series if s]
  if not series:
    return np.array([]), np.zeros((0, 0))
  n = min(len(s) for s in series)
  steps = np.array([p[0] for p in series[0][:n]], float)
  return steps, np.array([[p[1] for p in s[:n]] for s in series], float)


def forest(findings: Sequence[Any], path: str, xlabel: str, title: str = "") -> str:
  """Each claim's effect and its (1−2α) interval on one axis (claims in the same unit), with the
  claim's bound drawn at its margin: a picture of what was decided, claim by claim.

  Args:
    findings: `wd_jax.study.claims.Finding` objects (effects in one unit).
    path: the PNG to write.
    xlabel: the effect's unit.
    title: the figure title.

  Returns:
    `path`.
  """
  fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.42 * len(findings)), dpi=DPI)
  colour = {"supported": "#1a9850", "not supported": "#d73027", "inconclusive": "#777777"}
  for k, f in enumerate(reversed(findings)):
    d = f.decision
    lo, hi = (v if math.isfinite(v) else d.effect for v in d.ci)
    ax.plot([lo, hi], [k, k], color=colour[d.verdict], lw=2.5)
    ax.plot([d.effect], [k], "o", color=colour[d.verdict], ms=5)
    for bound in {-d.margin, d.margin} if d.comparison == "equivalent" else {d.margin}:
      sign = -1.0 if d.comparison == "less" else 1.0
      ax.plot([sign * bound] * 2, [k - 0.35, k + 0.35], color="black", lw=1, ls=":")
  ax.axvline(0.0, color="0.6", lw=0.8)
  ax.set_yticks(range(len(findings)), [f.claim.name for f in reversed(findings)], fontsize=7)
  ax.set_xlabel(xlabel, fontsize=9)
  if title:
    ax.set_title(title, fontsize=9)
  handles = [plt.Line2D([], [], color=c, lw=2.5, label=v) for v, c in colour.items()]
  handles.append(plt.Line2D([], [], color="black", lw=1, ls=":", label="declared bound"))
  ax.legend(handles=handles, fontsize=7, loc="best")
  return finish(fig, path, [ax], legend=False)
