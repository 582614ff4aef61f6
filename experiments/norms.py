"""Does a scale-invariant metric track generalisation where the raw weight norm does not?

True vs random labels × no decay vs early-only decay, in two phases. **Tune**
(``--config.phase=tune``, true labels only): early-only decay over lr × strength (τ/T) plus
λ = 0, selected on validation items; writes the pre-registration. **Confirm** (the default): the
four arms at the tuned lr and λ on fresh seeds and a fresh draw; each run's test items read
once, its final weights measured by `wd_jax.diagnostics.relative_sharpness` (scale-invariant)
and its absolute counterpart, its scale-invariant norm read from its records; claims over seeds
(× items for accuracy), Holm.

  python experiments/norms.py --config=experiments/configs/norms.py --workdir=runs/norms
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import wd_jax
from wd_jax import study
from wd_jax.engine import data as data_lib
from wd_jax.engine import experiment, sweep
from wd_jax.engine.runlog import read_metrics
from wd_jax.study import lr_strength, phases, protocol, report, schema, stats, strength
from wd_jax.study import scale_invariant as si

ARMS = ("true_none", "true_early", "random_none", "random_early")
METRICS = ("final_log_norm", "log_sharpness", "log_abs_sharpness")
FIELDS = {
  **phases.fields(learning_rates=schema.numbers(), tau_over_T=schema.numbers()),
  "switch": schema.number(low=0.0, high=1.0, open_low=True),
  "strategy": schema.choice(("vmap", "sequential", "auto")),
  "resamples": schema.integer(minimum=20),
  "fallback_tau_over_T": schema.number(low=0.0, open_low=True),
  "label_seed_offset": schema.integer(),
  "sharpness": schema.section(
    {
      "radius": schema.number(low=0.0, open_low=True),
      "directions": schema.integer(minimum=1),
      "examples": schema.integer(minimum=2),
    }
  ),
}


def measurement_names(config) -> list[str]:
  """Every measurement this study produces (claims may read any of them)."""
  out = [f"{a}/{m}" for a in ARMS for m in (*METRICS, "test_accuracy")]
  return [*out, "labels/norm_separation", "labels/sharpness_separation"]


def arm_run(config, arm: str, phase: str, lr: float | None = None):
  """The phase's run; early arms decay for the steps before ``config.switch`` of the run."""
  run = phases.phase_run(config, phase)
  run.optimizer.wd_schedule = "early" if arm.endswith("early") else "constant"
  run.optimizer.wd_switch_fraction = config.switch
  if lr is not None:
    run.optimizer.learning_rate = lr
  return run


def dataset(config, arm: str, phase: str) -> data_lib.Dataset:
  """The phase's draw; for a random-label arm every training label redrawn uniformly (seeded by
  the draw's seed + ``label_seed_offset``, the same for every seed of the arm)."""
  draw = dict(config[phase].dataset)
  ds = data_lib.load_dataset(config.run.dataset.name, **draw)
  if arm.startswith("true"):
    return ds
  rng = np.random.default_rng(draw["seed"] + config.label_seed_offset)
  y = jnp.asarray(rng.integers(0, ds.num_classes, ds.num_train), jnp.int32)
  return dataclasses.replace(ds, y_train=y, name=f"{ds.name} (random labels)")


def tune(config, workdir: str) -> dict[str, Any]:
  """Tune phase (true labels): early decay over lr × τ/T (+ λ = 0), selected on validation."""
  lrs, taus = config.tune.learning_rates, config.tune.tau_over_T
  run_at = lambda lr: arm_run(config, "true_early", "tune", lr)
  none, early = lr_strength.off(lrs), lr_strength.cells(run_at, "sgd_l2", lrs, taus)
  grids = {"true_none": none, "true_early": early}
  study.begin(config, workdir)
  rows = phases.tune_arms({a: arm_run(config, a, "tune") for a in grids}, grids, config, workdir)
  score = lambda a: phases.scored(rows[a], grids[a], "val_items", "accuracy", config.tune.seeds)
  cands = {"true_early": score("true_none") + score("true_early")}
  axes = {"learning_rate": lrs, "tau_over_T": [None, *taus]}
  sel = phases.select(cands, axes, larger=True, resamples=config.resamples)
  pick = lr_strength.find(none + early, sel["true_early"].choice.pick)
  if not pick["weight_decay"]:  # λ = 0 selected: early decay at the declared fallback strength
    tau = config.fallback_tau_over_T
    run = arm_run(config, "true_early", "tune", pick["learning_rate"])
    pick = {
      **pick,
      "tau_over_T": tau,
      "weight_decay": strength.weight_decays(run, "sgd_l2", [tau])[0],
    }
  off = {"learning_rate": pick["learning_rate"], "weight_decay": 0.0, "tau_over_T": None}
  cells = {a: [{**(pick if a.endswith("early") else off), "roles": ["tuned"]}] for a in ARMS}
  prereg = phases.preregister(
    config, "norms", cells, sel, {"learning_rates": list(lrs), "tau_over_T": list(taus)}
  )
  fig = phases.tune_panels(cands, sel, os.path.join(workdir, "tune_validation.png"))
  note = "Early-only decay's cell: every arm runs at its lr, the decayed arms at its λ."
  note += f"\n\n![validation]({os.path.basename(fig)})"
  phases.write_tune_summary(
    workdir, "Norms and a scale-invariant metric: tune", prereg, sel, [("Selected", note)]
  )
  s = sel["true_early"]
  lines = [f"early: {phases.cell_text(s.choice.pick)}; {'; '.join(s.edges) or 'interior'}"]
  return {"findings": [], "lines": [*lines, f"pre-registration {prereg.short}: {prereg.path}"]}


