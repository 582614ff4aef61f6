"""L1 vs L2 where the answer is not built in: accuracy at matched sparsity, and support recovery.

Two questions, in two phases. (a) On an MNIST-1D MLP (plain SGD), proximal L1
(`wd_jax.prox_l1`: exact zeros) against coupled L2 (`wd_jax.sgd_l2`) followed by global magnitude
pruning of the penalised kernels to *the same* exact-zero fraction: which is more accurate at
matched sparsity? (b) On a sparse linear teacher (n samples, d features, k nonzero weights),
lasso (full-batch ISTA: SGD step + `wd_jax.prox_l1`) against ridge (its closed form, the fixed
point of coupled L2) followed by keeping the k largest |θ|: which recovers the teacher's
support (F1 of the nonzero set; precision of the top k)?

**Tune** (``--config.phase=tune``): prox L1 over λ, the cells whose mean exact-zero fraction
reaches ``min_sparsity`` selected on validation items; L2 over λ (and 0), each run pruned to prox
L1's selected sparsity, selected on validation items; lasso and ridge over λ, selected on the
teacher's validation samples (squared error). Writes the pre-registration. **Confirm** (the
default): the tuned cells on fresh seeds and a fresh draw; each prox run's zero fraction sets the
pruning of the same seed's L2 run; every run's test split read once, per item; fresh teacher
draws for (b); claims over seeds (× items for accuracy), Holm.

  python experiments/l1_vs_l2.py --config=experiments/configs/l1_vs_l2.py --workdir=runs/l1
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import wd_jax
from wd_jax import study
from wd_jax.engine import data as data_lib
from wd_jax.engine import sweep
from wd_jax.masks import leaf_multipliers
from wd_jax.study import claims as claims_lib
from wd_jax.study import phases, preregistration, protocol, report, schema, stats

NET_ARMS = ("prox_l1", "l2")
LINEAR_ARMS = ("lasso", "ridge")
FIELDS = {
  **phases.fields(
    prox_weight_decays=schema.numbers(),
    l2_weight_decays=schema.numbers(positive=False),
    lasso_weight_decays=schema.numbers(),
    ridge_weight_decays=schema.numbers(),
  ),
  "min_sparsity": schema.number(low=0.0, high=1.0, open_low=True),
  "strategy": schema.choice(("vmap", "sequential", "auto")),
  "resamples": schema.integer(minimum=20),
  "teacher": schema.section(
    {
      "num_train": schema.integer(minimum=2),
      "num_val": schema.integer(minimum=2),
      "dim": schema.integer(minimum=2),
      "nonzeros": schema.integer(minimum=1),
      "noise": schema.number(low=0.0),
      "steps": schema.integer(minimum=1),
    }
  ),
}
MEASUREMENTS = (
  "prox_l1/test_accuracy",
  "l2_pruned/test_accuracy",
  "prox_l1/zero_fraction",
  "l2_pruned/zero_fraction",
  "sparsity/pruned_minus_prox",
  "lasso/support_f1",
  "ridge/support_f1",
  "lasso/precision_at_k",
  "ridge/precision_at_k",
  "lasso/support_size",
)


def measurement_names(config) -> list[str]:
  """Every measurement this study produces (claims may read any of them)."""
  del config
  return list(MEASUREMENTS)


# ----------------------------------------------------------------------------------------------
# (a) The network: training, exact zeros, magnitude pruning.


def recipe(arm: str):
  """The arm's optimizer recipe (learning_rate, weight_decay, mask -> optax chain)."""

  def prox(learning_rate, weight_decay, mask):  # SGD step, then soft-threshold by α_t·λ
    return optax.chain(
      optax.sgd(learning_rate), wd_jax.prox_l1(weight_decay, learning_rate=learning_rate, mask=mask)
    )

  def l2(learning_rate, weight_decay, mask):  # g + λθ, then the same SGD step (λ = 0: plain SGD)
    return wd_jax.sgd_l2(learning_rate, weight_decay, mask=mask)

  return {"prox_l1": prox, "l2": l2}[arm]


