"""Does coupled L2 turn Adam's step away from the loss, and is that (not adaptivity) what hurts?

Plain Adam, Adam+L2, AdamW, stable weight decay (AdamS) and the 2×2 ablation (λθ in/out of m ×
in/out of v), in two phases (`wd_jax.study.phases`). **Tune** (``--config.phase=tune``): every
arm over the same lr × strength grid (τ/T, `wd_jax.study.strength`, plus λ = 0) on a tuning
draw with a few seeds; each arm's cell selected on validation items, with its stability and grid
edges; writes the pre-registration. **Confirm** (the default, the main job): only the
pre-registered cells — each arm's tuned cell; at Adam+L2's tuned lr and strength τ* the matched
ablation arms and AdamW; Adam+L2 and λθ-in-v-only at τ* × 4 and ÷ 4 — on fresh seeds and a fresh
draw, the test split read once per run and per item; claims decided over seeds × items, Holm
over the claims.

  python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py --workdir=runs/l2
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
from wd_jax.study import phases, protocol, report, schema, stats, strength

# arm -> (optimizer recipe, its flags). The L2 arms track m = m_loss + m_l2 (the step's turn).
RECIPES = {
  "adam": ("adamw", {}),  # λ = 0 only
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
TASKS = {"mnist1d": ("accuracy", True), "char_lm": ("loss", False)}  # metric, larger is better
ROLES = ("matched", "weak", "strong")  # cells at Adam+L2's tuned lr, τ* × 1, largest, smallest
FIELDS = {
  **phases.fields(learning_rates=schema.numbers(), tau_over_T=schema.numbers()),
  "task": schema.choice(tuple(TASKS)),
  "arms": schema.choices(tuple(RECIPES)),
  "strategy": schema.choice(("vmap", "sequential", "auto")),
  "resamples": schema.integer(minimum=20),
  "strength_factors": schema.numbers(),
  "matched_fallback": schema.number(low=0.0, open_low=True),
}


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  t, metric = config.task, f"test_{TASKS[config.task][0]}"
  tags = [*config.arms, *(f"{a}@{r}" for a in config.arms for r in ROLES)]
  out = [f"{t}/{tag}/{m}" for tag in tags for m in (metric, "step_turn@active", "step_turn@run")]
  return [*out, f"{t}/turn_predicts_harm"]


def arm_run(config, arm: str, phase: str):
  run = phases.phase_run(config, phase)
  run.optimizer.name, run.optimizer.kwargs = RECIPES[arm]
  return run


def lam_at(config, arm: str, lr: float, tau: float, probe) -> float | None:
  """The arm's λ at strength τ/T and lr (measured g² at init for the L2 arms), or None where
  Adam+L2 cannot reach it (every coordinate already moves by α)."""
  run = arm_run(config, arm, "tune")
  run.optimizer.learning_rate = lr
  try:
    return strength.weight_decays(run, RECIPES[arm][0], [tau], probe=probe)[0]
  except ValueError:
    return None


def tune_grid(config, arm: str, probe) -> list[dict[str, Any]]:
  lrs, taus = config.tune.learning_rates, config.tune.tau_over_T
  if arm == "adam":
    return [{"learning_rate": lr, "weight_decay": 0.0, "tau_over_T": None} for lr in lrs]
  pts = [(lr, tau, lam_at(config, arm, lr, tau, probe)) for lr in lrs for tau in taus]
  return [{"learning_rate": a, "weight_decay": c, "tau_over_T": b} for a, b, c in pts if c]


def confirm_cells(config, picks: dict[str, dict], probe) -> dict[str, list[dict]]:
  """Each arm's tuned cell, and the cells the claims read at Adam+L2's tuned lr and strength τ*
  (``@matched``: τ*; ``@weak``/``@strong``: τ* × the largest/smallest factor; ``@strength``:
  every factor, the pollution–harm slope)."""
  out = {a: [{**p, "roles": ["tuned"]}] for a, p in picks.items()}
  lr = picks["adam_l2"]["learning_rate"]
  tau = picks["adam_l2"]["tau_over_T"] or config.matched_fallback
  wanted = {m.split("/")[1] for c in claims_lib.parse(config.claims) for m in c.measurements}
  if "turn_predicts_harm" in wanted:
    wanted |= {"adam_l2@strength", "l2_v_only@strength"}
  factors = sorted({1.0, *config.strength_factors}, reverse=True)  # weakest (largest τ) first
  at = {"matched": [1.0], "weak": factors[:1], "strong": factors[-1:], "strength": factors}
  for tag in sorted(t for t in wanted if "@" in t):
    arm, role = tag.split("@")
    for f in at[role]:
      lam = lam_at(config, arm, lr, tau * f, probe)
      same = [
        c
        for c in out[arm]
        if c["learning_rate"] == lr and lam and math.isclose(c["weight_decay"], lam)
      ]
      if same:
        same[0]["roles"].append(role)
      elif lam is not None:
        out[arm].append(
          {"learning_rate": lr, "weight_decay": lam, "tau_over_T": tau * f, "roles": [role]}
        )
  return out


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase: grids on the tuning draw, selection on validation items, the pre-registration."""
  probe = strength.initial_grad_sq(arm_run(config, "adam_l2", "tune"))
  grids = {arm: tune_grid(config, arm, probe) for arm in config.arms}
  study.begin(config, workdir)
  rows = phases.tune_arms({a: arm_run(config, a, "tune") for a in grids}, grids, config, workdir)
  metric, larger = TASKS[config.task]
  score = lambda arm, cells: phases.scored(rows[arm], cells, "val_items", metric, config.tune.seeds)
  off = score("adam", grids["adam"])  # λ = 0: every arm's weakest strength
  cands = {a: score(a, grids[a]) + (off if a != "adam" else []) for a in grids}
  axes = {
    "learning_rate": config.tune.learning_rates,
    "tau_over_T": [None, *config.tune.tau_over_T],
  }
  sel = phases.select(cands, axes, larger=larger, resamples=config.resamples)
  picks = {}
  for arm, s in sel.items():
    grid = grids[arm] + (grids["adam"] if arm != "adam" else [])
    picks[arm] = next(c for c in grid if all(c[k] == v for k, v in s.choice.pick.items()))
  grid_info = {k: list(config.tune[k]) for k in ("learning_rates", "tau_over_T")}
  cells = confirm_cells(config, picks, probe)
  prereg = phases.preregister(config, f"l2_pollution/{config.task}", cells, sel, grid_info)
  fig = os.path.join(workdir, "tune_validation.png")
  phases.tune_panels(cands, sel, fig, higher_is_better=larger)
  figure = [("Validation by lr × strength", f"![validation {metric}](tune_validation.png)")]
  phases.write_tune_summary(workdir, f"L2 pollution ({config.task}): tune", prereg, sel, figure)
  lines = [*phases.tune_lines(sel), f"pre-registration {prereg.short}: {prereg.path}"]
  return {"findings": [], "lines": lines}


