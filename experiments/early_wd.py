"""Does weight decay matter early or late? Whole run, none, early only, late only.

A BatchNorm ResNet trained with each weight-decay schedule over several seeds by
`wd_jax.engine.sweep`; the final accuracy and the weight-norm trajectories test Golatkar et al.
(2019)
and Bjorck et al. (2021) (REFERENCES §3) through the claims declared in the config. Every run
holds out a validation split of its training data and is evaluated on it; the four schedules are
fixed in advance (nothing is selected), so the test split is read once, at the end, for each of
them. Writes figures, metrics.jsonl (one line per run) and summary.md with the verdicts.

  python experiments/early_wd.py --config=experiments/configs/early_wd.py --workdir=runs/early_wd
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
from wd_jax.study import protocol, report, schema

# schedule -> (config.optimizer.wd_schedule, whether λ is the config's λ or 0).
SCHEDULES = {
  "whole": ("constant", True),
  "none": ("constant", False),
  "early": ("early", True),
  "late": ("late", True),
}
LABELS = {
  "whole": "whole run",
  "none": "none (λ = 0)",
  "early": "early only",
  "late": "late only",
}
KERNEL_NORM = "kernel_norm"  # ‖θ‖₂ over every kernel (the decayed weights), per record
# Per schedule, one value per seed: what the claims may read.
MEASURES = ("val_accuracy", "test_accuracy", KERNEL_NORM, f"{KERNEL_NORM}@switch")


def _run_rule(where: str, value: Any) -> None:
  schema.run_config()(where, value)
  if not value.per_leaf_diagnostics or not value.diagnostics_every:
    raise ValueError(
      f"{where}.per_leaf_diagnostics must be True and diagnostics_every > 0: the study reads "
      "the per-kernel weight norms."
    )
  if not value.optimizer.weight_decay > 0:
    raise ValueError(
      f"{where}.optimizer.weight_decay must be > 0, got {value.optimizer.weight_decay}."
    )


FIELDS = {
  "schedules": schema.choices(tuple(SCHEDULES)),
  "seeds": schema.ints(),
  "strategy": schema.choice(sweep.STRATEGIES),
  "run": _run_rule,
}


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  return [f"{s}/{m}" for s in config.schedules for m in MEASURES]


def _overrides(config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """schedule -> the sweep fields that make it (besides the seed)."""
  lam = config.run.optimizer.weight_decay
  return {
    s: {"optimizer.wd_schedule": SCHEDULES[s][0], "weight_decay": lam if SCHEDULES[s][1] else 0.0}
    for s in config.schedules
  }


def _kernel_norm(record: dict[str, Any]) -> float | None:
  """‖θ‖₂ over every parameter named ``.../kernel`` (the ndim ≥ 2 weights the mask decays)."""
  sq = [v * v for k, v in record.items() if k.startswith("param_norm/") and k.endswith("kernel")]
  return math.sqrt(sum(sq)) if sq else None


def _at_step(records: list[dict], key: str, step: float) -> float:
  """`key` at the last record at or before `step` (NaN if none)."""
  series = [rec[key] for rec in records if key in rec and rec["step"] <= step]
  return float(series[-1]) if series else math.nan


def run_schedules(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[dict]]:
  """schedule -> rows of `sweep.run_sweep` in seed order, with their records under "records".

  Each row also gets its final ``kernel_norm`` and the one at the switch step."""
  overrides = _overrides(config)
  grid = [{**o, "seed": seed} for o in overrides.values() for seed in config.seeds]
  # The schedules are declared in advance, not selected: the test split is read once for each.
  select = protocol.selector(fixed=list(overrides.values()))
  base = config.run.copy_and_resolve_references()
  sdir = os.path.join(workdir, "sweep")
  rows = sweep.run_sweep(base, grid, sdir, strategy=config.strategy, verbose=False, select=select)
  switch = _switch_step(config.run)
  out = {}
  for s, o in overrides.items():
    out[s] = protocol.rows_of(rows, o)
    for r in out[s]:
      r["schedule"] = s
      r["records"] = read_metrics(os.path.join(sdir, r["run_dir"], "metrics.jsonl"))
      for rec in r["records"]:
        norm = _kernel_norm(rec)
        if norm is not None:
          rec[KERNEL_NORM] = norm
      r[KERNEL_NORM] = _at_step(r["records"], KERNEL_NORM, math.inf)
      r[f"{KERNEL_NORM}@switch"] = _at_step(r["records"], KERNEL_NORM, switch)
  print(f"early_wd: {len(rows)} runs done")
  return out


def _switch_step(rc) -> int:
  return round(rc.optimizer.wd_switch_fraction * rc.steps)


def measure(res: dict[str, list[dict]]) -> dict[str, list[float]]:
  """The study's measurements, one value per seed in seed order (NaN where a run diverged)."""
  return {f"{s}/{m}": protocol.per_seed(rows, m) for s, rows in res.items() for m in MEASURES}