def train_arm(config, arm: str, phase: str, wds, seeds, workdir: str):
  """The arm's λ × seeds on the phase's draw; final states kept, no split read here."""
  run = phases.phase_run(config, phase)
  points = [{"weight_decay": float(w), "seed": int(s)} for w in wds for s in seeds]
  rows = sweep.run_sweep(
    run,
    points,
    os.path.join(workdir, arm),
    strategy=config.strategy,
    verbose=False,
    return_states=True,
    optimizer=recipe(arm),
    select=lambda rows: [],
  )
  return run, rows


def kernels(params) -> list[bool]:
  """Which leaves are penalised (and measured, and pruned): the kernels."""
  return [k > 0 for k in leaf_multipliers(params, wd_jax.default_mask)]


def zero_fraction(params) -> float:
  leaves = [np.asarray(w) for w, k in zip(jax.tree.leaves(params), kernels(params)) if k]
  return sum(int(np.sum(w == 0)) for w in leaves) / sum(w.size for w in leaves)


def prune(params, fraction: float):
  """Global magnitude pruning: the round(fraction·N) kernel weights of smallest |w| set to 0."""
  leaves, treedef = jax.tree.flatten(params)
  mask = kernels(params)
  flat = np.concatenate([np.abs(np.asarray(w)).ravel() for w, k in zip(leaves, mask) if k])
  drop = np.zeros(flat.size, bool)
  drop[np.argsort(flat, kind="stable")[: round(fraction * flat.size)]] = True
  out, at = [], 0
  for w, k in zip(leaves, mask):
    w = np.array(w)
    if k:
      w[drop[at : at + w.size].reshape(w.shape)] = 0
      at += w.size
    out.append(w)
  return jax.tree.unflatten(treedef, out)


def outcomes(run, rows, split: str, fractions=None) -> None:
  """Scores each row's final state on `split` per item (``row[split + "_items"]``, its mean
  ``row[split + "_accuracy"]``), pruned to ``fractions[i]`` when given; sets
  ``zero_fraction``; drops the state."""
  states = []
  for i, r in enumerate(rows):
    s = None if r["diverged"] else r["state"]
    if s is not None and fractions is not None:
      s = s._replace(params=prune(s.params, fractions[i]))
    r["zero_fraction"] = math.nan if s is None else zero_fraction(s.params)
    states.append(s)
  for r, items in zip(rows, protocol.item_outcomes(run, states, split)):
    r[f"{split}_items"] = items
    r[f"{split}_accuracy"] = float(np.mean(items["accuracy"])) if items else math.nan
    r.pop("state", None)


def net_candidates(rows, wds, seeds, split: str):
  """(cell, (seeds, items) accuracy) per λ, and each λ's mean exact-zero fraction."""
  cands, sparsity = [], {}
  for wd in wds:
    cell_rows = protocol.rows_of(rows, {"weight_decay": wd})
    cands.append(
      ({"weight_decay": wd}, protocol.seeds_items(cell_rows, f"{split}_items", "accuracy", seeds))
    )
    sparsity[wd] = float(np.mean([r["zero_fraction"] for r in cell_rows]))
  return cands, sparsity


# ----------------------------------------------------------------------------------------------
# (b) The sparse linear teacher: lasso (ISTA through wd_jax.prox_l1) and ridge + top k.


def teacher_problem(teacher, draw_seed: int, seed: int) -> dict[str, np.ndarray]:
  """k = ``nonzeros`` of d weights ±U(0.5, 1.5), x ~ N(0, I_d), y = x·w + noise·N(0, 1)."""
  rng = np.random.default_rng([draw_seed, seed])
  d, k, n = teacher.dim, teacher.nonzeros, teacher.num_train + teacher.num_val
  w = np.zeros(d)
  support = np.sort(rng.choice(d, k, replace=False))
  w[support] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 1.5, k)
  x = rng.normal(size=(n, d))
  y = x @ w + teacher.noise * rng.normal(size=n)
  m = teacher.num_train
  return {"x": x[:m], "y": y[:m], "x_val": x[m:], "y_val": y[m:], "support": support}


