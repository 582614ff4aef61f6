"""Does L1 give exact zeros, and at what accuracy? Proximal L1, subgradient L1 and L2 across λ.

Three penalties on the same base optimizer (plain SGD, same lr schedule, same batches): the
proximal soft-threshold `wd_jax.prox_l1`, the subgradient `wd_jax.add_l1` and coupled L2
(`wd_jax.sgd_l2`), each over a λ × seed grid, plus the undecayed baseline (λ = 0). Each method's
grid is one compiled program (`jax.vmap` over λ × seed, the steps in a `lax.fori_loop`). Writes
figures, metrics.jsonl (one line per run) and summary.md with the verdicts.

  python experiments/l1_vs_l2.py --config=experiments/configs/l1_vs_l2.py --workdir=runs/l1
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax

import wd_jax
from wd_jax import data as data_lib
from wd_jax import study, train
from wd_jax.masks import leaf_multipliers
from wd_jax.runlog import write_atomic

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


def make_optimizer(method: str, learning_rate, weight_decay, mask) -> optax.GradientTransformation:
  """Plain SGD with the method's penalty; λ may be traced (built inside the vmapped step)."""
  if method == "prox_l1":  # ISTA: gradient step, then soft-threshold by α_t·λ
    return optax.chain(
      optax.sgd(learning_rate), wd_jax.prox_l1(weight_decay, learning_rate=learning_rate, mask=mask)
    )
  if method == "add_l1":  # g + λ sign(θ), then the same SGD step
    return optax.chain(wd_jax.add_l1(weight_decay, mask=mask), optax.sgd(learning_rate))
  if method == "sgd_l2":  # g + λθ, then the same SGD step (torch SGD(weight_decay=λ))
    return wd_jax.sgd_l2(learning_rate, weight_decay, mask=mask)
  if method == BASELINE:
    return optax.sgd(learning_rate)
  raise ValueError(f"method must be one of {[*METHODS, BASELINE]}, got {method!r}.")


def _validate(config: ml_collections.ConfigDict) -> None:
  for m in config.methods:
    if m not in METHODS:
      raise ValueError(f"config.methods has {m!r}; valid: {list(METHODS)}.")
  if not config.weight_decays or not config.seeds:
    raise ValueError("config.weight_decays and config.seeds must be non-empty.")
  if any(not (wd > 0) for wd in config.weight_decays):
    raise ValueError(
      f"config.weight_decays must be > 0 (λ = 0 is the baseline), got "
      f"{tuple(config.weight_decays)}."
    )
  if not config.methods:
    raise ValueError("config.methods is empty.")
  if config.run.dataset.name not in ("mnist1d", "digits"):
    raise ValueError(
      f"config.run.dataset.name must be mnist1d or digits, got {config.run.dataset.name!r}."
    )
  if not 1 <= config.log_points <= config.run.steps:
    raise ValueError(f"config.log_points must be in [1, steps], got {config.log_points!r}.")


def _build(config: ml_collections.ConfigDict):
  """One Experiment per seed (its own initial params), sharing data, model and lr schedule."""
  exps = []
  for s in config.seeds:
    run = config.run.copy_and_resolve_references()
    run.seed = int(s)
    exps.append(train.build(run))
  return exps


def _number(key: str, value) -> float | int:
  return int(value) if key == "zero_count" else float(value)


