"""When does weight decay matter? Golatkar's critical-period curve, in two phases.

**Tune** (``--config.phase=tune``): whole-run decay over lr × strength (τ/T) plus λ = 0, on a
tuning draw, selected on validation items (stability, grid edges); writes the pre-registration.
**Confirm** (the default): at whole's tuned lr and λ, early-only (decay until the switch s) and
late-only (decay from s) for every s of ``config.switches``, whole, none at the same lr and none
at its own tuned lr, on fresh seeds and a fresh draw; test items read once per run; claims on
the curve's shape and on the scale-invariant weights' norm, over seeds × items, Holm.

  python experiments/early_wd.py --config=experiments/configs/early_wd.py --workdir=runs/early_wd
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
from wd_jax.engine import config as config_lib
from wd_jax.study import lr_strength, phases, protocol, report, schema, stats, strength
from wd_jax.study import scale_invariant as si

FIELDS = {
  **phases.fields(learning_rates=schema.numbers(), tau_over_T=schema.numbers()),
  "switches": schema.numbers(),
  "strategy": schema.choice(("vmap", "sequential", "auto")),
  "resamples": schema.integer(minimum=20),
  "fallback_tau_over_T": schema.number(low=0.0, open_low=True),
}


def arms(config) -> list[str]:
  """none, whole, then early_<s%> and late_<s%> for every switch s."""
  pct = [round(100 * s) for s in config.switches]
  return ["none", "whole", *(f"early_{p}" for p in pct), *(f"late_{p}" for p in pct)]


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  tags = [*arms(config), "none@matched"]
  out = [f"{t}/{m}" for t in tags for m in ("test_accuracy", "final_log_norm")]
  timed = arms(config)[2:]
  return out + [f"{a}/{m}" for a in timed for m in ("above_midpoint", "log_norm_vs_midpoint")]


def arm_run(config, arm: str, phase: str, lr: float | None = None):
  """The phase's run with the arm's λ schedule (constant for none/whole, else early/late at s)."""
  run = phases.phase_run(config, phase)
  kind, _, pct = arm.partition("_")
  run.optimizer.wd_schedule = kind if pct else "constant"
  run.optimizer.wd_switch_fraction = int(pct) / 100 if pct else 0.5
  if lr is not None:
    run.optimizer.learning_rate = lr
  return run


def decay_received(run, lam: float) -> float:
  """Σ_t c_t λ_t, in timescales: how much the arm's decay shrinks over the run (coupled L2
  through momentum μ: c_t = α_t/(1 − μ) while λ_t is on)."""
  if not lam:
    return 0.0
  t = np.arange(run.steps)
  lr = np.asarray(config_lib.learning_rate_schedule(run)(t))
  wd = config_lib.weight_decay_schedule(run, lam)
  wd = np.asarray(wd(t)) if callable(wd) else wd
  return float(np.sum(lr * wd) / (1.0 - run.optimizer.kwargs.get("momentum", 0.0)))


def tune_grids(config) -> dict[str, list[dict]]:
  """none: every lr at λ = 0; whole: every lr × τ/T (λ from `wd_jax.study.strength`)."""
  lrs, taus = config.tune.learning_rates, config.tune.tau_over_T
  run_at = lambda lr: arm_run(config, "whole", "tune", lr)
  return {"none": lr_strength.off(lrs), "whole": lr_strength.cells(run_at, "sgd_l2", lrs, taus)}


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase: whole over lr × τ/T (+ λ = 0) on the tuning draw, selection on validation."""
  grids = tune_grids(config)
  study.begin(config, workdir)
  rows = phases.tune_arms({a: arm_run(config, a, "tune") for a in grids}, grids, config, workdir)
  score = lambda a: phases.scored(rows[a], grids[a], "val_items", "accuracy", config.tune.seeds)
  cands = {"none": score("none"), "whole": score("none") + score("whole")}
  axes = {
    "learning_rate": config.tune.learning_rates,
    "tau_over_T": [None, *config.tune.tau_over_T],
  }
  sel = phases.select(cands, axes, larger=True, resamples=config.resamples)
  every = grids["none"] + grids["whole"]
  picks = {a: lr_strength.find(every, s.choice.pick) for a, s in sel.items()}
  cells = confirm_cells(config, picks)
  received = {
    a: decay_received(arm_run(config, a, "tune", c[0]["learning_rate"]), c[0]["weight_decay"])
    for a, c in cells.items()
  }
  extra = {k: list(config.tune[k]) for k in ("learning_rates", "tau_over_T")}
  prereg = phases.preregister(config, "early_wd", cells, sel, {**extra, "decay_received": received})
  path = os.path.join(workdir, "tune_validation.png")
  fig = phases.tune_panels({"whole": cands["whole"]}, {"whole": sel["whole"]}, path)
  premise = premise_text(cands, sel)
  tables = [
    ("Premise on validation", f"{premise}\n\n![validation]({os.path.basename(fig)})"),
    ("Decay each confirm arm receives (Σ_t c_t λ_t, in timescales)", received_table(received)),
  ]
  phases.write_tune_summary(workdir, "Early vs late weight decay: tune", prereg, sel, tables)
  lines = [
    f"{a}: {phases.cell_text(s.choice.pick)}; {'; '.join(s.edges) or 'interior'}"
    for a, s in sel.items()
  ]
  return {
    "findings": [],
    "lines": [*lines, premise, f"pre-registration {prereg.short}: {prereg.path}"],
  }