def lasso(x, y, lams, steps: int) -> np.ndarray:
  """(len(lams), d): ISTA on ½‖Xθ − y‖²/n + λ‖θ‖₁ from θ = 0, step 1/L, `steps` steps."""
  lr = 1.0 / float(np.linalg.eigvalsh(x.T @ x / len(y))[-1])
  with jax.enable_x64(True):
    args = (jnp.asarray(x), jnp.asarray(y), jnp.asarray(lams, jnp.float64), lr)
    return np.asarray(ista(*args, steps=steps))


@functools.partial(jax.jit, static_argnames="steps")
def ista(x, y, lams, lr, *, steps: int):
  """`steps` full-batch steps of SGD then `wd_jax.prox_l1` (λ a schedule: traced), one per λ."""
  grad = jax.grad(lambda t: 0.5 * jnp.mean((x @ t - y) ** 2))

  def solve(lam):
    opt = optax.chain(optax.sgd(lr), wd_jax.prox_l1(lambda _: lam, learning_rate=lr))

    def body(carry, _):
      t, s = carry
      u, s = opt.update(grad(t), s, t)
      return (optax.apply_updates(t, u), s), None

    theta = jnp.zeros(x.shape[1], x.dtype)
    return jax.lax.scan(body, (theta, opt.init(theta)), None, length=steps)[0][0]

  return jax.vmap(solve)(lams)


def solutions(arm: str, p, lams, steps: int) -> np.ndarray:
  if arm == "lasso":
    return lasso(p["x"], p["y"], lams, steps)
  return np.stack([data_lib.ridge_solution(p["x"], p["y"], lam) for lam in lams])


def support_scores(theta, support, k: int, arm: str) -> dict[str, float]:
  """Support F1 (lasso: its nonzeros; ridge: its top k) and precision of the top k |θ|."""
  top = set(np.argsort(-np.abs(theta), kind="stable")[:k].tolist())
  chosen = set(np.flatnonzero(theta).tolist()) if arm == "lasso" else top
  true = set(support.tolist())
  hit = len(chosen & true)
  f1 = 2 * hit / (len(chosen) + len(true))
  return {"support_f1": f1, "precision_at_k": len(top & true) / k, "support_size": len(chosen)}


def linear_tune(config) -> dict[str, list]:
  """arm -> (cell, (seeds, validation samples) squared error) per λ, on the tuning draws."""
  t, out = config.teacher, {}
  problems = [teacher_problem(t, config.tune.dataset.seed, s) for s in config.tune.seeds]
  for arm in LINEAR_ARMS:
    lams = list(config.tune[f"{arm}_weight_decays"])
    errs = [
      (np.stack([p["x_val"] @ th for th in solutions(arm, p, lams, t.steps)]) - p["y_val"]) ** 2
      for p in problems
    ]
    out[arm] = [
      ({"weight_decay": lam}, np.stack([e[j] for e in errs])) for j, lam in enumerate(lams)
    ]
  return out


def linear_confirm(config, cells) -> dict[str, np.ndarray]:
  """Per fresh teacher draw: each arm's support F1, precision at k (and lasso's support size)."""
  t, out = config.teacher, {}
  for arm in LINEAR_ARMS:
    lam = cells[arm][0]["weight_decay"]
    scores = []
    for s in config.confirm.seeds:
      p = teacher_problem(t, config.confirm.dataset.seed, s)
      scores.append(
        support_scores(solutions(arm, p, [lam], t.steps)[0], p["support"], t.nonzeros, arm)
      )
    for key in ("support_f1", "precision_at_k", "support_size"):
      out[f"{arm}/{key}"] = np.array([sc[key] for sc in scores], float)
  return out


