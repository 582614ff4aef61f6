"""Does weight decay need to change with the size of the network and of the data? Wang &
Aitchison's constant-timescale rule for AdamW, in two phases.

**Tune** (``--config.phase=tune``): per (lr rule, training-set size n, width w) cell, lr × λ
(λ from τ_epoch, factor 2 apart, plus λ = 0) on a tuning draw, selected on validation items;
writes the pre-registration with each cell's lr and the λ grid the confirm phase runs.
**Confirm** (the default): each cell's pre-registered λ grid at its lr, on fresh seeds and a fresh
draw; per seed and cell the best λ* (quadratic vertex in log λ of the test accuracy) and
τ*_epoch = 1/(η λ* n/B); per seed the slopes of log λ* and log τ* on log n and log w; claims
over seeds.

  python experiments/scaling.py --config=experiments/configs/scaling.py --workdir=runs/scaling
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from wd_jax import study
from wd_jax.study import claims as claims_lib
from wd_jax.study import lr_strength, phases, report, schema, stats

FIELDS = {
  **phases.fields(learning_rates=schema.numbers(), tau_over_T=schema.numbers()),
  "strategy": schema.choice(("vmap", "sequential", "auto")),
  "resamples": schema.integer(minimum=20),
  "rules": schema.choices(("fixed", "mup")),
  "base_width": schema.integer(minimum=1),
  "confirm_steps": schema.integer(minimum=1),
  "sizes": schema.ints(minimum=1),
  "widths": schema.ints(minimum=1),
  "epochs": schema.integer(minimum=1),
  "validation_size": schema.integer(minimum=1),
}
AXES = ("size", "width")
WINDOW = 2  # the quadratic's window: the argmax and this many grid points on each side


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  out = []
  for rule in config.rules:
    for axis in AXES:
      for m in ("lam_slope", "tau_slope", "lr_slope", "nearer_zero", "toward_tau_constant"):
        out.append(f"{rule}/{axis}/{m}")
      out.append(f"{rule}/{axis}/identity")
      out += [f"{rule}/{axis}/tau_points", f"{rule}/{axis}/lam_points"]
  return out


def cell_name(rule: str, size: int, width: int) -> str:
  return f"{rule}_n{size}_w{width}"


def cells_of(config) -> list[tuple[str, int, int]]:
  return [(r, int(n), int(w)) for r in config.rules for n in config.sizes for w in config.widths]


def learning_rates(config, rule: str, width: int) -> list[float]:
  """The rule's lr grid at `width`: the tune grid (fixed), or the grid × base_width / width (mup,
  the whole model)."""
  scale = 1.0 if rule == "fixed" else config.base_width / width
  return [float(lr) * scale for lr in config.tune.learning_rates]


def iterations_per_epoch(run) -> float:
  return run.dataset.kwargs["num_train"] * (1 - run.dataset.validation_fraction) / run.batch_size


def cell_run(config, phase: str, size: int, width: int, lr: float | None = None, setup=None):
  """The phase's run for one cell: n training + the validation sequences of the phase's draw,
  the MLP at `width`, ``epochs · n / batch`` steps. `setup` (the pre-registration's ``setup``)
  overrides the config's epochs and validation size in the confirm phase."""
  s = setup or {"epochs": config.epochs, "validation_size": config.validation_size}
  run = phases.phase_run(config, phase)
  val = int(s["validation_size"])
  run.dataset.kwargs = {**dict(run.dataset.kwargs), "num_train": size + val}
  run.dataset.validation_fraction = val / (size + val)
  run.model.kwargs = {**dict(run.model.kwargs), "widths": (width, width)}
  run.steps = round(s["epochs"] * size / run.batch_size)
  run.log_every = run.eval_every = run.checkpoint_every = run.steps
  if lr is not None:
    run.optimizer.learning_rate = lr
  return run


def log_tau_epoch(lr: float, log_lam, iterations: float):
  """log τ_epoch = −log η − log λ − log(iterations per epoch)."""
  return -math.log(lr) - log_lam - math.log(iterations)


def tau_epoch(run, lr: float, lam: float) -> float:
  """τ_epoch = 1/(η λ · iterations per epoch), η the peak lr (inf for λ = 0)."""
  return math.inf if not lam else 1.0 / (lr * lam * iterations_per_epoch(run))


def tune_grid(config, rule: str, size: int, width: int) -> list[dict]:
  """Every lr of the rule × τ_epoch/E (as λ), plus λ = 0 at each lr."""
  lrs = learning_rates(config, rule, width)
  at = lambda lr: cell_run(config, "tune", size, width, lr)
  decayed = lr_strength.cells(at, "adamw", lrs, config.tune.tau_over_T)
  return lr_strength.off(lrs) + decayed


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase: each cell's lr × λ (+ λ = 0) on the tuning draw, selected on validation."""
  cells = cells_of(config)
  grids = {cell_name(*c): tune_grid(config, *c) for c in cells}
  runs = {cell_name(r, n, w): cell_run(config, "tune", n, w) for r, n, w in cells}
  study.begin(config, workdir)
  rows = phases.tune_arms(runs, grids, config, workdir)
  cands, sels, picks, out_cells = {}, {}, {}, {}
  for rule, size, width in cells:
    name = cell_name(rule, size, width)
    cands[name] = phases.scored(rows[name], grids[name], "val_items", "accuracy", config.tune.seeds)
    axes = {
      "learning_rate": learning_rates(config, rule, width),
      "tau_over_T": [None, *config.tune.tau_over_T],
    }
    sels[name] = phases.select({name: cands[name]}, axes, larger=True, resamples=config.resamples)[
      name
    ]
    pick = sels[name].choice.pick
    lr = pick["learning_rate"]
    # The confirm grid's centre: the best λ > 0 at the selected lr (λ = 0 may be the pick).
    decayed = [(c, v) for c, v in cands[name] if c["learning_rate"] == lr and c["tau_over_T"]]
    centre_label = max(decayed, key=lambda cv: float(np.mean(cv[1])))[0]
    centre = lr_strength.find(grids[name], centre_label)
    run = cell_run(config, "tune", size, width, lr)
    out_cells[name] = [
      {
        "learning_rate": lr,
        "weight_decay": centre["weight_decay"] * 2.0**j,
        "tau_epoch": tau_epoch(run, lr, centre["weight_decay"] * 2.0**j),
        "log2_offset": j,
        "rule": rule,
        "size": size,
        "width": width,
        "roles": ["curve"],
      }
      for j in range(-config.confirm_steps, config.confirm_steps + 1)
    ]
    picks[name] = {
      "learning_rate": lr,
      "weight_decay": float(lr_strength.find(grids[name], pick)["weight_decay"]),
      "centre_weight_decay": centre["weight_decay"],
      "centre_tau_epoch": tau_epoch(run, lr, centre["weight_decay"]),
      "iterations_per_epoch": iterations_per_epoch(run),
      "steps": run.steps,
    }
  extra = {
    "learning_rates": list(config.tune.learning_rates),
    "tau_over_T": list(config.tune.tau_over_T),
    "setup": {
      "epochs": int(config.epochs),
      "validation_size": int(config.validation_size),
      "base_width": int(config.base_width),
      "rules": list(config.rules),
      "sizes": [int(n) for n in config.sizes],
      "widths": [int(w) for w in config.widths],
    },
    "picks": picks,
  }
  prereg = phases.preregister(config, "scaling", out_cells, sels, extra)
  tables = [("Tuned cells (validation accuracy)", tune_table(config, picks, sels))]
  phases.write_tune_summary(
    workdir, "Weight decay across model and data size: tune", prereg, sels, tables
  )
  return {
    "findings": [],
    "lines": [*phases.tune_lines(sels), f"pre-registration {prereg.short}: {prereg.path}"],
  }


def tune_table(config, picks, sels) -> str:
  rows = []
  for rule, size, width in cells_of(config):
    name = cell_name(rule, size, width)
    p, s = picks[name], sels[name]
    lam = p["weight_decay"]
    rows.append(
      [
        rule,
        size,
        width,
        f"{p['learning_rate']:.3g}",
        f"{lam:.3g}" + ("" if lam else " (λ = 0)"),
        f"{p['centre_weight_decay']:.3g}",
        f"{p['centre_tau_epoch']:.3g}",
        f"{s.choice.score:.4f}",
        f"{s.choice.stability:.2f}",
        "; ".join(s.edges) or "interior",
      ]
    )
  head = ["rule", "n", "width", "lr", "λ picked", "λ centre", "τ_epoch centre", "val acc"]
  return study.markdown_table([*head, "stability", "grid edges"], rows)


# ----------------------------------------------------------------------------------------------
# Confirm.


def best_log_lambda(log_lams: np.ndarray, scores: np.ndarray) -> tuple[float, bool]:
  """The vertex of a quadratic fitted to `scores` over `log_lams` at the argmax and its WINDOW
  neighbours on each side (the argmax if the fit is not concave), clipped to the window; and
  whether the argmax sits on the grid's edge. NaN if a score is not finite."""
  if not np.all(np.isfinite(scores)):
    return math.nan, False
  j = int(np.argmax(scores))
  lo, hi = max(0, j - WINDOW), min(len(scores), j + WINDOW + 1)
  x, y = log_lams[lo:hi], scores[lo:hi]
  best = float(log_lams[j])
  if len(x) >= 3:
    a, b, _ = np.polyfit(x, y, 2)
    if a < 0:
      best = float(np.clip(-b / (2 * a), x[0], x[-1]))
  return best, j in (0, len(scores) - 1)


def slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Per seed (rows of y), the OLS slope of y on x; NaN for a seed with a non-finite y."""
  xc = x - x.mean()
  out = (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
  return np.where(np.all(np.isfinite(y), axis=1), out, np.nan)


def estimates(config, prereg, rows) -> dict[str, dict[str, Any]]:
  """Per cell: the per-seed log λ*, log τ*_epoch, the lr, and how many seeds' argmax sat on the
  edge of the cell's λ grid."""
  out = {}
  seeds = config.confirm.seeds
  setup = prereg.body["tune"]["setup"]
  for name, cells in prereg.body["cells"].items():
    c0 = cells[0]
    scored = phases.scored(
      rows[name], cells, "test_items", "accuracy", seeds, labels=("weight_decay",)
    )
    log_lams = np.log([c["weight_decay"] for c in cells])
    curves = np.stack([v.mean(axis=1) for _, v in scored], axis=1)  # (seeds, K)
    fits = [best_log_lambda(log_lams, curve) for curve in curves]
    log_lam = np.array([f[0] for f in fits])
    run = cell_run(config, "confirm", c0["size"], c0["width"], setup=setup)
    lr = c0["learning_rate"]
    log_tau = log_tau_epoch(lr, log_lam, iterations_per_epoch(run))
    out[name] = {
      "rule": c0["rule"],
      "size": c0["size"],
      "width": c0["width"],
      "lr": lr,
      "log_lam": log_lam,
      "log_tau": log_tau,
      "edges": sum(f[1] for f in fits),
      "curve": curves,
      "lams": np.exp(log_lams),
    }
  return out


def measure(config, est) -> dict[str, Any]:
  """Per rule and axis: per-seed slopes of log λ*, log τ* (and the constant log η) on log n or
  log w; |b_λ| − |b_τ|; t − 1/2 (t = b_λ / h, h the τ-constant prediction of b_λ); the identity
  b_τ + b_λ + b_η (+1 on size); the points for slope claims."""
  out: dict[str, Any] = {}
  n_seeds = len(config.confirm.seeds)
  for rule in config.rules:
    mine = [e for e in est.values() if e["rule"] == rule]
    lam = np.stack([e["log_lam"] for e in mine], axis=1)  # (seeds, cells)
    tau = np.stack([e["log_tau"] for e in mine], axis=1)
    lr = np.log([e["lr"] for e in mine])
    for axis in AXES:
      x = np.log([e[axis] for e in mine])
      b_lam, b_tau = slopes(x, lam), slopes(x, tau)
      b_lr = float(slopes(x, lr[None])[0])
      p = f"{rule}/{axis}"
      out[f"{p}/lam_slope"], out[f"{p}/tau_slope"] = b_lam, b_tau
      out[f"{p}/lr_slope"] = np.full(n_seeds, b_lr)
      out[f"{p}/nearer_zero"] = np.abs(b_lam) - np.abs(b_tau)
      # t = b_λ / h, h the τ-constant prediction of b_λ (λ-constant predicts 0); τ's slope is
      # nearer 0 than λ's exactly when t > 1/2. Undefined where the two predictions meet.
      h = -(1.0 + b_lr) if axis == "size" else -b_lr
      out[f"{p}/toward_tau_constant"] = (b_lam / h if abs(h) > 0.1 else b_lam * np.nan) - 0.5
      out[f"{p}/identity"] = b_tau + b_lam + b_lr + (1.0 if axis == "size" else 0.0)
      groups = np.repeat(np.arange(n_seeds), len(mine))
      for what, y in (("tau", tau), ("lam", lam)):
        out[f"{p}/{what}_points"] = {"x": np.tile(x, n_seeds), "y": y.ravel(), "groups": groups}
  return out


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the pre-registered λ grids only, on fresh seeds and a fresh draw."""
  prereg = phases.open_confirm(config, workdir)
  setup = prereg.body["tune"]["setup"]
  study.begin(config, workdir)
  cells = prereg.body["cells"]
  runs = {
    name: cell_run(config, "confirm", c[0]["size"], c[0]["width"], setup=setup)
    for name, c in cells.items()
  }
  rows = phases.confirm_arms(runs, prereg, config, workdir)
  est = estimates(config, prereg, rows)
  values = measure(config, est)

  def said(c):
    parts = []
    for m in c.measurements:
      v = values[m]
      parts.append(f"{m}: {study.fmt(v, 3)}" if not isinstance(v, dict) else m)
    return "; ".join(parts)

  findings = claims_lib.decide(claims_lib.parse(config.claims), values, said)
  diverged = phases.write_run_lines(workdir, rows, cells)
  intro = INTRO.format(
    seeds=len(config.confirm.seeds),
    draw=dict(config.confirm.dataset),
    epochs=setup["epochs"],
    batch=config.run.batch_size,
    k=2 * config.confirm_steps + 1,
    window=WINDOW,
  )
  study.write_summary(
    workdir,
    "Weight decay across model and data size: confirm",
    findings,
    intro=intro,
    tables=[
      (
        "Slopes over seeds (90% t interval; predictions: W&A τ constant / λ constant)",
        slope_table(config, values),
      ),
      (
        "Per cell: best λ* and τ*_epoch (geometric mean over seeds, 90% interval)",
        cell_table(est, prereg),
      ),
    ],
    figures=[figure(config, est, workdir)],
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}.",
  )
  return {"findings": findings, "rows": rows, "values": values, "estimates": est}


INTRO = (
  "Confirm phase: only the pre-registered cells, on {seeds} fresh seeds and a fresh MNIST-1D draw "
  "({draw}); the test split read once per run, per item. Each cell trains {epochs} epochs of batch "
  "{batch} at its tuned lr over {k} λ a factor 2 apart around its tuned λ. Per seed and cell, λ* "
  "is the vertex of a quadratic in log λ fitted to the test accuracy at the argmax and {window} "
  "grid points on each side; τ*_epoch = 1/(η λ* · n/B). Slopes are per seed over the rule's "
  "cells (balanced n × w design); intervals over seeds only (every seed reads the same test "
  "items). By construction b_τ(n) = −b_λ(n) − b_η(n) − 1 and b_τ(w) = −b_λ(w) − b_η(w), b_η the "
  "tuned lr's slope."
)


def slope_table(config, values) -> str:
  rows = []

  def ci(v):
    v = v[np.isfinite(v)]
    return "{:+.2f} [{:+.2f}, {:+.2f}]".format(*stats.t_interval(v, 0.05)) if v.size else "—"

  for rule in config.rules:
    for axis in AXES:
      p = f"{rule}/{axis}"
      b_lr = values[f"{p}/lr_slope"][0]
      h = -(1.0 + b_lr) if axis == "size" else -b_lr  # b_λ if τ is constant; λ-constant: 0
      rows.append(
        [
          rule,
          f"log {'n' if axis == 'size' else 'w'}",
          ci(values[f"{p}/lam_slope"]),
          ci(values[f"{p}/tau_slope"]),
          f"{values[f'{p}/lr_slope'][0]:+.2f}",
          ci(values[f"{p}/nearer_zero"]),
          ci(values[f"{p}/toward_tau_constant"] + 0.5),
          f"{h:+.2f} / 0",
          f"0 / {h:+.2f}",
        ]
      )
  head = [
    "rule",
    "on",
    "b_λ",
    "b_τ",
    "b_η (tuned lr)",
    "abs(b_λ) − abs(b_τ)",
    "t = b_λ / h",
    "b_λ predicted (τ const / λ const)",
    "b_τ predicted (τ const / λ const)",
  ]
  return study.markdown_table(head, rows)


def cell_table(est, prereg) -> str:
  rows = []
  for name, e in est.items():
    edges = "; ".join(prereg.body["selection"][name]["edges"]) or "interior"
    ok = np.isfinite(e["log_lam"])
    m, lo, hi = stats.t_interval(e["log_lam"][ok], 0.05)
    tm, tlo, thi = stats.t_interval(e["log_tau"][ok], 0.05)
    best = np.nanmean(e["curve"], axis=0).max()
    rows.append(
      [
        e["rule"],
        e["size"],
        e["width"],
        f"{e['lr']:.3g}",
        f"{math.exp(m):.3g} [{math.exp(lo):.3g}, {math.exp(hi):.3g}]",
        f"{math.exp(tm):.3g} [{math.exp(tlo):.3g}, {math.exp(thi):.3g}]",
        f"{e['edges']} of {ok.size}",
        f"{best:.4f}",
        edges,
      ]
    )
  head = ["rule", "n", "width", "lr", "λ*", "τ*_epoch", "argmax on grid edge", "best test acc"]
  return study.markdown_table([*head, "tune pick on its grid's edge"], rows)


def figure(config, est, workdir: str) -> tuple[str, str]:
  """λ* and τ*_epoch against n (one line per width), one row per lr rule."""
  rules = list(config.rules)
  fig, axes = plt.subplots(len(rules), 2, figsize=(9.0, 3.2 * len(rules)), dpi=100, squeeze=False)
  for r, rule in enumerate(rules):
    for col, (key, label) in enumerate((("log_lam", "λ*"), ("log_tau", "τ*_epoch"))):
      ax = axes[r, col]
      for width in config.widths:
        mine = sorted(
          (e for e in est.values() if e["rule"] == rule and e["width"] == width),
          key=lambda e: e["size"],
        )
        xs = [e["size"] for e in mine]
        ms = [np.exp(np.nanmean(e[key])) for e in mine]
        sd = [np.nanstd(e[key]) for e in mine]
        ax.errorbar(
          xs,
          ms,
          yerr=[np.array(ms) * (1 - np.exp(-np.array(sd))), np.array(ms) * (np.exp(sd) - 1)],
          marker="o",
          capsize=3,
          label=f"width {width}",
        )
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set(xlabel="training sequences n", ylabel=label, title=f"{rule} lr: {label}")
      ax.legend(fontsize=7)
  path = report.finish(fig, os.path.join(workdir, "scaling.png"), list(axes.flat), fontsize=7)
  caption = (
    "Best λ* (left) and τ*_epoch (right) against the training-set size, one line per width "
    "(geometric mean over seeds, ± one sd of the log); rows: lr rules"
  )
  return caption, path


def run(config, workdir: str) -> dict[str, Any]:
  study.check(config, workdir, FIELDS, measurement_names)
  return tune(config, workdir) if config.phase == "tune" else confirm(config, workdir)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  steps = sum(round(config.epochs * n / config.run.batch_size) for n in config.sizes)
  per = len(config.rules) * len(config.widths) * steps
  if config.phase == "tune":
    k = len(config.tune.learning_rates) * (len(config.tune.tau_over_T) + 1)
    return per * k * len(config.tune.seeds)
  return per * (2 * config.confirm_steps + 1) * len(config.confirm.seeds)


if __name__ == "__main__":
  study.main(run, work=work)
