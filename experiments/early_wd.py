"""Does weight decay matter early or late? Whole run, none, early only, late only.

A BatchNorm ResNet trained with each weight-decay schedule over several seeds by
`wd_jax.sweep`; the final test accuracy and the weight-norm trajectories test Golatkar et al.
(2019) and Bjorck et al. (2021) (REFERENCES §3). Writes figures, metrics.jsonl (one line per
run) and summary.md with the verdicts.

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

from wd_jax import study, sweep
from wd_jax.runlog import read_metrics, write_atomic

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


def _validate(config: ml_collections.ConfigDict) -> None:
  for s in config.schedules:
    if s not in SCHEDULES:
      raise ValueError(f"config.schedules has {s!r}; valid: {sorted(SCHEDULES)}.")
  if not config.seeds:
    raise ValueError("config.seeds is empty.")
  if not config.run.per_leaf_diagnostics or not config.run.diagnostics_every:
    raise ValueError(
      "config.run.per_leaf_diagnostics must be True and diagnostics_every > 0: the study "
      "reads the per-kernel weight norms."
    )
  if config.run.optimizer.weight_decay <= 0:
    raise ValueError(
      f"config.run.optimizer.weight_decay must be > 0, got {config.run.optimizer.weight_decay}."
    )
  if not config.equal_margin > 0:
    raise ValueError(f"config.equal_margin must be > 0, got {config.equal_margin}.")


def _overrides(config: ml_collections.ConfigDict) -> tuple[list[str], list[dict[str, Any]]]:
  """The sweep's configurations (schedule × seed) and the schedule of each."""
  lam = config.run.optimizer.weight_decay
  names, grid = [], []
  for s in config.schedules:
    wd_schedule, on = SCHEDULES[s]
    for seed in config.seeds:
      names.append(s)
      grid.append(
        {"optimizer.wd_schedule": wd_schedule, "weight_decay": lam if on else 0.0, "seed": seed}
      )
  return names, grid


def _kernel_norm(record: dict[str, Any]) -> float | None:
  """‖θ‖₂ over every parameter named ``.../kernel`` (the ndim ≥ 2 weights the mask decays)."""
  sq = [v * v for k, v in record.items() if k.startswith("param_norm/") and k.endswith("kernel")]
  return math.sqrt(sum(sq)) if sq else None


def run_schedules(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[dict]]:
  """schedule -> rows of `sweep.run_sweep`, each with its metric records under "records"."""
  names, grid = _overrides(config)
  base = config.run.copy_and_resolve_references()
  sdir = os.path.join(workdir, "sweep")
  rows = sweep.run_sweep(base, grid, sdir, strategy=config.strategy, verbose=False)
  out: dict[str, list[dict]] = {s: [] for s in config.schedules}
  for name, r in zip(names, sorted(rows, key=lambda r: r["index"])):
    r["records"] = read_metrics(os.path.join(sdir, r["run_dir"], "metrics.jsonl"))
    for rec in r["records"]:
      norm = _kernel_norm(rec)
      if norm is not None:
        rec[KERNEL_NORM] = norm
    out[name].append(r)
  print(f"early_wd: {len(rows)} runs done")
  return out


def _final(rows: list[dict], key: str) -> list[float]:
  """Per seed: the run's final `key` (NaN if it diverged)."""
  vals = []
  for r in rows:
    if key in r:
      x = r[key]
    else:
      series = [rec[key] for rec in r["records"] if key in rec]
      x = series[-1] if series else math.nan
    vals.append(math.nan if r["diverged"] or x is None else float(x))
  return vals


def _at_step(rows: list[dict], key: str, step: int) -> list[float]:
  """Per seed: `key` at the last record at or before `step`."""
  vals = []
  for r in rows:
    series = [rec[key] for rec in r["records"] if key in rec and rec["step"] <= step]
    vals.append(series[-1] if series and not r["diverged"] else math.nan)
  return vals