# ----------------------------------------------------------------------------------------------
# The phases.


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase: selection on validation for the four arms; writes the pre-registration."""
  study.begin(config, workdir)
  t0, t = time.perf_counter(), config.tune
  prox_run, prox = train_arm(config, "prox_l1", "tune", t.prox_weight_decays, t.seeds, workdir)
  outcomes(prox_run, prox, "val")
  cands, sparsity = net_candidates(prox, t.prox_weight_decays, t.seeds, "val")
  eligible = [(c, v) for c, v in cands if sparsity[c["weight_decay"]] >= config.min_sparsity]
  if len(eligible) < 2:  # a selection needs a choice (and a runner-up to measure it against)
    raise ValueError(
      f"{len(eligible)} prox_l1 λ reach config.min_sparsity={config.min_sparsity:g} (mean "
      f"exact-zero fractions {sparsity}); 2 are needed: extend config.tune.prox_weight_decays."
    )
  axes = lambda arm: {"weight_decay": list(t[f"{arm}_weight_decays"])}
  sel = phases.select({"prox_l1": eligible}, axes("prox"), larger=True, resamples=config.resamples)
  target = sparsity[sel["prox_l1"].choice.pick["weight_decay"]]
  l2_run, l2 = train_arm(config, "l2", "tune", t.l2_weight_decays, t.seeds, workdir)
  outcomes(l2_run, l2, "val", [target] * len(l2))
  l2_cands, _ = net_candidates(l2, t.l2_weight_decays, t.seeds, "val")
  sel.update(phases.select({"l2": l2_cands}, axes("l2"), larger=True, resamples=config.resamples))
  lin = linear_tune(config)
  for arm in LINEAR_ARMS:
    sel.update(phases.select({arm: lin[arm]}, axes(arm), larger=False, resamples=config.resamples))
  lr = {"learning_rate": config.run.optimizer.learning_rate}  # fixed, as the run's (a) only
  cells = {
    a: [{**(lr if a in NET_ARMS else {}), **s.choice.pick, "roles": ["tuned"]}]
    for a, s in sel.items()
  }
  extra = {
    f"{a}_weight_decays": list(t[f"{a}_weight_decays"]) for a in ("prox", "l2", *LINEAR_ARMS)
  }
  extra.update(
    teacher=config.teacher.to_dict(),
    min_sparsity=config.min_sparsity,
    tuning_sparsity=target,
    prox_sparsity={f"{k:g}": v if math.isfinite(v) else None for k, v in sparsity.items()},
  )
  prereg = phases.preregister(config, "l1_vs_l2", cells, sel, extra)
  path = tune_figure(config, {"prox_l1": cands, "l2": l2_cands, **lin}, sparsity, sel, workdir)
  note = (
    f"prox L1 selected among the λ whose mean exact-zero fraction on the tuning draw reaches "
    f"{config.min_sparsity:g}; its sparsity there, {target:.3f}, is the fraction every L2 run "
    f"was pruned to before it was scored. Figure: mean validation metric against λ (L2's λ = 0 "
    "drawn at 1e-6), the pick starred; prox L1's exact-zero fraction against λ.\n\n"
    f"![validation]({os.path.basename(path)})"
  )
  phases.write_tune_summary(workdir, "L1 vs L2: tune", prereg, sel, [("Selected", note)])
  wall = f"wall time {time.perf_counter() - t0:.0f} s"
  return {
    "findings": [],
    "lines": [*phases.tune_lines(sel), wall, f"pre-registration {prereg.short}: {prereg.path}"],
  }


def open_confirm(config, workdir: str) -> preregistration.Preregistration:
  """`phases.open_confirm`, after refusing a teacher or sparsity rule that is not the
  pre-registration's (before the workdir is touched)."""
  body = preregistration.read(config.preregistration).body["tune"]
  for key, now in (("teacher", config.teacher.to_dict()), ("min_sparsity", config.min_sparsity)):
    if body.get(key) != now:
      raise ValueError(
        f"config.{key} is {now!r}, the pre-registration's is {body.get(key)!r}: run the tune "
        "phase again."
      )
  return phases.open_confirm(config, workdir)


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the tuned cells on fresh seeds and a fresh draw (and fresh teachers)."""
  prereg = open_confirm(config, workdir)
  study.begin(config, workdir)
  t0, cells, seeds = time.perf_counter(), prereg.body["cells"], list(config.confirm.seeds)
  wd = lambda arm: [cells[arm][0]["weight_decay"]]
  prox_run, prox = train_arm(config, "prox_l1", "confirm", wd("prox_l1"), seeds, workdir)
  outcomes(prox_run, prox, "test")
  matched = [r["zero_fraction"] if math.isfinite(r["zero_fraction"]) else 0.0 for r in prox]
  l2_run, l2 = train_arm(config, "l2", "confirm", wd("l2"), seeds, workdir)
  outcomes(l2_run, l2, "test", matched)
  rows = {"prox_l1": prox, "l2": l2}
  values = {
    "prox_l1/test_accuracy": protocol.seeds_items(prox, "test_items", "accuracy", seeds),
    "l2_pruned/test_accuracy": protocol.seeds_items(l2, "test_items", "accuracy", seeds),
    "prox_l1/zero_fraction": np.array([r["zero_fraction"] for r in prox]),
    "l2_pruned/zero_fraction": np.array([r["zero_fraction"] for r in l2]),
  }
  values["sparsity/pruned_minus_prox"] = (
    values["l2_pruned/zero_fraction"] - values["prox_l1/zero_fraction"]
  )
  values.update(linear_confirm(config, cells))
  fmt = lambda v: f"{np.nanmean(v):.4f}" if np.ndim(v) == 2 else study.fmt(v, 4)
  said = lambda c: "; ".join(f"{m}: {fmt(values[m])}" for m in c.measurements)
  findings = claims_lib.decide(claims_lib.parse(config.claims), values, said)
  diverged = phases.write_run_lines(
    workdir,
    rows,
    {"prox_l1": cells["prox_l1"], "l2": cells["l2"]},
    {"zero_fraction": lambda r: r["zero_fraction"]},
  )
  study.write_summary(
    workdir,
    "L1 vs L2 at matched sparsity, and support recovery: confirm",
    findings,
    intro=intro(config, cells),
    tables=tables(config, values),
    figures=[confirm_figure(config, values, workdir)],
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}. Wall time {time.perf_counter() - t0:.0f} s.",
  )
  return {"findings": findings, "rows": rows, "values": values}


def intro(config, cells) -> str:
  t, r = config.teacher, config.run
  lam = lambda a: f"{cells[a][0]['weight_decay']:.3g}"
  regime = "n < d" if t.num_train < t.dim else "n ≥ d"
  return (
    f"Confirm phase: only the pre-registered cells, on {len(config.confirm.seeds)} fresh seeds "
    f"and a fresh draw ({dict(config.confirm.dataset)}). (a) MNIST-1D, MLP "
    f"{tuple(r.model.kwargs['widths'])}, plain SGD (peak lr {r.optimizer.learning_rate:g}, "
    f"{r.optimizer.lr_schedule}), {r.steps} steps "
    f"of batch {r.batch_size}; kernels penalised, biases not. prox L1 at λ = {lam('prox_l1')}; "
    f"L2 at λ = {lam('l2')}, then its kernels pruned globally by magnitude to the exact-zero "
    "fraction of the prox L1 run of the same seed (no retraining); each run's test split read "
    f"once, per item. (b) Sparse linear teacher, regime {regime}: n = {t.num_train} training "
    f"samples, d = {t.dim} features, k = {t.nonzeros} nonzero weights ±U(0.5, 1.5), x ~ N(0, I), "
    f"label noise σ = {t.noise:g}, one fresh teacher and data set per seed; lasso (ISTA, "
    f"{t.steps} steps of 1/L) at λ = {lam('lasso')}, its support its nonzeros; ridge (closed "
    f"form) at λ = {lam('ridge')}, its support its k largest |θ| (it is told k, lasso is not). "
    "By construction: prox L1 makes exact zeros and the pruned L2 network has the same sparsity "
    "(listed apart); ridge + top k always names k features, so its F1 equals its precision at k."
  )


def tables(config, values) -> list[tuple[str, str]]:
  rows = []
  for arm in ("prox_l1", "l2_pruned"):
    m, lo, hi = stats.seeds_items_interval(values[f"{arm}/test_accuracy"])
    rows.append(
      [arm, f"{m:.4f} [{lo:.4f}, {hi:.4f}]", study.fmt(values[f"{arm}/zero_fraction"], 4)]
    )
  d, dlo, dhi = stats.seeds_items_interval(
    values["prox_l1/test_accuracy"], values["l2_pruned/test_accuracy"]
  )
  rows.append(["prox_l1 − l2_pruned", f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]", ""])
  net = study.markdown_table(
    ["arm", "test accuracy [90% CI, seeds × items]", "exact-zero fraction"], rows
  )
  lin = [
    [
      a,
      *(study.fmt(values[f"{a}/{k}"], 3) for k in ("support_f1", "precision_at_k", "support_size")),
    ]
    for a in LINEAR_ARMS
  ]
  lin_table = study.markdown_table(["arm", "support F1", "precision at k", "support size"], lin)
  n = len(config.confirm.seeds)
  return [
    ("(a) Network at matched sparsity", net),
    (f"(b) Sparse teacher, mean ± sd over {n} draws", lin_table),
  ]


# ----------------------------------------------------------------------------------------------
# Figures.


def tune_figure(config, cands, sparsity, sel, workdir: str) -> str:
  """Validation metric against λ for each arm, its pick marked; prox L1's sparsity beside it."""
  fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6), dpi=100)
  for ax, arms, what in (
    (axes[0], NET_ARMS, "validation accuracy (L2 pruned)"),
    (axes[2], LINEAR_ARMS, "validation squared error"),
  ):
    for arm in arms:
      lams = [c["weight_decay"] for c, _ in cands[arm]]
      ys = [float(np.mean(v)) for _, v in cands[arm]]
      x = [max(v, 1e-6) for v in lams]  # λ = 0 drawn at 1e-6 on the log axis
      ax.plot(x, ys, marker="o", color=study.color(arm) if arm in NET_ARMS else None, label=arm)
      pick = sel[arm].choice.pick["weight_decay"]
      ax.plot([max(pick, 1e-6)], [ys[lams.index(pick)]], "k*", ms=12)
    ax.set(xscale="log", xlabel="λ", ylabel=what)
  lams = sorted(sparsity)
  axes[1].plot(lams, [sparsity[v] for v in lams], marker="o", color=study.color("prox_l1"))
  axes[1].axhline(config.min_sparsity, color="k", ls=":", lw=1, label="min_sparsity")
  axes[1].set(xscale="log", xlabel="prox L1 λ", ylabel="exact-zero fraction of kernels")
  report.plain_log_ticks(axes[1], "x")
  path = os.path.join(workdir, "tune_validation.png")
  return report.finish(fig, path, list(axes), fontsize=7)