def sharpness_fn(config, exp):
  """``(params, rest, seed) -> (relative, absolute)`` sharpness of the kernels (the decayed
  leaves) on the first training examples of `exp` (its own labels), jitted once per arm; the
  seed's directions are the same for every arm (paired)."""
  x, y = exp.dataset.split("train")
  x, y = x[: config.sharpness.examples], y[: config.sharpness.examples]
  kw = {"radius": config.sharpness.radius, "num_directions": config.sharpness.directions}

  @jax.jit
  def both(params, rest, seed):
    def loss(p):
      logits, _ = exp.apply(exp.eval_graphdef, p, rest, x)
      return experiment.loss_and_metrics(exp.dataset.task, logits, y)[0]

    key, mask = jax.random.key(seed), wd_jax.default_mask
    rel = wd_jax.diagnostics.relative_sharpness(loss, params, key, mask=mask, **kw)
    return rel, wd_jax.diagnostics.relative_sharpness(
      loss, params, key, mask=mask, relative=False, **kw
    )

  return lambda params, rest, seed: tuple(float(v) for v in both(params, rest, seed))


def confirm_arm(config, arm: str, cells, workdir: str) -> list[dict[str, Any]]:
  """One arm's pre-registered cell × the confirm seeds on its data (true or random labels);
  every run's test items read once (`wd_jax.engine.sweep.run_sweep`'s select) and its final
  weights' sharpness measured."""
  run, data = arm_run(config, arm, "confirm"), dataset(config, arm, "confirm")
  points = [{**protocol.fields_of(c), "seed": int(s)} for c in cells for s in config.confirm.seeds]
  adir = os.path.join(workdir, arm)
  every = lambda rows: list(range(len(rows)))
  rows = sweep.run_sweep(
    run,
    points,
    adir,
    strategy=config.strategy,
    verbose=False,
    select=every,
    return_states=True,
    data=data,
  )
  measure_sharpness = sharpness_fn(config, experiment.build(run, data=data))
  for r in rows:
    r.update({k: v for k, v in cells[0].items() if k not in r})
    r["records"] = read_metrics(os.path.join(adir, r["run_dir"], "metrics.jsonl"))
    state = r.pop("state")
    with np.load(os.path.join(adir, r["run_dir"], "test_items.npz")) as f:
      r["test_items"] = {k: f[k] for k in f.files} if not r["diverged"] else {}
    r["sharpness"], r["abs_sharpness"] = (
      (math.nan, math.nan)
      if r["diverged"]
      else measure_sharpness(state.params, state.rest, r["seed"])
    )
  si.add_norms(rows)
  return rows


def measure(config, rows, cells) -> dict[str, Any]:
  """Per arm: (seeds, items) test accuracy and per-seed log metrics; the label separations."""
  seeds, out = config.confirm.seeds, {}
  logs = {
    "final_log_norm": lambda r: math.log(si.value_at(r["records"], si.KEY)),
    "log_sharpness": lambda r: math.log(r["sharpness"]) if r["sharpness"] > 0 else math.nan,
    "log_abs_sharpness": lambda r: (
      math.log(r["abs_sharpness"]) if r["abs_sharpness"] > 0 else math.nan
    ),
  }
  for arm in ARMS:
    c = cells[arm][0]
    out[f"{arm}/test_accuracy"] = phases.scored(rows[arm], [c], "test_items", "accuracy", seeds)[0][
      1
    ]
    for name, fn in logs.items():
      out[f"{arm}/{name}"] = np.array(phases.per_seed(rows[arm], c, fn))
  for what, key in (("norm", "final_log_norm"), ("sharpness", "log_sharpness")):
    rand = np.minimum(out[f"random_none/{key}"], out[f"random_early/{key}"])
    true = np.maximum(out[f"true_none/{key}"], out[f"true_early/{key}"])
    out[f"labels/{what}_separation"] = rand - true
  return out


