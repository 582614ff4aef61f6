"""Why do we need weight decay? Andriushchenko et al.'s claims, in two phases per task.

**Tune** (``--config.phase=tune``): λ = 0 over the lr grid and the decayed optimizer over
lr × strength (τ/T), on a tuning draw, selected on validation items (loss for the LM, accuracy
for vision); writes the pre-registration. **Confirm** (the default): the tuned decay, λ = 0 at
the same lr and λ = 0 at its own tuned lr (LM: also a large λ), on fresh seeds and a fresh draw;
test items read once per run; the claims read training-loss windows (the mean batch loss over a
range of steps, per seed), validation at the lr drop (vision) and the test items, Holm.

  python experiments/why_wd.py --config=experiments/configs/why_wd.py --workdir=runs/why_wd
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from wd_jax import study
from wd_jax.study import claims as claims_lib
from wd_jax.study import lr_strength, phases, protocol, report, schema, stats, strength

# task -> (validation/test metric, larger is better, the decayed optimizer, decay arms)
TASKS = {
  "lm": ("loss", False, "adamw", ("moderate", "large")),
  "vision": ("accuracy", True, "sgd_l2", ("decay",)),
}
FIELDS = {
  **phases.fields(learning_rates=schema.numbers(), tau_over_T=schema.numbers()),
  "task": schema.choice(tuple(TASKS)),
  "strategy": schema.choice(("vmap", "sequential", "auto")),
  "resamples": schema.integer(minimum=20),
  "large_factor": schema.number(low=1.0, open_low=True),
  "fallback_tau_over_T": schema.number(low=0.0, open_low=True),
  "early_window": schema.numbers(),
  "late_window": schema.numbers(),
  "tolerance": schema.number(low=0.0),
  "loss_floor": schema.number(low=0.0),
}
BF16_REFUSAL = (
  "why_wd:bf16 is a documented design only: the engine's Transformer (model 'transformer') takes "
  "no dtype, so bfloat16 parameters and compute cannot be run through the engine yet "
  "(experiments/configs/why_wd.py describes the runs and the claim)."
)


# ----------------------------------------------------------------------------------------------
# Measurements on curves (pure; the tests feed them synthetic curves).


def window_mean(records: Sequence[Mapping[str, Any]], lo: float, hi: float, key="loss") -> float:
  """Mean of `key` over the records with lo < step ≤ hi (NaN if none)."""
  vals = [r[key] for r in records if lo < r["step"] <= hi and r.get(key) is not None]
  return float(np.mean(vals)) if vals else math.nan


def value_at(records: Sequence[Mapping[str, Any]], step: int, key: str) -> float:
  """`key` of the record at `step` (NaN if that record lacks it)."""
  for r in records:
    if r["step"] == step and r.get(key) is not None:
      return float(r[key])
  return math.nan


def crossover(steps: np.ndarray, a: np.ndarray, b: np.ndarray, smooth: int = 5) -> float:
  """The step after which `a` (a decayed run's loss) stays below `b` (no decay), having been
  above it before: the last sign change of the moving-averaged a − b from + to −; NaN when a − b
  does not end negative or was never positive."""
  d = np.asarray(a, float) - np.asarray(b, float)
  k = max(1, min(smooth, len(d)))
  d = np.convolve(d, np.ones(k) / k, mode="valid")
  s = np.asarray(steps, float)[k - 1 :]
  if not len(d) or d[-1] >= 0 or not (d > 0).any():
    return math.nan
  last_pos = np.flatnonzero(d > 0)[-1]
  return float(s[last_pos + 1])


# ----------------------------------------------------------------------------------------------
# Arms and cells.


def decay_arms(config) -> tuple[str, ...]:
  return TASKS[config.task][3]


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  t = config.task
  tags = ["none", "none@matched", *decay_arms(config)]
  whats = ["train_loss@early", "train_loss@late", f"test_{TASKS[t][0]}"]
  if t == "vision":
    whats += ["val_accuracy@drop", "val_accuracy@end"]
  out = [f"{t}/{tag}/{w}" for tag in tags for w in whats]
  if t == "vision":
    out += ["vision/gain@drop_minus_tolerance", "vision/gain_growth"]
  return out


def arm_run(config, phase: str, lr: float | None = None):
  run = phases.phase_run(config, phase)
  if lr is not None:
    run.optimizer.learning_rate = lr
  return run


def tune_grids(config) -> dict[str, list[dict]]:
  lrs, taus = config.tune.learning_rates, config.tune.tau_over_T
  opt = TASKS[config.task][2]
  run_at = lambda lr: arm_run(config, "tune", lr)
  return {"none": lr_strength.off(lrs), "decay": lr_strength.cells(run_at, opt, lrs, taus)}


def confirm_cells(config, picks) -> dict[str, list[dict]]:
  """none at its own tuned lr and at the decay's; the tuned decay (LM: "moderate", and "large"
  at λ × large_factor, τ/T ÷ large_factor, same lr)."""
  opt = TASKS[config.task][2]
  d = dict(picks["decay"])
  if not d["weight_decay"]:  # tuning selected λ = 0: the decay arm at the declared strength
    tau = config.fallback_tau_over_T
    run = arm_run(config, "tune", d["learning_rate"])
    d.update(tau_over_T=tau, weight_decay=strength.weight_decays(run, opt, [tau])[0])
  none = {**picks["none"], "roles": ["tuned"]}
  out = {"none": [none]}
  if none["learning_rate"] == d["learning_rate"]:
    none["roles"].append("matched")
  else:
    matched = {"learning_rate": d["learning_rate"], "weight_decay": 0.0, "tau_over_T": None}
    out["none"].append({**matched, "roles": ["matched"]})
  first, *rest = decay_arms(config)
  out[first] = [{**d, "roles": ["tuned"]}]
  for arm in rest:  # "large"
    f = config.large_factor
    big = {**d, "weight_decay": d["weight_decay"] * f, "tau_over_T": d["tau_over_T"] / f}
    out[arm] = [{**big, "roles": ["tuned"]}]
  return out


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase: λ = 0 over lr and decay over lr × τ/T on the tuning draw, selection on
  validation items; writes the pre-registration."""
  metric, larger, _, _ = TASKS[config.task]
  grids = tune_grids(config)
  study.begin(config, workdir)
  runs = {a: arm_run(config, "tune") for a in grids}
  rows = phases.tune_arms(runs, grids, config, workdir)
  score = lambda a: phases.scored(rows[a], grids[a], "val_items", metric, config.tune.seeds)
  cands = {"none": score("none"), "decay": score("none") + score("decay")}
  axes = {
    "learning_rate": config.tune.learning_rates,
    "tau_over_T": [None, *config.tune.tau_over_T],
  }
  sel = phases.select(cands, axes, larger=larger, resamples=config.resamples)
  every = grids["none"] + grids["decay"]
  picks = {a: lr_strength.find(every, s.choice.pick) for a, s in sel.items()}
  cells = confirm_cells(config, picks)
  extra = {k: list(config.tune[k]) for k in ("learning_rates", "tau_over_T")}
  prereg = phases.preregister(config, f"why_wd/{config.task}", cells, sel, extra)
  fig = phases.tune_panels(
    {"decay": cands["decay"]},
    {"decay": sel["decay"]},
    os.path.join(workdir, "tune_validation.png"),
    higher_is_better=larger,
  )
  tables = [("Validation by lr × strength", f"![validation]({os.path.basename(fig)})")]
  phases.write_tune_summary(workdir, f"Why weight decay ({config.task}): tune", prereg, sel, tables)
  lines = [*phases.tune_lines(sel), f"pre-registration {prereg.short}: {prereg.path}"]
  return {"findings": [], "lines": lines}