def plot_accuracy(res: dict[str, list[dict]], title: str, workdir: str) -> tuple[str, str]:
  fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), dpi=100, sharey=True)
  splits = (
    ("val_accuracy", "validation split (every run)"),
    ("test_accuracy", "test split (read once per run)"),
  )
  for ax, (key, what) in zip(axes, splits):
    for i, (s, rows) in enumerate(res.items()):
      accs = protocol.per_seed(rows, key)
      report.ci_errorbar(ax, [i], [accs], color=study.color(s), marker="o", ms=8, lw=2, zorder=3)
      jitter = np.linspace(-0.12, 0.12, len(accs)) if len(accs) > 1 else np.zeros(1)
      ax.scatter(i + 0.25 + jitter, accs, color=study.color(s), s=14, alpha=0.6, zorder=2)
    ax.set_xticks(range(len(res)), [LABELS[s] for s in res], fontsize=8)
    ax.set(title=what, xlabel="weight-decay schedule")
    ax.title.set_fontsize(10)
  axes[0].set_ylabel("final accuracy (fraction)")
  fig.suptitle(f"Final accuracy per weight-decay schedule — {title}", fontsize=11)
  path = report.finish(fig, os.path.join(workdir, "accuracy.png"), axes, legend=False)
  return (
    "Final validation (left) and test (right) accuracy per weight-decay schedule (mean, 90% CI "
    "over seeds; dots: seeds)",
    path,
  )


def plot_norm(res: dict[str, list[dict]], title: str, switch: int, workdir: str) -> tuple[str, str]:
  fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
  for s, rows in res.items():
    steps, per_seed = report.seed_series(rows, KERNEL_NORM)
    if steps.size:
      report.ci_band(ax, steps, per_seed, color=study.color(s), label=LABELS[s])
  ax.axvline(switch, color="k", ls=":", lw=1)
  ax.text(switch, 0.98, " WD switch", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
  ax.set(
    title=f"Weight norm over training\n{title}",
    xlabel="training step",
    ylabel="‖kernels‖₂ (all conv + head kernels)",
  )
  ax.title.set_fontsize(11)
  path = report.finish(fig, os.path.join(workdir, "weight_norm.png"), [ax])
  return "Norm of the decayed weights over training per schedule (mean, 90% CI over seeds)", path


def _describe(values: dict[str, list[float]], switch: int):
  def text(c: claims_lib.Claim) -> str:
    parts = [f"{m}: {study.fmt(values[m], 4)}" for m in c.measurements]
    for m in c.measurements:
      s, q = m.split("/", 1)
      if q == KERNEL_NORM:
        at = values[f"{s}/{KERNEL_NORM}@switch"]
        parts.append(f"{s} at the switch (step {switch}): {study.fmt(at, 4)}")
    return "; ".join(parts)

  return text


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  study.begin(config, workdir)
  res = run_schedules(config, workdir)
  return write_report(config, workdir, res, declared)


def write_report(config, workdir: str, res: dict[str, list[dict]], declared) -> dict[str, Any]:
  """metrics.jsonl, the figures and summary.md from the runs of `run_schedules`."""
  rc = config.run
  switch = _switch_step(rc)
  lines = []
  for s, rows in res.items():
    for r in rows:
      lines.append(
        {
          "schedule": s,
          "seed": r["seed"],
          "weight_decay": r["weight_decay"],
          "wd_schedule": SCHEDULES[s][0],
          "wd_switch_step": switch if s in ("early", "late") else None,
          **{k: r[k] for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss") if k in r},
          "train_loss": r["loss"],
          "diverged": r["diverged"],
          "final_kernel_norm": r[KERNEL_NORM],
          "kernel_norm_at_switch": r[f"{KERNEL_NORM}@switch"],
        }
      )
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  values = measure(res)
  findings = claims_lib.decide(declared, values, _describe(values, switch))
  widths = rc.model.kwargs.get("widths")
  title = f"{rc.dataset.name}, {rc.model.name}" + (f" widths {tuple(widths)}" if widths else "")
  table = study.markdown_table(
    [
      "schedule",
      "validation accuracy",
      "test accuracy",
      "‖kernels‖₂ at switch",
      "final ‖kernels‖₂",
      "final train loss",
    ],
    [
      [
        LABELS[s],
        study.fmt(values[f"{s}/val_accuracy"], 4),
        study.fmt(values[f"{s}/test_accuracy"], 4),
        study.fmt(values[f"{s}/{KERNEL_NORM}@switch"], 2),
        study.fmt(values[f"{s}/{KERNEL_NORM}"], 2),
        study.fmt(protocol.per_seed(rows, "loss"), 4),
      ]
      for s, rows in res.items()
    ],
  )
  o = rc.optimizer
  figures = [plot_accuracy(res, title, workdir), plot_norm(res, title, switch, workdir)]
  study.write_summary(
    workdir,
    "Early vs late weight decay",
    findings,
    intro=(
      f"{title}: {o.name} {dict(o.kwargs)}, peak lr {o.learning_rate:g} "
      f"({o.lr_schedule}), λ = {o.weight_decay:g} (mask {o.mask}), {rc.steps} steps of batch "
      f"{rc.batch_size}; seeds {tuple(config.seeds)}, the same initial weights and batches for "
      f"every schedule at a given seed. Early: λ on for steps < {switch}; late: λ on from step "
      f"{switch}. {rc.dataset.validation_fraction:g} of the training data is held out for "
      "validation; the four schedules are declared in advance (nothing is selected), so the "
      "test split is read once for each of them, at the end. Norms are over every kernel (the "
      "weights the mask decays)."
    ),
    tables=[("Per schedule (mean ± sd over seeds)", table)],
    figures=figures,
  )
  return {"findings": findings, "results": res, "values": values}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  return len(config.schedules) * len(config.seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, work=work)