def confirm(config, workdir: str) -> dict[str, Any]:
  """Confirm phase: the four pre-registered arms on fresh seeds and a fresh draw."""
  prereg = phases.open_confirm(config, workdir)
  study.begin(config, workdir)
  cells = prereg.body["cells"]
  rows = {a: confirm_arm(config, a, cells[a], workdir) for a in ARMS}
  values = measure(config, rows, cells)
  findings = study.decide_claims(config, values)
  extra = {"sharpness": lambda r: r["sharpness"], "abs_sharpness": lambda r: r["abs_sharpness"]}
  extra["final_norm"] = lambda r: si.value_at(r["records"], si.KEY)
  diverged = phases.write_run_lines(workdir, rows, cells, extra)
  c = cells["true_early"][0]
  intro = INTRO.format(
    seeds=len(config.confirm.seeds),
    draw=dict(config.confirm.dataset),
    lr=c["learning_rate"],
    lam=c["weight_decay"],
    tau=c["tau_over_T"],
    s=config.switch,
    **config.sharpness,
  )
  study.write_summary(
    workdir,
    "Norm growth and a scale-invariant metric: confirm",
    findings,
    intro=intro,
    tables=[
      ("Per arm (mean ± sd over seeds; accuracy with its 90% CI over seeds × items)", table(values))
    ],
    figures=[figure(config, values, rows, workdir)],
    preregistered=phases.describe_prereg(prereg),
    footer=f"**Diverged runs**: {diverged}.",
  )
  return {"findings": findings, "rows": rows, "values": values}


INTRO = (
  "Confirm phase: the four pre-registered arms on {seeds} fresh seeds and a fresh MNIST-1D draw "
  "({draw}); the test split (true labels) read once per run, per item. Every arm at peak lr "
  "{lr:g}; early-only decay λ = {lam:.3g} (τ/T = {tau:g}) for the steps before {s:g}·T. ‖w‖: the "
  "scale-invariant hidden kernels' norm at the end. Sharpness: the training loss's mean rise "
  "when every kernel moves by ±ρ = {radius:g} of its own norm (relative) or by ρ per element "
  "(absolute), {directions} random direction pairs, {examples} training examples of the arm's own "
  "labels."
)


def table(values) -> str:
  """Each arm's test accuracy and its three metrics (back from the log scale)."""
  out = []
  for arm in ARMS:
    m, lo, hi = stats.seeds_items_interval(values[f"{arm}/test_accuracy"])
    cells = [study.fmt(list(np.exp(values[f"{arm}/{k}"])), d) for k, d in zip(METRICS, (1, 5, 4))]
    out.append([arm, f"{m:.4f} [{lo:.4f}, {hi:.4f}]", *cells])
  head = ["arm", "test accuracy", "final ‖w‖", "relative sharpness", "absolute sharpness"]
  return study.markdown_table(head, out)


def figure(config, values, rows, workdir: str) -> tuple[str, str]:
  """‖w‖ over training; test accuracy against the final ‖w‖ and the relative sharpness."""
  fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.7), dpi=100)
  colors = {
    "true_none": "#1f77b4",
    "true_early": "#2ca02c",
    "random_none": "#d62728",
    "random_early": "#ff7f0e",
  }
  for arm in ARMS:
    steps, per_seed = report.seed_series(rows[arm], si.KEY)
    report.ci_band(axes[0], steps, per_seed, color=colors[arm], label=arm, log=True)
    acc = np.nanmean(values[f"{arm}/test_accuracy"], axis=1)
    for ax, key in zip(axes[1:], ("final_log_norm", "log_sharpness")):
      ax.scatter(np.exp(values[f"{arm}/{key}"]), acc, color=colors[arm], s=18, label=arm)
  axes[0].axvline(config.switch * config.run.steps, color="k", ls=":", lw=1)
  axes[0].set(xlabel="training step", ylabel="‖w‖ (scale-invariant kernels)", yscale="log")
  axes[1].set(xlabel="final ‖w‖ (the raw norm)", ylabel="test accuracy (per seed)")
  axes[2].set(xlabel="relative sharpness (log scale)", ylabel="test accuracy (per seed)")
  axes[2].set_xscale("log")
  for ax, title in zip(axes, ("Norm growth", "Raw norm", "Scale-invariant metric")):
    ax.set_title(title, fontsize=10)
  report.plain_log_ticks(axes[0], "y")
  path = report.finish(
    fig, os.path.join(workdir, "norms_and_sharpness.png"), list(axes), fontsize=7
  )
  caption = (
    "Left: the scale-invariant norm over training (geometric mean, 90% CI over seeds; dotted: "
    "early decay switched off). Middle and right: each seed's test accuracy against its final "
    "norm and its relative sharpness"
  )
  return caption, path


run = study.two_phases(tune, confirm, FIELDS, measurement_names)


def work(config) -> int:
  """Configuration-steps the phase trains (its progress line's total)."""
  return phases.work(config, confirm_cells=len(ARMS))


if __name__ == "__main__":
  study.main(run, work=work)
