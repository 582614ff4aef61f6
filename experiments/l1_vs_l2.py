"""Does L1 give exact zeros, and at what accuracy? Proximal L1, subgradient L1 and L2 across λ.

Three penalties on the same base optimizer (plain SGD, same lr schedule, same batches): the
proximal soft-threshold `wd_jax.prox_l1`, the subgradient `wd_jax.add_l1` and coupled L2
(`wd_jax.sgd_l2`), each over a λ × seed grid run by `wd_jax.engine.sweep` (each method's grid one
vmapped
program, through the same training loop as every run), plus the undecayed baseline (λ = 0).
Sparsity is read from the final weights; accuracy on the validation split, and the test split
once, for the λ the protocol selects. Writes figures, metrics.jsonl (one line per run) and
summary.md with the verdicts on the claims declared in the config.

  python experiments/l1_vs_l2.py --config=experiments/configs/l1_vs_l2.py --workdir=runs/l1
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax

import wd_jax
from wd_jax import study
from wd_jax.engine import sweep
from wd_jax.engine.runlog import write_atomic
from wd_jax.masks import leaf_multipliers
from wd_jax.study import claims as claims_lib
from wd_jax.study import protocol, report, schema

METHODS = ("prox_l1", "add_l1", "sgd_l2")
BASELINE = "none"
LABELS = {
  "prox_l1": "prox L1 (soft-threshold)",
  "add_l1": "subgradient L1",
  "sgd_l2": "coupled L2",
  BASELINE: "no decay (λ = 0)",
}
# Hollow, larger markers for prox L1 and L2 so curves that coincide (both L1s near zero, add_l1
# and L2 at zero exact zeros) stay visible on top of each other.
STYLES = {
  "prox_l1": {"marker": "o", "ls": "-", "ms": 8, "mfc": "none", "mew": 1.5},
  "add_l1": {"marker": "^", "ls": "-", "ms": 5},
  "sgd_l2": {"marker": "s", "ls": "--", "ms": 9, "mfc": "none", "mew": 1.2},
}
# |w| below this counts as "near zero": small enough to prune, but not an exact zero.
NEAR_ZERO = 1e-3
FIELDS = {
  "methods": schema.choices(METHODS),
  "weight_decays": schema.numbers(),
  "seeds": schema.ints(),
  "matched_accuracy_margin": schema.number(low=0.0, open_low=True, high=1.0),
  "strategy": schema.choice(sweep.STRATEGIES),
  "run": schema.run_config(datasets=("mnist1d", "digits")),
}
# The sparsity quantities read from the final kernels of every run.
SPARSITY = ("zero_fraction", "near_zero_fraction", "kernel_norm")


def recipe(method: str):
  """The method's optimizer recipe (learning_rate, weight_decay, mask -> optax chain)."""

  def prox(learning_rate, weight_decay, mask):  # ISTA: SGD step, then soft-threshold by α_t·λ
    return optax.chain(
      optax.sgd(learning_rate), wd_jax.prox_l1(weight_decay, learning_rate=learning_rate, mask=mask)
    )

  def subgradient(learning_rate, weight_decay, mask):  # g + λ sign(θ), then the same SGD step
    return optax.chain(wd_jax.add_l1(weight_decay, mask=mask), optax.sgd(learning_rate))

  def l2(learning_rate, weight_decay, mask):  # g + λθ, then the same SGD step (λ = 0: plain SGD)
    return wd_jax.sgd_l2(learning_rate, weight_decay, mask=mask)

  return {"prox_l1": prox, "add_l1": subgradient, "sgd_l2": l2, BASELINE: l2}[method]


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config` (claims may read any of them)."""
  out = [f"{BASELINE}/{q}" for q in (*SPARSITY, "val_accuracy")]
  for m in config.methods:
    for at in [f"wd={wd:g}" for wd in config.weight_decays] + ["min_wd", "max_wd"]:
      out += [f"{m}/{q}@{at}" for q in (*SPARSITY, "val_accuracy")]
    out.append(f"{m}/max_zero_fraction")
  if "prox_l1" in config.methods:
    out.append("prox_l1/zero_fraction@matched")
  return out


def _kernel_stats(params, mults) -> dict[str, float]:
  kernels = [np.asarray(w) for w, k in zip(jax.tree.leaves(params), mults) if k > 0]
  count = sum(w.size for w in kernels)
  return {
    "zero_fraction": sum(int(np.sum(w == 0)) for w in kernels) / count,
    "near_zero_fraction": sum(int(np.sum(np.abs(w) < NEAR_ZERO)) for w in kernels) / count,
    "kernel_norm": math.sqrt(sum(float(np.sum(w.astype(np.float64) ** 2)) for w in kernels)),
    "zero_count": sum(int(np.sum(w == 0)) for w in kernels),
    "kernel_weights": count,
  }


def _sweep(method, config, workdir, grid, select=None) -> list[dict[str, Any]]:
  base = config.run.copy_and_resolve_references()
  base.optimizer.name = method  # a label: the recipe is passed in
  rows = sweep.run_sweep(
    base,
    grid,
    os.path.join(workdir, method),
    strategy=config.strategy,
    verbose=False,
    return_states=True,
    optimizer=recipe(method),
    select=select,
  )
  for r in rows:
    state = r.pop("state")
    if not r["diverged"]:
      r.update(_kernel_stats(state.params, leaf_multipliers(state.params, wd_jax.default_mask)))
    r["method"] = method
  return rows


def matched_weight_decay(rows, baseline, wds, margin: float) -> float | None:
  """The largest λ whose mean prox_l1 *validation* accuracy is within `margin` of the baseline's."""
  base = protocol.score(baseline, "val_accuracy")
  ok = [
    wd
    for wd in wds
    if protocol.score(protocol.rows_of(rows, {"weight_decay": wd}), "val_accuracy") >= base - margin
  ]
  return max(ok) if ok else None


def run_all(config, workdir) -> tuple[list[dict], float | None, dict[str, float]]:
  wds = sorted(config.weight_decays)
  seeds = list(config.seeds)
  times = {}
  t = time.perf_counter()
  # The baseline's test split is read (it is the reference every method is matched against).
  baseline = _sweep(
    BASELINE,
    config,
    workdir,
    {"weight_decay": [0.0], "seed": seeds},
    select=protocol.selector(fixed=[{"weight_decay": 0.0}]),
  )
  times[BASELINE] = time.perf_counter() - t
  rows, matched = list(baseline), None
  for method in config.methods:
    t = time.perf_counter()
    select = None
    if method == "prox_l1":

      def select(rs, baseline=baseline):
        wd = matched_weight_decay(rs, baseline, wds, config.matched_accuracy_margin)
        return protocol.selector(fixed=[{"weight_decay": wd}] if wd else [])(rs)

    out = _sweep(method, config, workdir, {"weight_decay": wds, "seed": seeds}, select)
    if method == "prox_l1":
      matched = matched_weight_decay(out, baseline, wds, config.matched_accuracy_margin)
    rows += out
    times[method] = time.perf_counter() - t
    print(f"{method}: {len(out)} runs in {times[method]:.1f} s")
  return rows, matched, times


def measure(rows, config, matched) -> dict[str, list[float]]:
  wds = sorted(config.weight_decays)
  base = [r for r in rows if r["method"] == BASELINE]
  out = {f"{BASELINE}/{q}": protocol.per_seed(base, q) for q in (*SPARSITY, "val_accuracy")}
  for m in config.methods:
    mine = [r for r in rows if r["method"] == m]
    for wd, at in [(wd, f"wd={wd:g}") for wd in wds] + [(wds[0], "min_wd"), (wds[-1], "max_wd")]:
      for q in (*SPARSITY, "val_accuracy"):
        out[f"{m}/{q}@{at}"] = protocol.per_seed(mine, q, {"weight_decay": wd})
    by_wd = np.array([out[f"{m}/zero_fraction@wd={wd:g}"] for wd in wds])
    out[f"{m}/max_zero_fraction"] = list(np.max(by_wd, axis=0))
  if "prox_l1" in config.methods:
    key = f"prox_l1/zero_fraction@wd={matched:g}" if matched else None
    out["prox_l1/zero_fraction@matched"] = out[key] if key else [math.nan] * len(config.seeds)
  return out


def describe(rows, matched, values):
  """What each claim's measurement was, in words (for the summary)."""
  base = [r for r in rows if r["method"] == BASELINE]

  def text(c: claims_lib.Claim) -> str:
    parts = [f"{name}: {study.fmt(values[name])}" for name in c.measurements]
    if "matched" in " ".join(c.measurements):
      if matched is None:
        parts.append("no λ keeps prox L1's validation accuracy within the margin of λ = 0")
      else:
        prox = protocol.rows_of(
          [r for r in rows if r["method"] == "prox_l1"], {"weight_decay": matched}
        )
        parts.append(
          f"selected on validation: λ = {matched:g}; test accuracy read once: prox L1 "
          f"{study.fmt(protocol.per_seed(prox, 'test_accuracy'))} vs λ = 0 "
          f"{study.fmt(protocol.per_seed(base, 'test_accuracy'))}"
        )
    if "max_zero_fraction" in " ".join(c.measurements):
      m = c.measurements[0].split("/")[0]
      mine = [r for r in rows if r["method"] == m and not r["diverged"]]
      parts.append(
        f"at most {max(r['zero_count'] for r in mine)} exact zeros among the "
        f"{mine[0]['kernel_weights']:,} kernel weights over every λ and seed"
      )
    return "; ".join(parts)

  return text


# ----------------------------------------------------------------------------------------------
# Figures.


def _errorbar(ax, rows, method, wds, key):
  mine = [r for r in rows if r["method"] == method]
  per = [protocol.per_seed(mine, key, {"weight_decay": wd}) for wd in wds]
  report.ci_errorbar(
    ax, wds, per, color=study.color(method), label=LABELS[method], **STYLES[method]
  )


def plot(rows, config, workdir: str) -> list[tuple[str, str]]:
  methods, wds = list(config.methods), sorted(config.weight_decays)
  title = "MNIST-1D MLP" if config.run.dataset.name == "mnist1d" else "digits MLP"
  base = [r for r in rows if r["method"] == BASELINE]
  figs = []
  # 1. Exact zeros (and near zeros) vs λ.
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100, sharey=True)
  for m in methods:
    _errorbar(axes[0], rows, m, wds, "zero_fraction")
    _errorbar(axes[1], rows, m, wds, "near_zero_fraction")
  axes[0].set(title="exact zeros (w == 0)", ylabel="fraction of kernel weights")
  axes[1].set(title=f"near zeros (|w| < {NEAR_ZERO:g})")
  for ax in axes:
    ax.set_xscale("log")
    ax.set(xlabel="weight decay λ", ylim=(-0.03, 1.03))
  fig.suptitle(f"Sparsity of the penalised weights vs λ — {title}", fontsize=11)
  path = report.finish(fig, os.path.join(workdir, "zero_fraction_vs_wd.png"), axes[:1])
  figs.append(("fraction of exactly-zero (left) and near-zero (right) kernel weights vs λ", path))
  # 2. Validation accuracy vs λ, with the baseline band.
  b_mean, b_half, _ = report.mean_and_ci(protocol.per_seed(base, "val_accuracy"))
  margin = config.matched_accuracy_margin
  fig, ax = plt.subplots(figsize=(5.8, 3.8), dpi=100)
  color = study.color(BASELINE)
  ax.axhspan(b_mean - b_half, b_mean + b_half, color=color, alpha=0.3, lw=0)
  ax.axhline(b_mean, color=color, lw=1.5, label=LABELS[BASELINE])
  ax.axhline(b_mean - margin, color=color, lw=1, ls=":", label=f"λ = 0 − {100 * margin:g} point")
  for m in methods:
    _errorbar(ax, rows, m, wds, "val_accuracy")
  ax.set_xscale("log")
  ax.set(
    title=f"Final validation accuracy vs λ — {title}",
    xlabel="weight decay λ",
    ylabel="validation accuracy (fraction)",
  )
  path = report.finish(fig, os.path.join(workdir, "val_accuracy_vs_wd.png"), [ax])
  figs.append(("final validation accuracy vs λ (mean, 90% CI over seeds; band: λ = 0)", path))
  # 3. Trade-off: exact zeros vs validation accuracy, one point per λ.
  fig, ax = plt.subplots(figsize=(5.8, 3.8), dpi=100)
  ax.axvspan(
    b_mean - margin,
    b_mean + max(b_half if math.isfinite(b_half) else 0.0, 0.0) + 0.005,
    color=color,
    alpha=0.2,
    lw=0,
    label=f"matched: within {100 * margin:g} point of λ = 0",
  )
  for m in methods:
    mine = [r for r in rows if r["method"] == m]
    acc = [
      report.mean_and_ci(protocol.per_seed(mine, "val_accuracy", {"weight_decay": wd}))
      for wd in wds
    ]
    zf = [
      report.mean_and_ci(protocol.per_seed(mine, "zero_fraction", {"weight_decay": wd}))
      for wd in wds
    ]
    ax.errorbar(
      [a[0] for a in acc],
      [z[0] for z in zf],
      xerr=np.nan_to_num([a[1] for a in acc]),
      yerr=np.nan_to_num([z[1] for z in zf]),
      color=study.color(m),
      capsize=2,
      **STYLES[m],
      label=LABELS[m],
    )
    if m == "prox_l1":
      for wd, a, z in zip(wds, acc, zf):
        if z[0] < 0.02:  # the λ with no zeros all sit in one corner
          continue
        right = a[0] > b_mean - 0.1  # label points near the right edge on their left
        ax.annotate(
          f"λ={wd:g}",
          (a[0], z[0]),
          textcoords="offset points",
          xytext=(-6 if right else 6, 4),
          ha="right" if right else "left",
          fontsize=7,
          color=study.color(m),
        )
  ax.set(
    title=f"Sparsity–accuracy trade-off — {title}",
    xlabel="validation accuracy (fraction)",
    ylabel="exact-zero fraction of kernels",
    ylim=(-0.03, 1.05),
  )
  path = report.finish(fig, os.path.join(workdir, "sparsity_vs_accuracy.png"), [ax])
  figs.append(("exact-zero fraction vs validation accuracy, one point per λ (mean, 90% CI)", path))
  return figs


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  t0 = time.perf_counter()
  study.begin(config, workdir)
  rows, matched, times = run_all(config, workdir)
  keep = (
    "method",
    "weight_decay",
    "seed",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "diverged",
    *SPARSITY,
    "zero_count",
    "kernel_weights",
  )
  write_atomic(
    os.path.join(workdir, "metrics.jsonl"),
    "".join(json.dumps({k: r[k] for k in keep if k in r}) + "\n" for r in rows),
  )
  values = measure(rows, config, matched)
  findings = claims_lib.decide(declared, values, describe(rows, matched, values))
  wds = sorted(config.weight_decays)
  header = ["method", *[f"λ={wd:g}" for wd in wds]]
  tables = []
  for key, what in (
    ("zero_fraction", "exact-zero fraction of kernels"),
    ("val_accuracy", "validation accuracy"),
  ):
    table = [
      [LABELS[m], *[study.fmt(values[f"{m}/{key}@wd={wd:g}"]) for wd in wds]]
      for m in config.methods
    ]
    table.append([LABELS[BASELINE], study.fmt(values[f"{BASELINE}/{key}"]), *[""] * (len(wds) - 1)])
    tables.append((f"Final {what} (mean ± sd over seeds)", study.markdown_table(header, table)))
  figures = plot(rows, config, workdir)
  wall = time.perf_counter() - t0
  r = config.run
  study.write_summary(
    workdir,
    "L1 vs L2: exact zeros and accuracy across λ",
    findings,
    intro=(
      f"{r.dataset.name} with an MLP {tuple(r.model.kwargs['widths'])}, plain SGD (peak lr "
      f"{r.optimizer.learning_rate:g}, {r.optimizer.lr_schedule}), {r.steps} steps of batch "
      f"{r.batch_size}; the same initial weights and batches for every method at a given seed. "
      f"{r.dataset.validation_fraction:g} of the training data is held out for validation; "
      "accuracies below are on it, and the test split is read only for the λ = 0 baseline and "
      "the λ the protocol selects. Only kernels are penalised (biases are not), and sparsity is "
      "measured over the kernels. prox L1 = SGD step then soft-threshold by α_t·λ (exact zeros); "
      "subgradient L1 = g + λ·sign(θ) before the SGD step; L2 = g + λθ before the SGD step. λ in "
      "the three penalties has different units (λ‖θ‖₁ vs ½λ‖θ‖²), so compare methods on the "
      f"trade-off plot, not at equal λ. λ grid and seeds as in config.json ({len(config.seeds)} "
      "seeds)."
    ),
    tables=tables,
    figures=figures,
    footer=f"Wall time {wall:.0f} s ("
    + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
    + f") on {jax.device_count()} {jax.default_backend().upper()} device(s).",
  )
  return {"findings": findings, "rows": rows, "wall_time_sec": wall}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  runs = len(config.seeds) * (1 + len(config.methods) * len(config.weight_decays))
  return runs * config.run.steps


if __name__ == "__main__":
  study.main(run, work=work)