# ----------------------------------------------------------------------------------------------
# Confirm.


def tag_of(arm: str, role: str) -> str:
  return arm if role == "tuned" else f"{arm}@{role}"


def measure(config, rows, cells) -> dict[str, Any]:
  """Per tag: the (seeds, items) test metric, the per-seed training loss over the early and
  late windows (vision: validation accuracy at the drop and at the end); vision's gains."""
  t, steps = config.task, config.run.steps
  metric = TASKS[t][0]
  (e0, e1), (l0, l1) = config.early_window, config.late_window
  drop = round(config.run.optimizer.lr_drop_fraction * steps)
  out: dict[str, Any] = {"cells": {}}
  for arm, arm_cells in cells.items():
    scored = phases.scored(rows[arm], arm_cells, "test_items", metric, config.confirm.seeds)
    for c, (_, items) in zip(arm_cells, scored):
      early = phases.per_seed(
        rows[arm], c, lambda r: window_mean(r["records"], e0 * steps, e1 * steps)
      )
      late = phases.per_seed(
        rows[arm], c, lambda r: window_mean(r["records"], l0 * steps, l1 * steps)
      )
      for role in c["roles"]:
        tag = tag_of(arm, role)
        out["cells"][tag] = (arm, c)
        out[f"{t}/{tag}/test_{metric}"] = items
        out[f"{t}/{tag}/train_loss@early"] = np.array(early)
        out[f"{t}/{tag}/train_loss@late"] = np.array(late)
        if t == "vision":
          for name, s in (("drop", drop), ("end", steps)):
            at = lambda r, s=s: value_at(r["records"], s, "val_accuracy")
            out[f"{t}/{tag}/val_accuracy@{name}"] = np.array(phases.per_seed(rows[arm], c, at))
  if t == "vision":
    v = lambda tag, w: out[f"vision/{tag}/val_accuracy@{w}"]
    gain = lambda w: v("decay", w) - v("none@matched", w)
    out["vision/gain@drop_minus_tolerance"] = gain("drop") - config.tolerance
    out["vision/gain_growth"] = gain("end") - gain("drop")
  return out


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the pre-registered cells only, on fresh seeds and a fresh draw."""
  prereg = phases.open_confirm(config, workdir)
  study.begin(config, workdir)
  cells = prereg.body["cells"]
  runs = {a: arm_run(config, "confirm") for a in cells}
  rows = phases.confirm_arms(runs, prereg, config, workdir)
  values = measure(config, rows, cells)
  fmt = lambda v: f"{np.nanmean(v):.4f}" if np.ndim(v) == 2 else study.fmt(v, 4)
  said = lambda c: "; ".join(f"{m}: {fmt(values[m])}" for m in c.measurements)
  findings = claims_lib.decide(claims_lib.parse(config.claims), values, said)
  (e0, e1), (l0, l1) = config.early_window, config.late_window
  s = config.run.steps
  extra = {
    "train_loss_early": lambda r: window_mean(r["records"], e0 * s, e1 * s),
    "train_loss_late": lambda r: window_mean(r["records"], l0 * s, l1 * s),
  }
  diverged = phases.write_run_lines(workdir, rows, cells, extra)
  study.write_summary(
    workdir,
    f"Why weight decay ({config.task}): confirm",
    findings,
    intro=intro(config),
    tables=[
      (
        "Per cell (90% CI over seeds × test items; windows: mean ± sd over seeds)",
        table(config, values, rows),
      )
    ],
    figures=[figure(config, values, rows, workdir)],
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}.",
  )
  return {"findings": findings, "rows": rows, "values": values}


def intro(config) -> str:
  r, t = config.run, config.task
  (e0, e1), (l0, l1) = config.early_window, config.late_window
  seeds = len(config.confirm.seeds)
  if t == "lm":
    chars = r.steps * r.batch_size * r.dataset.kwargs["seq_len"]
    return (
      f"Confirm phase: the pre-registered cells on {seeds} fresh seeds and corpus files "
      f"disjoint from the tuning draw's. A {r.model.kwargs['num_layers']}-layer, "
      f"d_model {r.model.kwargs['d_model']} pre-LN Transformer, AdamW (λ × α_t), "
      f"{r.steps} steps of {r.batch_size} windows × {r.dataset.kwargs['seq_len']} characters "
      f"({chars:,} characters: about one pass over the training stream). Windows are drawn "
      "with replacement, so the share of a batch's characters that an earlier window already "
      "held grows as 1 − exp(−t/T): ~18–39% in the early window, ~60–63% at the end; the "
      "training loss is near the online loss, not equal to it (the held-out loss is the clean "
      "check). "
      f"5% warmup then cosine. Training loss windows: steps {e0:.0%}–{e1:.0%} (before the lr "
      f"decays below α/2) and {l0:.0%}–{l1:.0%} (the end), the mean batch loss per seed, "
      "paired by seed (every arm sees the same batches). Test: the held-out tail of the fresh "
      "draw, the mean loss per character of each test window (the items)."
    )
  d = r.optimizer.lr_drop_fraction
  return (
    f"Confirm phase: the pre-registered cells on {seeds} fresh seeds and a fresh MNIST-1D draw "
    f"({dict(config.confirm.dataset)}). MLP {tuple(r.model.kwargs['widths'])}, plain SGD with "
    f"coupled L2 (no momentum), {r.steps} steps of batch {r.batch_size}, the lr × "
    f"{r.optimizer.lr_drop_factor:g} at {d:.0%} of the steps. Training loss windows: steps "
    f"{e0:.0%}–{e1:.0%} (the large-lr phase's second half) and {l0:.0%}–{l1:.0%}; validation "
    "(4,000 fresh sequences, not used for any choice in this phase) at the drop and at the end; "
    "test read once at the end."
  )


def table(config, values, rows) -> str:
  t = config.task
  metric = TASKS[t][0]
  out = []
  none = values[f"{t}/none@matched/test_{metric}"]
  for tag, (_, c) in values["cells"].items():
    m, lo, hi = stats.seeds_items_interval(values[f"{t}/{tag}/test_{metric}"])
    diff = "—"
    if not tag.startswith("none"):
      d, dlo, dhi = stats.seeds_items_interval(values[f"{t}/{tag}/test_{metric}"], none)
      diff = f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
    cell = f"lr {c['learning_rate']:g}, λ {c['weight_decay']:.3g}"
    if c.get("tau_over_T") is not None:
      cell += f", τ/T {c['tau_over_T']:.3g}"
    line = [tag, cell]
    line += [study.fmt(values[f"{t}/{tag}/train_loss@{w}"], 4) for w in ("early", "late")]
    if t == "vision":
      line += [study.fmt(values[f"{t}/{tag}/val_accuracy@{w}"], 4) for w in ("drop", "end")]
    else:
      cross = [crossover(*p) for p in _pair(rows, values, tag)]
      line.append("—" if tag.startswith("none") else crossover_text(cross))
    line += [f"{m:.4f} [{lo:.4f}, {hi:.4f}]", diff]
    out.append(line)
  head = ["cell", "optimizer", "train loss, early window", "train loss, late window"]
  head += ["val acc at drop", "val acc at end"] if t == "vision" else ["crossover step"]
  head += [f"test {metric}", "− none at the same lr"]
  return study.markdown_table(head, out)


def crossover_text(steps: Sequence[float]) -> str:
  """How many seeds cross over (decay's loss ends below λ = 0's, having been above), and where."""
  hit = [x for x in steps if math.isfinite(x)]
  where = f", median step {np.median(hit):.0f}" if hit else ""
  return f"{len(hit)} of {len(steps)} seeds{where}"


def _pair(rows, values, tag) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Per seed: (steps, the tag's loss curve, none@matched's), for `crossover`."""
  if tag.startswith("none"):
    return []
  arm, c = values["cells"][tag]
  narm, nc = values["cells"]["none@matched"]
  mine = protocol.rows_of(rows[arm], protocol.fields_of(c))
  base = protocol.rows_of(rows[narm], protocol.fields_of(nc))
  out = []
  for a, b in zip(mine, base):
    if a["diverged"] or b["diverged"]:
      continue
    sa, ya = report.seed_series([a], "loss")
    _, yb = report.seed_series([b], "loss")
    n = min(ya.shape[1], yb.shape[1])
    out.append((sa[:n], ya[0, :n], yb[0, :n]))
  return out