class _Grid:
  """Runs one method over (λ, seed) pairs as one vmapped, jitted program."""

  def __init__(self, exps, config: ml_collections.ConfigDict):
    exp = exps[0]
    self.exp, self.config = exp, config
    self.run_config = config.run
    self.sampler = data_lib.make_batch_fn(exp.dataset, config.run.batch_size)
    self.rest = exp.init_state.rest
    self.params_by_seed = {s: e.init_state.params for s, e in zip(config.seeds, exps)}
    self.key_by_seed = {s: e.init_state.key for s, e in zip(config.seeds, exps)}
    self.mults = leaf_multipliers(exp.init_state.params, wd_jax.default_mask)
    leaves = jax.tree.leaves(exp.init_state.params)
    self.kernel_weights = sum(w.size for w, k in zip(leaves, self.mults) if k > 0)
    self.x_test, self.y_test = exp.dataset.x_test, exp.dataset.y_test

  def _loss(self, params, x, y):
    logits, _ = self.exp.apply(self.exp.train_graphdef, params, self.rest, x)
    return train.loss_and_metrics(self.exp.dataset.task, logits, y)[0]

  def _measure(self, params, x_test, y_test):
    logits, _ = self.exp.apply(self.exp.eval_graphdef, params, self.rest, x_test)
    _, m = train.loss_and_metrics(self.exp.dataset.task, logits, y_test)
    kernels = [w for w, k in zip(jax.tree.leaves(params), self.mults) if k > 0]
    count = sum(w.size for w in kernels)
    return {
      "test_accuracy": m["accuracy"],
      "test_loss": m["loss"],
      "zero_count": sum(jnp.sum(w == 0) for w in kernels),
      "zero_fraction": sum(jnp.sum(w == 0) for w in kernels) / count,
      "near_zero_fraction": sum(jnp.sum(jnp.abs(w) < NEAR_ZERO) for w in kernels) / count,
      "kernel_norm": jnp.sqrt(sum(jnp.sum(w * w) for w in kernels)),
      "kernel_l1": sum(jnp.sum(jnp.abs(w)) for w in kernels),
    }

  def run(self, method: str, pairs: list[tuple[float, int]]) -> list[dict[str, Any]]:
    lr = self.exp.lr_schedule
    mask = wd_jax.default_mask
    measure = self._measure

    def train_one(lam, params, key, sampler, x_test, y_test, stops):
      """Init, then the steps between consecutive `stops`, measuring at each: one program."""
      opt = make_optimizer(method, lr, lam, mask)

      def body(t, carry):
        p, s = carry
        x, y = sampler(jax.random.fold_in(key, t))  # the batches train.fit would draw
        updates, s = opt.update(jax.grad(self._loss)(p, x, y), s, p)
        return optax.apply_updates(p, updates), s

      def chunk(carry, stop):
        p, s, start = carry
        p, s = jax.lax.fori_loop(start, stop, body, (p, s))
        return (p, s, stop), measure(p, x_test, y_test)

      carry = (params, opt.init(params), jnp.int32(0))
      _, ms = jax.lax.scan(chunk, carry, stops)
      first = measure(params, x_test, y_test)
      return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, ms)

    # One compiled program per method; stacking on the host avoids an eager compile per leaf.
    program = jax.jit(jax.vmap(train_one, in_axes=(0, 0, 0, None, None, None, None)))
    stack = lambda *xs: np.stack([np.asarray(x) for x in xs])
    params = jax.tree.map(stack, *[self.params_by_seed[s] for _, s in pairs])
    keys = stack(*[self.key_by_seed[s] for _, s in pairs])
    lams = np.asarray([lam for lam, _ in pairs], np.float32)
    steps, points = self.run_config.steps, self.config.log_points
    marks = sorted({round(steps * (i + 1) / points) for i in range(points)})
    stops = np.asarray(marks, np.int32)
    m = jax.device_get(program(lams, params, keys, self.sampler, self.x_test, self.y_test, stops))
    traces = [
      [
        {"step": step, **{k: _number(k, v[i, j]) for k, v in m.items()}}
        for j, step in enumerate([0, *marks])
      ]
      for i in range(len(pairs))
    ]
    rows = []
    for (lam, seed), tr in zip(pairs, traces):
      final = tr[-1]
      diverged = not all(math.isfinite(v) for v in final.values())
      rows.append(
        {
          "method": method,
          "weight_decay": lam,
          "seed": seed,
          **final,
          "kernel_weights": self.kernel_weights,
          "diverged": diverged,
          "trace": tr,
        }
      )
    return rows


# ----------------------------------------------------------------------------------------------
# Reading the results.


def _vals(rows, method, key, wd=None) -> list[float]:
  out = []
  for r in rows:
    if r["method"] == method and (wd is None or math.isclose(r["weight_decay"], wd)):
      out.append(math.nan if r["diverged"] else float(r[key]))
  return out


def _max_over_wd(rows, method, key, seeds) -> list[float]:
  """Per seed, the largest value of `key` over the whole λ grid."""
  return [
    max(float(r[key]) for r in rows if r["method"] == method and r["seed"] == s) for s in seeds
  ]


