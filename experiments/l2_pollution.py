"""Does coupled L2 turn Adam's step away from the loss, and is that (not adaptivity) what hurts?

Adam+L2, AdamW, stable weight decay (AdamS) and the 2×2 ablation (λθ in/out of m × in/out of v),
each over a strength × seed grid run by `wd_jax.engine.sweep`, strength in one unit for every arm:
τ/T,
the decay's timescale over the run (`wd_jax.study.strength`). Adam+L2 and AdamW are also tuned
over the learning rate. Measures how far each step is from the loss-only step over training
(`wd_jax.diagnostics.pollution` for the L2 arms, `step_deviation` for the decoupled ones), and
the accuracy each arm ends at. Writes figures, metrics.jsonl (one line per run) and summary.md
with the verdicts on the claims declared in the config. Configurations are selected on a
validation split; the test split is read once, for the selected configuration and for the
matched strength the claims name in advance.

  python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py --workdir=runs/l2
"""

from __future__ import annotations

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
from wd_jax.engine.runlog import read_metrics, write_atomic
from wd_jax.study import claims as claims_lib
from wd_jax.study import protocol, report, schema, strength

# variant -> (optimizer recipe, its flags). Every Adam+L2 variant tracks m = m_loss + m_l2.
VARIANTS = {
  "adam_l2": ("adam_l2", {"track_moments": True}),
  "l2_m_only": ("adam_l2", {"track_moments": True, "l2_in_second_moment": False}),
  "l2_v_only": ("adam_l2", {"track_moments": True, "l2_in_first_moment": False}),
  "l2_neither": (
    "adam_l2",
    {"track_moments": True, "l2_in_first_moment": False, "l2_in_second_moment": False},
  ),
  "adams": ("adams", {}),
  "adamw": ("adamw", {}),
}
LABELS = {
  "adam_l2": "Adam+L2 (λθ in m and v)",
  "l2_m_only": "λθ in m only",
  "l2_v_only": "λθ in v only",
  "l2_neither": "λθ in neither",
  "adams": "AdamS (λθ/√v̄, stable)",
  "adamw": "AdamW (decoupled)",
}
# The metric each task is judged by, and whether larger is better.
TASK_METRIC = {"mnist1d": ("test_accuracy", True), "char_lm": ("test_loss", False)}
TASK_TITLE = {"mnist1d": "MNIST-1D, MLP", "char_lm": "char-level Transformer"}
PHASES = ("early", "mid", "late")  # thirds of the run
# Arms whose λθ is added to the step outside m: `diagnostics.pollution` reads m's split, which
# is then all loss (cos 1 by construction), so their step turn is not measured.
NOT_IN_M = ("l2_v_only", "l2_neither")


FIELDS = {
  "variants": schema.choices(tuple(VARIANTS)),
  "tuned_variants": schema.choices(tuple(VARIANTS)),
  "strategy": schema.choice(sweep.STRATEGIES),
  "matched": schema.number(low=0.0, open_low=True),
  "tasks": schema.each(
    {
      "run": schema.run_config(datasets=("mnist1d", "char_corpus")),
      "tau_over_T": schema.numbers(),
      "seeds": schema.ints(),
      "learning_rates": schema.numbers(),
    }
  ),
}


def _tau_key(tau: float) -> str:
  return f"@tau{tau:g}"


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  out = []
  for name, task in config.tasks.items():
    if name not in TASK_METRIC:
      raise ValueError(f"config.tasks has {name!r}; valid: {sorted(TASK_METRIC)}.")
    metric = TASK_METRIC[name][0]
    taus = sorted(task.tau_over_T)
    if not any(math.isclose(t, config.matched) for t in taus):
      raise ValueError(
        f"config.matched={config.matched!r} must be one of config.tasks.{name}.tau_over_T "
        f"{tuple(taus)}: the claims read the test split there."
      )
    for v in config.variants:
      out += [f"{name}/{v}/{metric}@tuned", f"{name}/{v}/{metric}{_tau_key(config.matched)}"]
      out += [f"{name}/{v}/step_cos{_tau_key(t)}" for t in taus]
      out += [f"{name}/{v}/step_cos@{w}" for w in ("weakest", "strongest")]
  return out