def figure(config, values, rows, workdir: str) -> tuple[str, str]:
  """Left: training loss over steps per cell; right: each decayed cell minus λ = 0 at the same
  lr (mean, 90% CI over seeds)."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.0, 3.8), dpi=100)
  colors = {"none": "0.4", "none@matched": "0.1", "moderate": "C0", "large": "C3", "decay": "C0"}
  for tag, (arm, c) in values["cells"].items():
    cell_rows = protocol.rows_of(rows[arm], protocol.fields_of(c))
    steps, per_seed = report.seed_series(cell_rows, "loss")
    if per_seed.size:
      report.ci_band(ax, steps, per_seed, color=colors.get(tag, "C2"), label=tag)
    pairs = _pair(rows, values, tag)
    if pairs:
      n = min(len(p[0]) for p in pairs)
      diff = np.array([p[1][:n] - p[2][:n] for p in pairs])
      report.ci_band(bx, pairs[0][0][:n], diff, color=colors.get(tag, "C2"), label=tag)
  bx.axhline(0.0, color="0.6", lw=0.8)
  for a in (ax, bx):
    for w in (config.early_window, config.late_window):
      a.axvspan(w[0] * config.run.steps, w[1] * config.run.steps, color="0.93", zorder=0)
  if config.task == "vision":
    ax.set_yscale("log")
  ax.set(xlabel="training step", ylabel="training (batch) loss", title="Training loss")
  bx.set(xlabel="training step", ylabel="loss − loss at λ = 0 (same lr)", title="Difference")
  path = report.finish(fig, os.path.join(workdir, f"{config.task}_train_loss.png"), [ax, bx])
  caption = (
    "Training loss per logged batch (left) and its difference from λ = 0 at the same lr "
    "(right), mean and 90% CI over seeds; shaded: the claims' windows"
  )
  return caption, path


def run(config, workdir: str) -> dict[str, Any]:
  if config.get("task") == "bf16":
    raise ValueError(BF16_REFUSAL)
  study.check(config, workdir, FIELDS, measurement_names)
  return tune(config, workdir) if config.phase == "tune" else confirm(config, workdir)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  if config.get("task") not in TASKS:
    return 0  # :bf16, refused by `run`
  if config.phase == "tune":
    cells = len(config.tune.learning_rates) * (len(config.tune.tau_over_T) + 1)
    return cells * len(config.tune.seeds) * config.run.steps
  return (len(decay_arms(config)) + 2) * len(config.confirm.seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, work=work)