def turn(lr: float, active: bool):
  """A row's 1 − mean cos(step, loss-only step), over the records with α_t ≥ α/2 (where the
  decay acts) or over the whole run."""
  at_least = lr / 2 if active else None
  return lambda r: 1 - protocol.record_mean(r["records"], "step_cos", lr_at_least=at_least)


def measure(config, rows, cells) -> dict[str, Any]:
  """What the claims read: (seeds, test items) arrays, per-seed turns, the per-item slopes."""
  t, (metric, larger) = config.task, TASKS[config.task]
  out, slope = {}, {}
  for arm, arm_cells in cells.items():
    for c, (_, items) in zip(
      arm_cells, phases.scored(rows[arm], arm_cells, "test_items", metric, config.confirm.seeds)
    ):
      active = phases.per_seed(rows[arm], c, turn(c["learning_rate"], True))
      whole = phases.per_seed(rows[arm], c, turn(c["learning_rate"], False))
      out.setdefault("turns", []).append((arm, c, active, whole))
      for role in c["roles"]:
        tag = f"{t}/{arm if role == 'tuned' else f'{arm}@{role}'}"
        out[f"{tag}/test_{metric}"], out[f"{tag}/step_turn@active"] = items, active
        out[f"{tag}/step_turn@run"] = whole
        if role == "strength":
          slope.setdefault(c["tau_over_T"], {})[arm] = (items, active)
  taus = sorted(tau for tau, by in slope.items() if len(by) == 2)
  if taus:
    x = np.array([slope[tau]["adam_l2"][1] for tau in taus]).T  # (seeds, K) turns
    sign = 1.0 if larger else -1.0  # harm: what λθ in m costs, toward worse
    y = np.stack(
      [sign * (slope[tau]["l2_v_only"][0] - slope[tau]["adam_l2"][0]) for tau in taus], 1
    )
    out[f"{t}/turn_predicts_harm"] = stats.per_item_slopes(x, y)
    out["slope_points"] = [
      (tau, np.nanmean(x[:, k]), *stats.seeds_items_interval(y[:, k])) for k, tau in enumerate(taus)
    ]
  return out


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the pre-registered cells only, on fresh seeds and a fresh draw."""
  prereg, cells, rows = phases.start_confirm(config, workdir, arm_run)
  values = measure(config, rows, cells)
  findings = study.decide_claims(config, values)
  turns = {
    "turn_active": lambda r: turn(r["learning_rate"], True)(r),
    "turn_run": lambda r: turn(r["learning_rate"], False)(r),
  }
  diverged = phases.write_run_lines(workdir, rows, cells, turns)
  draw = (
    dict(config.confirm.dataset) if config.task == "mnist1d" else "files disjoint from tuning's"
  )
  study.write_summary(
    workdir,
    f"Coupled L2 in Adam's moments ({config.task}): confirm",
    findings,
    intro=INTRO.format(seeds=len(config.confirm.seeds), draw=draw),
    tables=tables(config, prereg, values),
    figures=figures(config, rows, cells, findings, values, workdir),
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}.",
  )
  return {"findings": findings, "rows": rows, "values": values}


INTRO = (
  "Confirm phase: only the pre-registered cells, on {seeds} fresh seeds and a fresh data draw "
  "({draw}); the test split read once per run, per item. Adam+L2 adds λθ to the gradient before "
  "Adam's moments; m splits exactly into m_loss + m_l2, and the turn 1 − cos(step, loss-only "
  "step) says how far λθ turns each step (decoupled arms: against the same state's step with "
  "λ = 0), where the decay acts (α_t ≥ α/2) and over the run. Strength is τ/T for every arm "
  "(AdamW's λ = 1/(α τ); the L2 arms' and AdamS's λ shrink the weights at 1/τ per step at "
  "initialisation)."
)


def tau_text(tau) -> str:
  return "— (λ = 0)" if tau is None else (f"1/{1 / tau:g}" if tau < 1 else f"{tau:g}")


def tables(config, prereg, values) -> list[tuple[str, str]]:
  t, metric = config.task, f"test_{TASKS[config.task][0]}"
  items = {a: values[f"{t}/{a}/{metric}"] for a in config.arms}
  turn_rows = [
    [arm, f"{c['learning_rate']:g}", tau_text(c["tau_over_T"]), ", ".join(c["roles"])]
    + [study.fmt(v, 4) for v in (active, whole)]
    for arm, c, active, whole in values["turns"]
  ]
  head = ["arm", "lr", "τ/T", "cell's roles", "α_t ≥ α/2", "whole run"]
  out = [
    (
      "Pre-registered cells: test metric over seeds × items, and the difference from plain Adam",
      phases.arms_table(prereg, items, metric, "adam"),
    ),
    (
      "The step's turn from the loss-only step, 1 − cos (mean ± sd over seeds)",
      study.markdown_table(head, turn_rows),
    ),
  ]
  if "slope_points" in values:
    pts = [
      [tau_text(tau), f"{x:.4f}", f"{y:+.4f} [{lo:+.4f}, {hi:+.4f}]"]
      for tau, x, y, lo, hi in values["slope_points"]
    ]
    head = ["τ/T", "Adam+L2 turn (α_t ≥ α/2)", "harm of λθ in m [90% CI]"]
    out.append(
      (
        "Pollution and harm across strengths, at Adam+L2's tuned lr",
        study.markdown_table(head, pts),
      )
    )
  return out


def figures(config, rows, cells, findings, values, workdir) -> list[tuple[str, str]]:
  t, metric = config.task, TASKS[config.task][0]
  same_unit = [f for f in findings if f.claim.measurements[0].endswith(f"test_{metric}")]
  path = os.path.join(workdir, f"{t}_claims.png")
  report.forest(same_unit, path, f"effect on test {metric}")
  out = [
    (
      f"{t}: each test-{metric} claim's effect and 90% interval over seeds × items; dotted: "
      "the declared bound",
      path,
    )
  ]
  fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=100)
  for arm in ("adam_l2", "l2_m_only", "adamw"):
    c = next((c for c in cells.get(arm, []) if "matched" in c["roles"]), None)
    if c is not None:
      cell_rows = protocol.rows_of(rows[arm], protocol.fields_of(c))
      report.ci_band(
        ax, *report.seed_series(cell_rows, "step_cos"), color=study.color(arm), label=arm
      )
      on = [
        r["step"]
        for r in cell_rows[0]["records"]
        if r.get("learning_rate", 0) >= c["learning_rate"] / 2
      ]
  ax.axvspan(min(on), max(on), color="0.92", zorder=0, label="α_t ≥ α/2")
  ax.set(xlabel="training step", ylabel="cos(step, loss-only step)", title=f"{t}: matched strength")
  path = report.finish(fig, os.path.join(workdir, f"{t}_step_cos.png"), [ax], fontsize=7)
  out.append(
    (
      f"{t}: cos(step, loss-only step) over training at Adam+L2's tuned lr and strength "
      "(mean, 90% CI over seeds); shaded: the steps with α_t ≥ α/2",
      path,
    )
  )
  if "slope_points" in values:
    fig, ax = plt.subplots(figsize=(4.6, 3.4), dpi=100)
    for tau, x, y, lo, hi in values["slope_points"]:
      ax.errorbar(
        [x], [y], yerr=[[y - lo], [hi - y]], fmt="o", capsize=3, color=study.color("adam_l2")
      )
      ax.annotate(
        f"τ/T {tau_text(tau)}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7
      )
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set(xlabel="Adam+L2's turn, 1 − cos (α_t ≥ α/2)", ylabel=f"harm of λθ in m (test {metric})")
    path = report.finish(fig, os.path.join(workdir, f"{t}_turn_vs_harm.png"), [ax], legend=False)
    out.append(
      (
        f"{t}: what λθ in m costs (λθ-in-v-only − Adam+L2, 90% CI over seeds × items) "
        "against how far it turns Adam+L2's step, at three strengths",
        path,
      )
    )
  return out


run = study.two_phases(tune, confirm, FIELDS, measurement_names)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  return phases.work(config, confirm_cells=len(config.arms) + 7, tune_arms=len(config.arms))


if __name__ == "__main__":
  study.main(run, work=work)