def confirm_figure(config, values, workdir: str) -> tuple[str, str]:
  """Left: per-seed test accuracy, prox L1 vs pruned L2; right: per-draw support F1."""
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 3.6), dpi=100)
  a = np.nanmean(values["prox_l1/test_accuracy"], axis=1)
  b = np.nanmean(values["l2_pruned/test_accuracy"], axis=1)
  ax.scatter(b, a, s=18, color=study.color("prox_l1"))
  lo, hi = np.nanmin([a, b]) - 0.01, np.nanmax([a, b]) + 0.01
  ax.plot([lo, hi], [lo, hi], "k:", lw=1)
  ax.set(
    xlabel="L2 + magnitude pruning",
    ylabel="prox L1",
    title="test accuracy per seed (matched sparsity)",
  )
  f1 = [values[f"{arm}/support_f1"] for arm in LINEAR_ARMS]
  bx.boxplot(f1, tick_labels=["lasso (its nonzeros)", "ridge + top k"])
  bx.set(
    ylabel="support F1 per teacher draw",
    title=f"k = {config.teacher.nonzeros} of d = {config.teacher.dim}",
  )
  path = report.finish(fig, os.path.join(workdir, "l1_vs_l2.png"), [], legend=False, fontsize=7)
  caption = (
    "Left: each seed's test accuracy, prox L1 against L2 pruned to its sparsity (dotted: "
    "equal); right: support F1 over the fresh teacher draws"
  )
  return caption, path


def run(config, workdir: str) -> dict[str, Any]:
  study.check(config, workdir, FIELDS, measurement_names)
  return tune(config, workdir) if config.phase == "tune" else confirm(config, workdir)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  if config.phase == "tune":
    cells = len(config.tune.prox_weight_decays) + len(config.tune.l2_weight_decays)
    return cells * len(config.tune.seeds) * config.run.steps
  return len(NET_ARMS) * len(config.confirm.seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, work=work)