def _lrs(config, task, v) -> list[float]:
  own = float(task.run.optimizer.learning_rate)
  return (
    sorted(set(map(float, task.learning_rates)) | {own}) if v in config.tuned_variants else [own]
  )


def grid(config, name: str, task, v: str, probe) -> tuple[list[dict], dict[tuple, float]]:
  """The variant's configurations (lr × τ/T × seed as lr, λ, seed) and (lr, λ) -> τ/T.

  A strength Adam+L2 cannot reach at an lr (every coordinate already moves by α) is left out of
  that lr's grid and reported."""
  recipe = VARIANTS[v][0]
  points, tau_of = [], {}
  for lr in _lrs(config, task, v):
    run = task.run.copy_and_resolve_references()
    run.optimizer.learning_rate = lr
    for tau in task.tau_over_T:
      try:
        (lam,) = strength.weight_decays(run, recipe, [tau], probe=probe)
      except ValueError as e:
        print(f"{name}/{v}: lr {lr:g}, τ/T {tau:g} left out: {e}")
        continue
      tau_of[(lr, lam)] = float(tau)
      points += [{"learning_rate": lr, "weight_decay": lam, "seed": s} for s in task.seeds]
  return points, tau_of


def plan(config) -> dict[str, dict[str, tuple[list[dict], dict[tuple, float]]]]:
  """Every task's and variant's grid, before anything is written: a variant none of whose
  strengths can be reached is a config error."""
  out = {}
  for name, task in config.tasks.items():
    probe = strength.initial_grad_sq(task.run)
    out[name] = {v: grid(config, name, task, v, probe) for v in config.variants}
    own = float(task.run.optimizer.learning_rate)
    for v, (_, tau_of) in out[name].items():
      if not any(lr == own and math.isclose(t, config.matched) for (lr, _), t in tau_of.items()):
        raise ValueError(
          f"config.tasks.{name}: {v} cannot reach the matched strength τ/T = "
          f"{config.matched:g} at lr {own:g} ({task.run.steps} steps); lengthen the run or "
          "choose a weaker config.matched."
        )
  return out


def run_task(name: str, task: ml_collections.ConfigDict, config, workdir: str, grids):
  """variant -> rows of `sweep.run_sweep` (with ``tau_over_T`` and the metric records).

  lr and strength are tuned on the validation split; the test split is read for the tuned
  configuration and for the matched strength at the run's own lr (named in advance)."""
  metric, larger = TASK_METRIC[name]
  own = float(task.run.optimizer.learning_rate)
  out = {}
  for v in config.variants:
    recipe, kwargs = VARIANTS[v]
    base = task.run.copy_and_resolve_references()
    base.optimizer.name = recipe
    base.optimizer.kwargs = kwargs
    points, tau_of = grids[v]
    matched = [
      {"learning_rate": lr, "weight_decay": lam}
      for (lr, lam), t in tau_of.items()
      if lr == own and math.isclose(t, config.matched)
    ]
    select = protocol.selector(
      by=("learning_rate", "weight_decay"),
      metric=metric.replace("test_", "val_"),
      larger=larger,
      fixed=matched,
    )
    vdir = os.path.join(workdir, name, v)
    rows = sweep.run_sweep(
      base, points, vdir, strategy=config.strategy, verbose=False, select=select
    )
    for r in rows:
      r["tau_over_T"] = tau_of[(r["learning_rate"], r["weight_decay"])]
      r["records"] = read_metrics(os.path.join(vdir, r["run_dir"], "metrics.jsonl"))
    out[v] = rows
  return out