def _zero_counts(rows, method) -> str:
  """ "at most K exact zeros out of N kernel weights" over every λ and seed of `method`."""
  rs = [r for r in rows if r["method"] == method]
  k = max(int(r["zero_count"]) for r in rs)
  n = rs[0]["kernel_weights"]
  return f"at most {k} exact zeros among the {n:,} kernel weights, over every λ and seed"


def matched_accuracy(rows, wds, margin: float) -> dict[str, Any] | None:
  """The largest λ whose mean prox_l1 accuracy is within `margin` of the baseline's mean."""
  base, _ = study.mean_spread(_vals(rows, BASELINE, "test_accuracy"))
  ok = [
    wd
    for wd in wds
    if study.mean_spread(_vals(rows, "prox_l1", "test_accuracy", wd))[0] >= base - margin
  ]
  if not ok:
    return None
  wd = max(ok)
  return {
    "weight_decay": wd,
    "accuracy": _vals(rows, "prox_l1", "test_accuracy", wd),
    "zero_fraction": _vals(rows, "prox_l1", "zero_fraction", wd),
    "baseline_accuracy": _vals(rows, BASELINE, "test_accuracy"),
  }


def findings_for(rows, config) -> list[study.Finding]:
  methods = set(config.methods)
  wds = sorted(config.weight_decays)
  lo, hi = wds[0], wds[-1]
  zeros = [0.0] * len(config.seeds)
  tol = 1e-3  # "≈ 0 exact zeros": at most 0.1% of the penalised weights
  out = []
  if "prox_l1" in methods:
    by_wd = [study.mean_spread(_vals(rows, "prox_l1", "zero_fraction", wd))[0] for wd in wds]
    monotone = all(b >= a for a, b in itertools.pairwise(by_wd))
    out.append(
      study.Finding(
        "The proximal (soft-threshold) L1 step drives weights exactly to zero, and more of them "
        f"as λ grows (exact-zero fraction at λ = {hi:g} > at λ = {lo:g}).",
        "REFERENCES §5; Tibshirani 1996 (lasso), ISTA (Daubechies et al. 2004)",
        study.compare(
          _vals(rows, "prox_l1", "zero_fraction", hi),
          _vals(rows, "prox_l1", "zero_fraction", lo),
          expect="greater",
          names=(f"zeros at λ={hi:g}", f"zeros at λ={lo:g}"),
        ),
        "fraction of exact zeros in the kernels by λ: "
        + ", ".join(
          f"λ={wd:g}: {study.fmt(_vals(rows, 'prox_l1', 'zero_fraction', wd))}" for wd in wds
        )
        + f"; non-decreasing in λ: {'yes' if monotone else 'no'}",
      )
    )
  if "add_l1" in methods:
    near = _vals(rows, "add_l1", "near_zero_fraction", hi)
    out.append(
      study.Finding(
        "A subgradient L1 step (g + λ·sign θ) does not give exact zeros: weights oscillate around "
        f"0 (exact-zero fraction ≤ {tol:g} at every λ).",
        "REFERENCES §5",
        study.compare(
          _max_over_wd(rows, "add_l1", "zero_fraction", config.seeds),
          zeros,
          expect="equal",
          margin=tol,
          names=("largest exact-zero fraction over λ", "zero"),
        ),
        f"{_zero_counts(rows, 'add_l1')}, while at λ = {hi:g} a fraction {study.fmt(near)} of "
        f"the kernel weights has |w| < {NEAR_ZERO:g} (small, not zero)",
      )
    )
  if {"prox_l1", "add_l1"} <= methods:
    out.append(
      study.Finding(
        f"At the same λ (= {hi:g}) the proximal step gives more exact zeros than the subgradient "
        "step.",
        "REFERENCES §5",
        study.compare(
          _vals(rows, "prox_l1", "zero_fraction", hi),
          _vals(rows, "add_l1", "zero_fraction", hi),
          expect="greater",
          names=("prox L1", "subgradient L1"),
        ),
      )
    )
  if "sgd_l2" in methods:
    out.append(
      study.Finding(
        f"L2 gives no exact zeros (exact-zero fraction ≤ {tol:g} at every λ)…",
        "REFERENCES §5",
        study.compare(
          _max_over_wd(rows, "sgd_l2", "zero_fraction", config.seeds),
          zeros,
          expect="equal",
          margin=tol,
          names=("largest exact-zero fraction over λ", "zero"),
        ),
        _zero_counts(rows, "sgd_l2"),
      )
    )
    out.append(
      study.Finding(
        f"…but it shrinks the weights: ‖W‖₂ of the kernels at λ = {hi:g} is below the "
        "undecayed run's.",
        "REFERENCES §5",
        study.compare(
          _vals(rows, "sgd_l2", "kernel_norm", hi),
          _vals(rows, BASELINE, "kernel_norm"),
          expect="less",
          names=(f"L2 λ={hi:g}", "λ = 0"),
        ),
      )
    )
  if "prox_l1" in methods:
    margin = config.matched_accuracy_margin
    m = matched_accuracy(rows, wds, margin)
    claim = (
      f"At matched accuracy (mean test accuracy within {100 * margin:g} point of the undecayed "
      "baseline) proximal L1 still zeroes a non-trivial fraction of the weights."
    )
    src = "REFERENCES §5 (L1 sparsity)"
    if m is None:
      base = _vals(rows, BASELINE, "test_accuracy")
      out.append(
        study.Finding(
          claim,
          src,
          study.Verdict(
            study.INCONCLUSIVE,
            f"no λ in the grid keeps prox L1 within {margin:g} of the baseline {study.fmt(base)}",
          ),
        )
      )
    else:
      wd = m["weight_decay"]
      out.append(
        study.Finding(
          claim,
          src,
          study.compare(
            m["zero_fraction"],
            zeros,
            expect="greater",
            margin=0.01,
            names=(f"exact zeros at λ={wd:g}", "zero"),
          ),
          f"largest such λ = {wd:g}: test accuracy {study.fmt(m['accuracy'])} vs baseline "
          f"{study.fmt(m['baseline_accuracy'])}; exact zeros {study.fmt(m['zero_fraction'])} "
          "of the kernel weights",
        )
      )
  return out