def _trajectory(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Steps, across-seed mean and sd of `key` over training."""
  series = [
    [(rec["step"], rec[key]) for rec in r["records"] if key in rec]
    for r in rows
    if not r["diverged"]
  ]
  series = [s for s in series if s]
  if not series:
    return np.array([]), np.array([]), np.array([])
  n = min(len(s) for s in series)
  steps = np.array([p[0] for p in series[0][:n]])
  vals = np.array([[p[1] for p in s[:n]] for s in series])
  sd = vals.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(n)
  return steps, vals.mean(axis=0), sd


def plot_accuracy(res: dict[str, list[dict]], title: str, workdir: str) -> tuple[str, str]:
  fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
  for i, (s, rows) in enumerate(res.items()):
    accs = _final(rows, "test_accuracy")
    m, sd = study.mean_spread(accs)
    ax.errorbar(
      [i], [m], yerr=[sd], color=study.color(s), marker="o", ms=8, capsize=6, lw=2, zorder=3
    )
    jitter = np.linspace(-0.12, 0.12, len(accs)) if len(accs) > 1 else np.zeros(1)
    ax.scatter(i + 0.25 + jitter, accs, color=study.color(s), s=14, alpha=0.6, zorder=2)
  ax.set_xticks(range(len(res)), [LABELS[s] for s in res])
  ax.set(
    title=f"Final test accuracy per weight-decay schedule\n{title}",
    ylabel="test accuracy (fraction)",
    xlabel="weight-decay schedule (mean ± sd; dots: seeds)",
  )
  ax.title.set_fontsize(11)
  ax.grid(alpha=0.3, axis="y")
  path = os.path.join(workdir, "test_accuracy.png")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return "Final test accuracy per weight-decay schedule (mean ± sd over seeds; dots: seeds)", path


def plot_norm(res: dict[str, list[dict]], title: str, switch: int, workdir: str) -> tuple[str, str]:
  fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
  for s, rows in res.items():
    steps, mean, sd = _trajectory(rows, KERNEL_NORM)
    if steps.size:
      ax.plot(steps, mean, color=study.color(s), label=LABELS[s], lw=1.8)
      ax.fill_between(steps, mean - sd, mean + sd, color=study.color(s), alpha=0.15, lw=0)
  ax.axvline(switch, color="k", ls=":", lw=1)
  ax.text(switch, 0.98, " WD switch", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
  ax.set(
    title=f"Weight norm over training\n{title}",
    xlabel="training step",
    ylabel="‖kernels‖₂ (all conv + head kernels)",
  )
  ax.title.set_fontsize(11)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  path = os.path.join(workdir, "weight_norm.png")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return "Norm of the decayed weights over training per schedule (mean ± sd over seeds)", path


def findings_for(res: dict[str, list[dict]], margin: float, switch: int) -> list[study.Finding]:
  acc = {s: _final(rows, "test_accuracy") for s, rows in res.items()}
  norm = {s: _final(rows, KERNEL_NORM) for s, rows in res.items()}
  out = []

  def has(*names):
    return set(names) <= res.keys()

  if has("whole", "none"):
    out.append(
      study.Finding(
        "Precondition: at this λ, weight decay over the whole run helps (whole > none).",
        "the study's premise; Golatkar et al. 2019, REFERENCES §3",
        study.compare(acc["whole"], acc["none"], expect="greater", names=("whole", "none")),
      )
    )
  if has("early", "whole"):
    out.append(
      study.Finding(
        f"Weight decay only during the initial transient (first {switch} steps) does about as "
        f"well as weight decay for the whole run (test accuracy within {margin:g}).",
        "Golatkar, Achille & Soatto 2019; REFERENCES §3",
        study.compare(
          acc["early"], acc["whole"], expect="equal", margin=margin, names=("early", "whole")
        ),
      )
    )
  if has("late", "none"):
    out.append(
      study.Finding(
        f"Weight decay applied only after the transient (from step {switch}) is about as bad "
        f"as none (test accuracy within {margin:g}).",
        "Golatkar, Achille & Soatto 2019; REFERENCES §3",
        study.compare(
          acc["late"], acc["none"], expect="equal", margin=margin, names=("late", "none")
        ),
      )
    )
  if has("early", "late"):
    out.append(
      study.Finding(
        "Early weight decay ends with better test accuracy than late weight decay.",
        "Golatkar et al. 2019; REFERENCES §3",
        study.compare(acc["early"], acc["late"], expect="greater", names=("early", "late")),
      )
    )
  if has("early", "none"):
    at_switch = _at_step(res["early"], KERNEL_NORM, switch)
    out.append(
      study.Finding(
        "After early-only weight decay the weight norm stays small for the rest of training: "
        "at the end it is below the norm of the run without weight decay.",
        "Bjorck, Weinberger & Gomes 2021; REFERENCES §3",
        study.compare(norm["early"], norm["none"], expect="less", names=("early", "none")),
        f"final ‖kernels‖₂: early {study.fmt(norm['early'])} (at the switch, step {switch}: "
        f"{study.fmt(at_switch)}), none {study.fmt(norm['none'])}",
      )
    )
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  _validate(config)
  study.begin(config, workdir)
  res = run_schedules(config, workdir)
  return report(config, workdir, res)


def report(config: ml_collections.ConfigDict, workdir: str, res: dict[str, list[dict]]):
  """metrics.jsonl, the figures and summary.md from the runs of `run_schedules`."""
  rc = config.run
  switch = round(rc.optimizer.wd_switch_fraction * rc.steps)
  lines = []
  for s, rows in res.items():
    for r in rows:
      norms = [rec[KERNEL_NORM] for rec in r["records"] if KERNEL_NORM in rec]
      lines.append(
        {
          "schedule": s,
          "seed": r["seed"],
          "weight_decay": r["weight_decay"],
          "wd_schedule": SCHEDULES[s][0],
          "wd_switch_step": switch if s in ("early", "late") else None,
          "test_accuracy": r["test_accuracy"],
          "test_loss": r["test_loss"],
          "train_loss": r["loss"],
          "diverged": r["diverged"],
          "final_kernel_norm": norms[-1] if norms else None,
          "kernel_norm_at_switch": _at_step([r], KERNEL_NORM, switch)[0],
        }
      )
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  findings = findings_for(res, config.equal_margin, switch)
  title = f"{rc.dataset.name}, ResNet widths {tuple(rc.model.kwargs['widths'])}"
  table = study.markdown_table(
    ["schedule", "test accuracy", "‖kernels‖₂ at switch", "final ‖kernels‖₂", "final train loss"],
    [
      [
        LABELS[s],
        study.fmt(_final(rows, "test_accuracy"), 4),
        study.fmt(_at_step(rows, KERNEL_NORM, switch), 2),
        study.fmt(_final(rows, KERNEL_NORM), 2),
        study.fmt(_final(rows, "loss"), 4),
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
      f"{rc.batch_size}; seeds {tuple(config.seeds)}. Early: λ on for steps < {switch}; late: "
      f"λ on from step {switch}. 'About equal' means means within {config.equal_margin:g} "
      "test accuracy. Norms are over every kernel (the weights the mask decays)."
    ),
    tables=[("Per schedule (mean ± sd over seeds)", table)],
    figures=figures,
  )
  return {"findings": findings, "results": res}


if __name__ == "__main__":
  study.main(run)
