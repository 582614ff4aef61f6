"""Rotational equilibrium: does each scale-invariant layer settle where the theory says?

For AdamW and SGD with momentum at declared (α, λ) with a constant learning rate, the measured
angular update per step and the norm of every scale-invariant kernel are compared with the
random-walk predictions of Kosson, Messmer & Jaggi (2023; REFERENCES §4) over the last part of
the run, where the free-decay share shows whether the equilibrium was reached. Two phases: the
tune phase runs the declared settings on a tuning draw, reports their diagnostics and
pre-registers them with the claims (nothing is selected); the confirm phase runs them on fresh
seeds and a fresh draw and decides each setting's claims (TOST on log(measured/predicted)).

  python experiments/equilibrium.py --config=experiments/configs/equilibrium.py \
      --workdir=runs/equilibrium
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from wd_jax import study
from wd_jax.study import phases, protocol, report, schema, stats
from wd_jax.study import scale_invariant as si

LABELS = {"adamw": "AdamW", "sgdm": "SGD+momentum (L2)"}
PER_SEED = ("log_angle_ratio", "log_norm_ratio", "free_decay_share", "log_norm_drift")


def _settings_rule(config):
  def rule(where: str, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not value:
      raise ValueError(f"{where} must be a non-empty list of (name, variant, α, λ), not {value!r}.")
    for setting in value:
      if isinstance(setting, (str, bytes)) or len(setting) != 4:
        raise ValueError(f"{where} entries are (name, variant, α, λ), got {setting!r}.")
      name, variant, lr, wd = setting
      if variant not in config.optimizers:
        valid = sorted(config.optimizers)
        raise ValueError(f"{where}: {name} has variant {variant!r}; valid: {valid}.")
      if config.optimizers[variant].name not in ("adamw", "sgd_l2"):
        bad = config.optimizers[variant].name
        raise ValueError(f"{where}: {variant} is {bad!r}, which has no equilibrium prediction.")
      if not (lr > 0 and wd > 0):
        raise ValueError(f"{where}: {name} needs α > 0 and λ > 0, got {setting!r}.")
      held = config.run.steps * shrink_per_step(config, variant, lr, wd)
      if held < config.min_timescales:
        raise ValueError(
          f"{where}: {name} holds {held:.1f} decay timescales in {config.run.steps} steps; the "
          f"study needs ≥ {config.min_timescales:g} (config.min_timescales) to reach equilibrium."
        )

  return rule


def _run_rule(where: str, value: Any) -> None:
  schema.run_config()(where, value)
  if value.optimizer.lr_schedule != "constant" or value.optimizer.wd_schedule != "constant":
    raise ValueError(
      f"{where}.optimizer: lr_schedule and wd_schedule must be 'constant' (an equilibrium "
      "needs a fixed α and λ)."
    )
  if not value.per_leaf_diagnostics or not value.diagnostics_every:
    raise ValueError(
      f"{where}.per_leaf_diagnostics must be True and diagnostics_every > 0: the study reads "
      "every layer's angle."
    )


def fields(config) -> dict:
  return {
    **phases.fields(),
    "optimizers": schema.mapping(),
    "settings": _settings_rule(config),
    "strategy": schema.choice(("vmap", "sequential", "auto")),
    "window": schema.number(low=0.0, high=1.0, open_low=True),
    "free_decay_rate": schema.number(low=0.0, high=1.0, open_low=True),
    "min_timescales": schema.number(low=0.0),
    "run": _run_rule,
  }


def shrink_per_step(config, variant: str, lr: float, wd: float) -> float:
  """The per-step shrink s of decay alone: αλ (AdamW), αλ/(1 − μ) (coupled L2 through momentum)."""
  spec = config.optimizers[variant]
  return (
    lr * wd / (1.0 - dict(spec.kwargs).get("momentum", 0.0)) if spec.name == "sgd_l2" else lr * wd
  )


def measurement_names(config) -> list[str]:
  """Every measurement this study produces (claims may read any of them)."""
  return [
    "all/max_free_decay_share_above_bound",
    *(f"{s[0]}/{m}" for s in config.settings for m in PER_SEED),
  ]


def variant_run(config, variant: str, phase: str):
  run = phases.phase_run(config, phase)
  run.optimizer.name = config.optimizers[variant].name
  run.optimizer.kwargs = dict(config.optimizers[variant].kwargs)
  return run


def cells_of(config) -> dict[str, list[dict]]:
  """variant -> its declared settings as cells (nothing is selected)."""
  out: dict[str, list[dict]] = {}
  for name, variant, lr, wd in config.settings:
    out.setdefault(variant, []).append(
      {"learning_rate": lr, "weight_decay": wd, "setting": name, "roles": ["declared"]}
    )
  return out


def window_stats(config, row, shrink: float) -> dict[str, float]:
  """Per seed: mean over layers of log(mean measured / mean predicted) of the angle and the
  norm over the window; the free-decay share (intervals where a layer's norm fell at ≥
  ``free_decay_rate`` of decay's own rate), and the norm's drift across the window (log)."""
  start = config.run.steps * (1 - config.window)
  recs = [r for r in row["records"] if r["step"] > start and si.paths(r)]
  layers = si.paths(recs[0]) if recs else []
  mean = lambda key: float(np.mean([r[key] for r in recs if r.get(key) is not None]))
  out = {m: [] for m in PER_SEED}
  for p in layers:
    out["log_angle_ratio"].append(
      math.log(mean(f"angular_update/{p}") / mean(f"pred_angular_update/{p}"))
    )
    out["log_norm_ratio"].append(math.log(mean(f"param_norm/{p}") / mean(f"pred_norm/{p}")))
    pts = [(r["step"], r[f"param_norm/{p}"]) for r in recs]
    bound = lambda dt: config.free_decay_rate * dt * math.log1p(-shrink)
    out["free_decay_share"] += [
      math.log(n1 / n0) <= bound(t1 - t0) for (t0, n0), (t1, n1) in itertools.pairwise(pts)
    ]
    out["log_norm_drift"].append(math.log(pts[-1][1] / pts[0][1]))
  return {k: float(np.mean(v)) if v else math.nan for k, v in out.items()}


def summarize(config, rows, cells) -> dict[str, dict[str, list[float]]]:
  """setting -> measurement -> one value per seed (seed order; NaN where a run diverged)."""
  out = {}
  for variant, variant_cells in cells.items():
    for c in variant_cells:
      s = shrink_per_step(config, variant, c["learning_rate"], c["weight_decay"])
      per = [
        window_stats(config, r, s) if not r["diverged"] else {}
        for r in protocol.rows_of(rows[variant], protocol.fields_of(c))
      ]
      out[c["setting"]] = {m: [x.get(m, math.nan) for x in per] for m in PER_SEED}
  return out


def measure(summ) -> dict[str, Any]:
  values = {f"{name}/{m}": v for name, by in summ.items() for m, v in by.items()}
  shares = np.array([by["free_decay_share"] for by in summ.values()])  # settings × seeds
  values["all/max_free_decay_share_above_bound"] = list(np.max(shares, axis=0) - 0.1)
  return values


def run_phase(config, workdir: str, phase: str):
  if phase == "confirm":
    return phases.start_confirm(config, workdir, variant_run)
  cells = cells_of(config)
  runs = {v: variant_run(config, v, phase) for v in cells}
  study.begin(config, workdir)
  return None, cells, phases.tune_arms(runs, cells, config, workdir)


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase: the declared settings on the tuning draw; their diagnostics; the
  pre-registration (settings, margins, claims). Nothing is selected."""
  _, cells, rows = run_phase(config, workdir, "tune")
  summ = summarize(config, rows, cells)
  diag = {name: {m: float(np.nanmean(v)) for m, v in by.items()} for name, by in summ.items()}
  prereg = phases.preregister(
    config,
    "equilibrium",
    cells,
    {},
    {"settings": [list(s) for s in config.settings], "diagnostics": diag},
  )
  tables = [("Diagnostics on the tuning draw (mean over seeds)", settings_table(config, summ))]
  phases.write_tune_summary(workdir, "Rotational equilibrium: tune", prereg, {}, tables)
  return {"findings": [], "lines": [f"pre-registration {prereg.short}: {prereg.path}"]}


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the pre-registered settings on fresh seeds and a fresh draw."""
  prereg, cells, rows = run_phase(config, workdir, "confirm")
  summ = summarize(config, rows, cells)
  values = measure(summ)
  findings = study.decide_claims(config, values)
  diverged = phases.write_run_lines(workdir, rows, cells)
  study.write_summary(
    workdir,
    "Rotational equilibrium of scale-invariant layers: confirm",
    findings,
    intro=INTRO.format(
      seeds=len(config.confirm.seeds),
      draw=dict(config.confirm.dataset),
      steps=config.run.steps,
      window=round(config.run.steps * config.window),
    ),
    tables=[
      (
        "Per setting (measured/predicted: geometric mean over layers, 90% CI over seeds)",
        settings_table(config, summ),
      )
    ],
    figures=[figure(config, summ, rows, cells, workdir)],
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}.",
  )
  return {"findings": findings, "rows": rows, "values": values, "summary": summ}


INTRO = (
  "Confirm phase: the pre-registered settings on {seeds} fresh seeds and a fresh MNIST-1D draw "
  "({draw}); constant lr, {steps} steps of batch 128. Every record (one step's angle and the "
  "norms) of the last {window} steps is averaged per layer; ratio = mean measured / mean "
  "predicted, then log, averaged over the two scale-invariant layers: one value per seed. "
  "Predictions as `wd_jax.diagnostics.predicted_angular_update` and "
  "`predicted_equilibrium_norm` (SGD's from each record's measured gradient at unit norm)."
)


def ratio_interval(logs) -> tuple[float, float, float]:
  """exp of the mean log ratio over seeds and of its 90% t interval."""
  return tuple(math.exp(x) for x in stats.t_interval([v for v in logs if math.isfinite(v)], 0.05))


def ratio_text(logs) -> str:
  return "{:.3f} [{:.3f}, {:.3f}]".format(*ratio_interval(logs))


def settings_table(config, summ) -> str:
  """Per setting: its timescales, the two ratios (back from logs), free-decay share and drift."""
  out = []
  for name, variant, lr, wd in config.settings:
    by = summ[name]
    s = shrink_per_step(config, variant, lr, wd)
    held = f"{config.run.steps * s:.0f} ({config.run.steps * (1 - config.window) * s:.0f})"
    out.append(
      [
        name,
        LABELS.get(variant, variant),
        f"{lr:g}",
        f"{wd:g}",
        held,
        ratio_text(by["log_angle_ratio"]),
        ratio_text(by["log_norm_ratio"]),
        study.fmt(by["free_decay_share"], 2),
        study.fmt(by["log_norm_drift"], 3),
      ]
    )
  head = ["setting", "optimizer", "α", "λ", "timescales (before window)", "angle ratio"]
  head += ["norm ratio", "free-decay share", "norm drift in window (log)"]
  return study.markdown_table(head, out)


def figure(config, summ, rows, cells, workdir: str) -> tuple[str, str]:
  """Left: measured/predicted per setting (angle, norm) with the declared band; right: each
  setting's ‖w‖/predicted over training (last hidden layer), the window shaded."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=100)
  names = [s[0] for s in config.settings]
  for k, (q, marker) in enumerate((("angle", "o"), ("norm", "s"))):
    m, lo, hi = (
      np.array(v) for v in zip(*(ratio_interval(summ[n][f"log_{q}_ratio"]) for n in names))
    )
    x = np.arange(len(names)) + (k - 0.5) * 0.2
    ax.errorbar(
      x, m, yerr=[m - lo, hi - m], fmt=marker, capsize=3, label=f"{q}: measured / predicted"
    )
  ax.axhspan(1 / 1.1, 1.1, color="0.9", zorder=0, label="declared band")
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_xticks(range(len(names)), names, fontsize=8)
  ax.set(ylabel="measured / predicted (90% CI over seeds)", title="At the prediction?")
  approach_panel(bx, config, rows, cells)
  path = report.finish(fig, os.path.join(workdir, "equilibrium.png"), [ax, bx], fontsize=7)
  caption = (
    "Left: measured/predicted angular update and norm per setting (geometric mean over layers, "
    "90% CI over seeds; grey: the declared band). Right: a layer's norm over its prediction "
    "through training (grey: the averaging window)"
  )
  return caption, path


def approach_panel(bx, config, rows, cells) -> None:
  """‖w‖ / predicted of the last hidden layer over training, per setting (mean, 90% CI)."""
  for variant, variant_cells in cells.items():
    layer = next(si.paths(r)[-1] for r in rows[variant][0]["records"][::-1] if si.paths(r))
    for j, c in enumerate(variant_cells):
      cell_rows = protocol.rows_of(rows[variant], protocol.fields_of(c))
      for rec in (rec for r in cell_rows for rec in r["records"] if f"pred_norm/{layer}" in rec):
        rec["norm_over_prediction"] = rec[f"param_norm/{layer}"] / rec[f"pred_norm/{layer}"]
      steps, per_seed = report.seed_series(cell_rows, "norm_over_prediction")
      color = study.color("adamw" if variant == "adamw" else "sgd_l2")
      report.ci_band(
        bx, steps, per_seed, color=color, label=c["setting"], ls=("-", "--", ":")[j % 3]
      )
  bx.axvspan(config.run.steps * (1 - config.window), config.run.steps, color="0.9", zorder=0)
  bx.axhline(1.0, color="k", lw=0.8)
  bx.set(xlabel="training step", ylabel="‖w‖ / predicted (last hidden layer)", ylim=(0.0, 2.5))
  bx.set_title("Approach to equilibrium")


def run(config, workdir: str) -> dict[str, Any]:
  study.check(config, workdir, fields(config), measurement_names)
  return tune(config, workdir) if config.phase == "tune" else confirm(config, workdir)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  seeds = config.tune.seeds if config.phase == "tune" else config.confirm.seeds
  return len(config.settings) * len(seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, work=work)