# ----------------------------------------------------------------------------------------------
# Figures.


def _errorbar(ax, rows, method, wds, key, **kw):
  means, sds = zip(*(study.mean_spread(_vals(rows, method, key, wd)) for wd in wds))
  ax.errorbar(
    wds,
    means,
    yerr=sds,
    color=study.color(method),
    capsize=3,
    **STYLES[method],
    label=LABELS[method],
    **kw,
  )


def plot(rows, config, workdir: str) -> list[tuple[str, str]]:
  methods, wds = list(config.methods), sorted(config.weight_decays)
  title = "MNIST-1D MLP" if config.run.dataset.name == "mnist1d" else "digits MLP"
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
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"Sparsity of the penalised weights vs λ — {title}", fontsize=11)
  fig.tight_layout()
  path = os.path.join(workdir, "zero_fraction_vs_wd.png")
  fig.savefig(path)
  plt.close(fig)
  figs.append(("fraction of exactly-zero (left) and near-zero (right) kernel weights vs λ", path))
  # 2. Test accuracy vs λ, with the baseline band.
  base_m, base_s = study.mean_spread(_vals(rows, BASELINE, "test_accuracy"))
  margin = config.matched_accuracy_margin
  fig, ax = plt.subplots(figsize=(5.8, 3.8), dpi=100)
  ax.axhspan(base_m - base_s, base_m + base_s, color=study.color(BASELINE), alpha=0.3, lw=0)
  ax.axhline(base_m, color=study.color(BASELINE), lw=1.5, label=LABELS[BASELINE])
  ax.axhline(
    base_m - margin,
    color=study.color(BASELINE),
    lw=1,
    ls=":",
    label=f"baseline − {100 * margin:g} point",
  )
  for m in methods:
    _errorbar(ax, rows, m, wds, "test_accuracy")
  ax.set_xscale("log")
  ax.set(
    title=f"Final test accuracy vs λ — {title}",
    xlabel="weight decay λ",
    ylabel="test accuracy (fraction)",
  )
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  path = os.path.join(workdir, "test_accuracy_vs_wd.png")
  fig.savefig(path)
  plt.close(fig)
  figs.append(("final test accuracy vs λ (mean ± sd over seeds; band: λ = 0 baseline)", path))
  # 3. Trade-off: exact zeros vs accuracy, one point per λ.
  fig, ax = plt.subplots(figsize=(5.8, 3.8), dpi=100)
  ax.axvspan(
    base_m - margin,
    max(base_m + base_s, base_m) + 0.005,
    color=study.color(BASELINE),
    alpha=0.2,
    lw=0,
    label=f"matched: within {100 * margin:g} point of λ = 0",
  )
  for m in methods:
    acc = [study.mean_spread(_vals(rows, m, "test_accuracy", wd)) for wd in wds]
    zf = [study.mean_spread(_vals(rows, m, "zero_fraction", wd)) for wd in wds]
    ax.errorbar(
      [a[0] for a in acc],
      [z[0] for z in zf],
      xerr=[a[1] for a in acc],
      yerr=[z[1] for z in zf],
      color=study.color(m),
      capsize=2,
      **STYLES[m],
      label=LABELS[m],
    )
    if m == "prox_l1":
      for wd, a, z in zip(wds, acc, zf):
        if z[0] < 0.02:  # the λ with no zeros all sit in one corner
          continue
        right = a[0] > base_m - 0.1  # label points near the right edge on their left
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
    xlabel="test accuracy (fraction)",
    ylabel="exact-zero fraction of kernels",
    ylim=(-0.03, 1.05),
  )
  ax.legend(fontsize=8, loc="center left")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  path = os.path.join(workdir, "sparsity_vs_accuracy.png")
  fig.savefig(path)
  plt.close(fig)
  figs.append(("exact-zero fraction vs test accuracy, one point per λ (mean ± sd)", path))
  return figs


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  _validate(config)
  study.check_workdir(workdir)
  t0 = time.perf_counter()
  exps = _build(config)  # validates the run config and loads the data before anything is written
  study.begin(config, workdir)
  grid = _Grid(exps, config)
  wds = sorted(config.weight_decays)
  rows, times = [], {}
  # At λ = 0 every method is plain SGD (sgd_l2 exactly, the others up to float rounding), so the
  # baseline rides in one method's grid instead of compiling a program of its own.
  host = "sgd_l2" if "sgd_l2" in config.methods else config.methods[0]
  for method in config.methods:
    t = time.perf_counter()
    pairs = [(wd, s) for wd in wds for s in config.seeds]
    if method == host:
      pairs += [(0.0, s) for s in config.seeds]
    out = grid.run(method, pairs)
    for r in out:
      if r["weight_decay"] == 0.0:
        r["method"] = BASELINE
    rows += out
    times[method] = time.perf_counter() - t
    print(f"{method}: {len(pairs)} runs in {times[method]:.1f} s")
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
  findings = findings_for(rows, config)
  header = ["method", *[f"λ={wd:g}" for wd in wds]]
  tables = []
  for key, what in (
    ("zero_fraction", "exact-zero fraction of kernels"),
    ("test_accuracy", "test accuracy"),
  ):
    table = [
      [LABELS[m], *[study.fmt(_vals(rows, m, key, wd)) for wd in wds]] for m in config.methods
    ]
    table.append([LABELS[BASELINE], study.fmt(_vals(rows, BASELINE, key)), *[""] * (len(wds) - 1)])
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
      "Only kernels are penalised (biases are not), and sparsity is measured over the kernels. "
      "prox L1 = SGD step then soft-threshold by α_t·λ (exact zeros); subgradient L1 = "
      "g + λ·sign(θ) before the SGD step; L2 = g + λθ before the SGD step. λ in the three "
      "penalties has different units (λ‖θ‖₁ vs ½λ‖θ‖²), so compare methods on the trade-off "
      f"plot, not at equal λ. λ grid and seeds as in config.json ({len(config.seeds)} seeds)."
    ),
    tables=tables,
    figures=figures,
    footer=f"Wall time {wall:.0f} s ("
    + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
    + f") on {jax.device_count()} {jax.default_backend().upper()} device(s).",
  )
  return {"findings": findings, "rows": rows, "wall_time_sec": wall}


if __name__ == "__main__":
  study.main(run)