def premise_text(cands, sel) -> str:
  """Whole's validation gain over none, in sd of none's seed-to-seed spread (each at its pick)."""
  picked = lambda a: next(v for c, v in cands[a] if c == sel[a].choice.pick)
  whole, none = picked("whole").mean(axis=1), picked("none").mean(axis=1)  # per-seed means
  gap, spread = whole.mean() - none.mean(), np.std(none, ddof=1)
  out = (
    f"whole − none on validation {gap:+.4f}, {gap / spread:.1f} sd of none's seeds ({spread:.4f})"
  )
  if sel["whole"].choice.pick["tau_over_T"] is None:
    out += "; whole selected λ = 0: the curve runs at the declared fallback strength"
  return out


def received_table(received) -> str:
  rows = [[a, f"{v:.2f}"] for a, v in received.items()]
  return study.markdown_table(["arm", "decay received (timescales)"], rows)


def confirm_cells(config, picks) -> dict[str, list[dict]]:
  """whole's tuned cell for whole and every early/late arm; none at its own lr and at whole's."""
  w = dict(picks["whole"])
  if not w["weight_decay"]:  # whole selected λ = 0: the curve at the declared fallback strength
    tau = config.fallback_tau_over_T
    run = arm_run(config, "whole", "tune", w["learning_rate"])
    w.update(tau_over_T=tau, weight_decay=strength.weight_decays(run, "sgd_l2", [tau])[0])
  none = {**picks["none"], "roles": ["tuned"]}
  out = {"whole": [{**w, "roles": ["tuned"]}], "none": [none]}
  if none["learning_rate"] == w["learning_rate"]:
    none["roles"].append("matched")
  else:
    matched = {"learning_rate": w["learning_rate"], "weight_decay": 0.0, "tau_over_T": None}
    out["none"].append({**matched, "roles": ["matched"]})
  for arm in arms(config)[2:]:
    out[arm] = [{**w, "roles": ["curve"]}]
  return out


def final_log_norm(row) -> float:
  return math.log(si.value_at(row["records"], si.KEY))