def _at(rows, lr, tau) -> dict[str, Any]:
  """The configuration of `rows` at this lr and τ/T (its λ), or None if it was left out."""
  for r in rows:
    if r["learning_rate"] == lr and math.isclose(r["tau_over_T"], tau):
      return {"learning_rate": lr, "weight_decay": r["weight_decay"]}
  return None


def _mean_step_cos(rows, values, phase: str | None = None) -> list[float]:
  """Per seed: the mean over the run's diagnostics records (or one third of them) of
  cos(step, loss-only step); NaN where diverged or never logged."""
  out = []
  for r in protocol.rows_of(rows, values):
    xs = [rec["step_cos"] for rec in r["records"] if rec.get("step_cos") is not None]
    if phase is not None and xs:
      k = PHASES.index(phase)
      n = len(xs)
      xs = xs[k * n // 3 : (k + 1) * n // 3]
    out.append(float(np.mean(xs)) if xs and not r["diverged"] else math.nan)
  return out


def measure(name: str, res: dict[str, list[dict]], task, matched: float) -> dict[str, Any]:
  """The task's measurements, one value per seed in seed order."""
  metric, larger = TASK_METRIC[name]
  own = float(task.run.optimizer.learning_rate)
  taus = sorted(task.tau_over_T)
  seeds = len(task.seeds)
  nan = [math.nan] * seeds
  out = {}
  for v, rows in res.items():
    best = protocol.select_best(
      rows,
      by=("learning_rate", "weight_decay"),
      metric=metric.replace("test_", "val_"),
      larger=larger,
    )
    out[f"{name}/{v}/{metric}@tuned"] = protocol.per_seed(rows, metric, best) if best else nan
    out[f"{name}/{v}/selected"] = best
    for t in taus:
      at = _at(rows, own, t)
      out[f"{name}/{v}/step_cos{_tau_key(t)}"] = _mean_step_cos(rows, at) if at else nan
      if math.isclose(t, matched):
        out[f"{name}/{v}/{metric}{_tau_key(matched)}"] = (
          protocol.per_seed(rows, metric, at) if at else nan
        )
    out[f"{name}/{v}/step_cos@weakest"] = out[f"{name}/{v}/step_cos{_tau_key(max(taus))}"]
    out[f"{name}/{v}/step_cos@strongest"] = out[f"{name}/{v}/step_cos{_tau_key(min(taus))}"]
  return out


def _val(name):
  return TASK_METRIC[name][0].replace("test_", "val_")


def plot_task(name: str, res: dict[str, list[dict]], task, workdir: str) -> list[tuple[str, str]]:
  title, val = TASK_TITLE[name], _val(name)
  own = float(task.run.optimizer.learning_rate)
  taus = sorted(task.tau_over_T, reverse=True)  # weakest first
  figs = []
  # 1. The headline: how far the step is from the loss-only step, over training, per strength.
  shown = [v for v in ("adam_l2", "adams", "adamw") if v in res]
  fig, axes = plt.subplots(1, len(taus), figsize=(3.0 * len(taus), 3.0), dpi=100, sharey=True)
  axes = np.atleast_1d(axes)
  for ax, t in zip(axes, taus):
    for v in shown:
      at = _at(res[v], own, t)
      if at is None:
        continue
      steps, per_seed = report.seed_series(protocol.rows_of(res[v], at), "step_cos")
      if steps.size:
        report.ci_band(ax, steps, per_seed, color=study.color(v), label=LABELS[v])
    ax.set(title=f"τ/T = {t:g}", xlabel="training step", ylim=(-0.05, 1.05))
  axes[0].set_ylabel("cos(step, loss-only step)")
  path = report.finish(fig, os.path.join(workdir, f"{name}_step_cos.png"), [axes[-1]], fontsize=7)
  figs.append(
    (
      f"{title}: cosine between each step and the loss-only step over training (mean, 90% CI "
      f"over seeds), at matched strengths τ/T (lr {own:g}); 1 = the step is the loss's",
      path,
    )
  )
  # 2. Validation metric vs strength, every arm at the run's own lr.
  fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
  for v, rows in res.items():
    xs, per = [], []
    for t in taus:
      at = _at(rows, own, t)
      if at is not None:
        xs.append(t)
        per.append(protocol.per_seed(rows, val, at))
    report.ci_errorbar(ax, xs, per, color=study.color(v), marker="o", ms=4, label=LABELS[v])
  ax.set_xscale("log")
  ax.invert_xaxis()  # stronger decay to the right
  ylabel = "validation accuracy" if val == "val_accuracy" else "validation loss (nats/char)"
  ax.set(
    title=f"{ylabel.capitalize()} vs strength — {title}",
    xlabel="τ/T (decay timescale / run length; stronger →)",
    ylabel=ylabel,
  )
  path = report.finish(
    fig, os.path.join(workdir, f"{name}_{val}_vs_strength.png"), [ax], fontsize=7
  )
  figs.append(
    (
      f"{title}: final {val} vs strength τ/T at lr {own:g} (mean, 90% CI over seeds; the test "
      "split is read only for the configurations the claims name)",
      path,
    )
  )
  return figs


def _mean_cell(values) -> str:
  finite = [x for x in values if math.isfinite(x)]
  return f"{np.mean(finite):.2f}" if finite else "n/a"


def _fmt_cfg(rows, cfg) -> str:
  if not cfg:
    return "none (all diverged)"
  r = protocol.rows_of(rows, cfg)[0]
  return f"lr {cfg['learning_rate']:g}, τ/T {r['tau_over_T']:g} (λ {cfg['weight_decay']:.3g})"


def _near_best(rows, val: str, larger: bool, within: float) -> tuple[int, int]:
  """(cells within `within` of the best mean validation score, cells) over lr × strength:
  Bjorck et al.'s payoff of decoupling, a wider region of good settings."""
  cells = protocol.configurations(rows, ("learning_rate", "weight_decay"))
  scores = [protocol.score(protocol.rows_of(rows, c), val) for c in cells]
  finite = [s for s in scores if math.isfinite(s)]
  if not finite:
    return 0, len(cells)
  best = max(finite) if larger else min(finite)
  return sum(1 for s in finite if abs(s - best) <= within), len(cells)


def tables(name: str, res, task, values, config) -> list[tuple[str, str]]:
  metric, larger = TASK_METRIC[name]
  val, own = _val(name), float(task.run.optimizer.learning_rate)
  taus = sorted(task.tau_over_T, reverse=True)
  out = []
  header = ["variant", *[f"{val} τ/T={t:g}" for t in taus], "selected (lr × τ/T)", f"{metric}"]
  rows = []
  for v, r in res.items():
    cells = []
    for t in taus:
      at = _at(r, own, t)
      cells.append(study.fmt(protocol.per_seed(r, val, at)) if at else "unreachable")
    sel = values[f"{name}/{v}/selected"]
    rows.append(
      [LABELS[v], *cells, _fmt_cfg(r, sel), study.fmt(values[f"{name}/{v}/{metric}@tuned"])]
    )
  out.append(
    (
      f"{TASK_TITLE[name]}: final validation metric by strength at lr {own:g} (mean ± sd over "
      "seeds), the configuration selected on it over lr × strength, and the test metric read "
      "once there",
      study.markdown_table(header, rows),
    )
  )
  lam_rows = []
  for v, r in res.items():
    lams = []
    for t in taus:
      at = _at(r, own, t)
      lams.append(f"{at['weight_decay']:.3g}" if at else "unreachable")
    lam_rows.append([LABELS[v], *lams])
  out.append(
    (
      f"{TASK_TITLE[name]}: each arm's own λ at each strength τ/T (lr {own:g}, T = "
      f"{task.run.steps} steps)",
      study.markdown_table(["variant", *[f"τ/T={t:g}" for t in taus]], lam_rows),
    )
  )
  cos_rows = []
  for v, r in res.items():
    cells = []
    for t in taus:
      at = _at(r, own, t)
      if at is None:
        cells.append("unreachable")
        continue
      if v in NOT_IN_M:
        cells.append("— (λθ not in m)")
        continue
      cells.append(" / ".join(_mean_cell(_mean_step_cos(r, at, p)) for p in PHASES))
    cos_rows.append([LABELS[v], *cells])
  out.append(
    (
      f"{TASK_TITLE[name]}: cos(step, loss-only step), mean over seeds, early / mid / late "
      f"thirds of the run (lr {own:g}); 1 = the step is the loss's. The arms with λθ outside m "
      "add it to the step directly; the split of m does not see it, so they have no entry",
      study.markdown_table(["variant", *[f"τ/T={t:g}" for t in taus]], cos_rows),
    )
  )
  within = 0.01 if larger else 0.02  # one accuracy point / 0.02 nats per char
  region = []
  for v in config.tuned_variants:
    if v in res:
      k, n = _near_best(res[v], val, larger, within)
      region.append([LABELS[v], f"{k} of {n}"])
  if region:
    out.append(
      (
        f"{TASK_TITLE[name]}: lr × strength cells whose mean {val} is within {within:g} of the "
        "arm's best (Bjorck et al.'s payoff of decoupling: a wider good region)",
        study.markdown_table(["variant", "cells near the best"], region),
      )
    )
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  grids = plan(config)
  study.begin(config, workdir)
  all_tables, figures, lines, results, values = [], [], [], {}, {}
  for name, task in config.tasks.items():
    res = run_task(name, task, config, workdir, grids[name])
    results[name] = res
    for v, rows in res.items():
      for r in rows:
        lines.append(
          {
            "task": name,
            "variant": v,
            "learning_rate": r["learning_rate"],
            "tau_over_T": r["tau_over_T"],
            "weight_decay": r["weight_decay"],
            "seed": r["seed"],
            **{
              k: r[k] for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss") if k in r
            },
            "diverged": r["diverged"],
            "mean_step_cos": _mean_step_cos([r], {})[0],
          }
        )
    values.update(measure(name, res, task, config.matched))
    all_tables += tables(name, res, task, values, config)
    figures += plot_task(name, res, task, workdir)
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  describe = lambda c: "; ".join(f"{m}: {study.fmt(values[m])}" for m in c.measurements)
  findings = claims_lib.decide(declared, values, describe)
  diverged = sum(1 for x in lines if x["diverged"])
  study.write_summary(
    workdir,
    "Coupled L2 in Adam's moments: how far it turns the step, and what it costs",
    findings,
    intro=(
      "Adam+L2 adds λθ to the gradient before Adam's moments; the first moment then splits "
      "exactly into m_loss + m_l2 (tracked here), and the step m/(√v̂+ε) into the loss's part and "
      "λθ's. cos(step, loss-only step) says how far λθ turns each step (for decoupled arms, "
      "against the same state's step with λ = 0). The 2×2 ablation moves λθ in or out of m and v "
      "separately; AdamS divides λθ by one global √v̄. Strength is τ/T for every arm: AdamW's λ "
      "is 1/(α τ), the L2 arms' and AdamS's λ shrinks the weights at 1/τ per step at "
      "initialisation (wd_jax.matched_weight_decay). Configurations are selected on a validation "
      "split carved from the training data; the test split is read once, for the selected "
      "configuration and the matched strength the claims name."
    ),
    tables=all_tables,
    figures=figures,
    footer=f"**Diverged runs**: {diverged} of {len(lines)}.",
  )
  return {"findings": findings, "results": results}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  total = 0
  for t in config.tasks.values():
    for v in config.variants:
      total += len(_lrs(config, t, v)) * len(t.tau_over_T) * len(t.seeds) * t.run.steps
  return total


if __name__ == "__main__":
  study.main(run, work=work)