def measure(config, rows, cells) -> dict[str, Any]:
  """Per arm and role: (seeds, test items) accuracy and the per-seed final log ‖w‖; then each
  early/late arm's distance above the none–whole midpoint, in accuracy (items) and log ‖w‖."""
  out: dict[str, Any] = {}
  seeds = config.confirm.seeds
  for arm, arm_cells in cells.items():
    scored = phases.scored(rows[arm], arm_cells, "test_items", "accuracy", seeds)
    for c, (_, items) in zip(arm_cells, scored):
      norms = np.array(phases.per_seed(rows[arm], c, final_log_norm))
      for role in c["roles"]:
        tag = "none@matched" if role == "matched" else arm
        out[f"{tag}/test_accuracy"], out[f"{tag}/final_log_norm"] = items, norms
  mid = lambda m: 0.5 * (out[f"whole/{m}"] + out[f"none@matched/{m}"])
  for arm in arms(config)[2:]:
    out[f"{arm}/above_midpoint"] = out[f"{arm}/test_accuracy"] - mid("test_accuracy")
    out[f"{arm}/log_norm_vs_midpoint"] = out[f"{arm}/final_log_norm"] - mid("final_log_norm")
  return out


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the pre-registered cells only, on fresh seeds and a fresh draw."""
  prereg, cells, rows = phases.start_confirm(config, workdir, arm_run)
  for arm_rows in rows.values():
    si.add_norms(arm_rows)
  values = measure(config, rows, cells)
  findings = study.decide_claims(config, values)
  diverged = phases.write_run_lines(workdir, rows, cells, {"final_log_norm": final_log_norm})
  w = cells["whole"][0]
  intro = INTRO.format(
    seeds=len(config.confirm.seeds),
    draw=dict(config.confirm.dataset),
    lr=w["learning_rate"],
    lam=w["weight_decay"],
    tau=w["tau_over_T"],
    edges="; ".join(prereg.body["selection"]["whole"]["edges"]) or "interior",
  )
  study.write_summary(
    workdir,
    "Early vs late weight decay: confirm",
    findings,
    intro=intro,
    tables=[("Per arm (90% CI over seeds × test items)", table(config, prereg, values, rows))],
    figures=[figure(config, values, rows, cells, workdir)],
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}.",
  )
  return {"findings": findings, "rows": rows, "values": values}


INTRO = (
  "Confirm phase: only the pre-registered cells, on {seeds} fresh seeds and a fresh MNIST-1D draw "
  "({draw}); the test split read once per run, per item. Every early/late arm runs at whole-run "
  "decay's tuned peak lr {lr:g} and λ = {lam:.3g} (τ/T = {tau:g}); early-only: λ on for the steps "
  "before s·T, late-only: from s·T on. Whole's tuned cell on its grid: {edges} (the strength grid "
  "stops at τ/T = 1/16 by design: τ no shorter than the switch grid's 5% step). ‖w‖: the norm of "
  "the scale-invariant hidden kernels."
)


def table(config, prereg, values, rows) -> str:
  """Each arm: decay received, test accuracy and its difference from none at the same lr, the
  final ‖w‖ and (early-only arms) ‖w‖ at the switch."""
  received = prereg.body["tune"]["decay_received"]
  none = values["none@matched/test_accuracy"]
  out = []
  same = len(prereg.body["cells"]["none"]) == 1  # none's own lr is whole's: one cell
  for tag in ["none", *([] if same else ["none@matched"]), *arms(config)[1:]]:
    arm = tag.split("@")[0]
    m, lo, hi = stats.seeds_items_interval(values[f"{tag}/test_accuracy"])
    d, dlo, dhi = stats.seeds_items_interval(values[f"{tag}/test_accuracy"], none)
    at = "—"
    if arm.startswith("early"):
      step = int(arm.split("_")[1]) / 100 * config.run.steps
      at = f"{np.nanmean([si.value_at(r['records'], si.KEY, step) for r in rows[arm]]):.1f}"
    norm = math.exp(np.nanmean(values[f"{tag}/final_log_norm"]))
    diff = "—" if tag.startswith("none") else f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
    lam = 0.0 if tag.startswith("none") else received.get(arm, 0.0)
    out.append([tag, f"{lam:.2f}", f"{m:.4f} [{lo:.4f}, {hi:.4f}]", diff, f"{norm:.1f}", at])
  head = ["arm", "decay received (τ)", "test accuracy", "− none, same lr", "final ‖w‖", "‖w‖ at s"]
  return study.markdown_table(head, out)


def figure(config, values, rows, cells, workdir: str) -> tuple[str, str]:
  """Left: test accuracy against the switch point s, early-only and late-only; right: ‖w‖."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.0, 3.8), dpi=100)
  xs = 100 * np.array([0.0, *config.switches, 1.0])
  for kind, (first, last) in {
    "early": ("none@matched", "whole"),
    "late": ("whole", "none@matched"),
  }.items():
    tags = [first, *(f"{kind}_{round(100 * s)}" for s in config.switches), last]
    m, lo, hi = (
      np.array(v)
      for v in zip(*(stats.seeds_items_interval(values[f"{t}/test_accuracy"]) for t in tags))
    )
    label = "decay until s (early-only)" if kind == "early" else "decay from s (late-only)"
    ax.errorbar(
      xs, m, yerr=[m - lo, hi - m], color=study.color(kind), marker="o", capsize=3, label=label
    )
  ax.set(
    xlabel="switch point s (% of training)", ylabel="test accuracy", title="When the decay acts"
  )
  for arm, ls in (("none", ":"), ("whole", "-"), ("early_25", "-"), ("late_50", "--")):
    c = next(c for c in cells[arm] if arm != "none" or "matched" in c["roles"])
    steps, per_seed = report.seed_series(protocol.rows_of(rows[arm], protocol.fields_of(c)), si.KEY)
    report.ci_band(
      bx, steps, per_seed, color=study.color(arm.split("_")[0]), label=arm, ls=ls, log=True
    )
  bx.set_yscale("log")
  report.plain_log_ticks(bx, "y")
  bx.set(xlabel="training step", ylabel="‖w‖ of the scale-invariant kernels", title="Weight norm")
  path = report.finish(fig, os.path.join(workdir, "critical_period.png"), [ax, bx], fontsize=7)
  caption = (
    "Left: test accuracy against the switch point (mean, 90% CI over seeds × items); right: the "
    "scale-invariant kernels' norm over training (geometric mean, 90% CI over seeds)"
  )
  return caption, path


run = study.two_phases(tune, confirm, FIELDS, measurement_names)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  return phases.work(config, confirm_cells=len(arms(config)) + 1)


if __name__ == "__main__":
  study.main(run, work=work)
