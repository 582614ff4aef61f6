"""The four decoupled couplings of AdamW under warmup + cosine: weight norms, the end-of-training
gradient-norm rise (Defazio et al. 2025) and final accuracy.

AdamW's decay step is θ ← θ − c_t λ θ with c_t = α_t ("lr", torch/optax), α_t/α ("schedule",
L&H/Composer), 1 ("constant") or α_t²/α ("corrected", AdamC). λ is matched across couplings so
that the per-step decay at the peak lr is the same (`matched_weight_decays`). Each coupling's
seeds are one vmapped program of `wd_jax.sweep`. Nothing is tuned: every configuration is
declared in advance, so the test split is read once for every run. The claims declared in the
config are decided by `wd_jax.study.stats`, paired by seed. Writes grad_norm.png,
weight_norm.png, accuracy.png, metrics.jsonl (one line per run), config.json and summary.md.

  python experiments/coupling.py --config=experiments/configs/coupling.py --workdir=runs/coupling
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from wd_jax import report, study, sweep
from wd_jax.runlog import read_metrics, write_atomic
from wd_jax.study import claims as claims_lib
from wd_jax.study import protocol, schema

COUPLINGS = ("lr", "schedule", "constant", "corrected")
VARIANT = {
  "lr": "adamw",
  "schedule": "adamw_schedule",
  "constant": "adamw_constant",
  "corrected": "adamw_corrected",
}
LABELS = {
  "lr": '"lr": α_t·λ (torch AdamW)',
  "schedule": '"schedule": (α_t/α)·λ (L&H)',
  "constant": '"constant": λ',
  "corrected": '"corrected": (α_t²/α)·λ (AdamC)',
}
# "lr" and "schedule" are the same map once λ is matched: draw "schedule" dashed on top.
LINESTYLE = {"lr": "-", "schedule": (0, (4, 3)), "constant": "-", "corrected": "-"}
FIELDS = {
  "couplings": schema.choices(COUPLINGS),
  "seeds": schema.ints(),
  "strategy": schema.choice(sweep.STRATEGIES),
  "decay_per_step": schema.number(low=0.0, open_low=True),
  "tail_fraction": schema.number(low=0.0, open_low=True, high=1.0),
  "baseline_from": schema.number(low=0.0, high=1.0),
  "baseline_note": schema.text(),
  "task": schema.text(),  # which of the config module's tasks `run` is (a label)
  "task_note": schema.text(),
  "run": schema.run_config(),
}
MEASURES = (
  "val_accuracy",
  "val_loss",
  "test_accuracy",  # read once per run: every configuration is declared in advance
  "test_loss",
  "rise",  # grad_norm_rise of ‖g‖ over all parameters
  "rise_si",  # the same for the scale-invariant kernels only (NaN without any)
  "tail_grad_norm",  # mean ‖g‖ over the tail
  "min_step",  # step of the smoothed minimum after baseline_from
  "weight_norm",  # final ‖θ‖, all parameters
  "weight_norm_si",  # final ‖w‖ of the scale-invariant kernels
  "norm_ratio",  # ‖w‖ end / mid-training: scale-invariant kernels if any, else all parameters
)


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config`: ``<coupling>/<MEASURES entry>``, one
  value per seed (claims may read any of them)."""
  return [f"{c}/{k}" for c in config.couplings for k in MEASURES]


def matched_weight_decays(decay_per_step: float, peak_lr: float) -> dict[str, float]:
  """λ per coupling so that every coupling shrinks θ by `decay_per_step` per step at the peak lr.

  The decay factor c_t·λ at α_t = α is α·λ ("lr"), λ ("schedule"), λ ("constant") and
  (α²/α)·λ = α·λ ("corrected"): λ_lr·α = λ_schedule = λ_constant = λ_corrected·α. They then differ
  only in how the decay follows the schedule: ∝ α_t ("lr", "schedule"), constant, ∝ α_t².
  """
  if not (decay_per_step > 0 and peak_lr > 0):
    raise ValueError(f"decay_per_step and peak_lr must be > 0, got {decay_per_step}, {peak_lr}.")
  s = float(decay_per_step)
  return {"lr": s / peak_lr, "schedule": s, "constant": s, "corrected": s / peak_lr}


def smooth(values: Sequence[float], window: int) -> np.ndarray:
  """Centred moving geometric mean over `window` points (shorter at the ends)."""
  x = np.log(np.maximum(np.asarray(values, np.float64), 1e-30))
  if window <= 1 or x.size == 0:
    return np.exp(x)
  half = window // 2
  c = np.concatenate([[0.0], np.cumsum(x)])
  idx = np.arange(x.size)
  lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, x.size)
  return np.exp((c[hi] - c[lo]) / (hi - lo))


def grad_norm_rise(
  steps: Sequence[float],
  grad_norms: Sequence[float],
  total_steps: int,
  *,
  tail_fraction: float = 0.1,
  baseline_from: float = 0.0,
) -> float:
  """How far the gradient norm ends above its minimum.

  The geometric mean of ‖g‖ over the last `tail_fraction` of the steps divided by the minimum,
  over the steps after `baseline_from`·total_steps (tail included), of the moving geometric mean
  over as many logged points as the tail holds: both sides average the same number of noisy
  minibatch norms. About 1 or more (the tail's own window is among those minimised over); ≈ 1
  when the norm is flat or lowest at the end; NaN without a finite point in the tail or after
  `baseline_from`.
  """
  t = np.asarray(steps, np.float64)
  g = np.asarray(grad_norms, np.float64)
  keep = np.isfinite(g) & (g > 0)
  t, g = t[keep], g[keep]
  tail = t > (1.0 - tail_fraction) * total_steps
  late = t >= baseline_from * total_steps
  if not tail.any() or not late.any():
    return math.nan
  end = math.exp(np.log(g[tail]).mean())
  return float(end / smooth(g, int(tail.sum()))[late].min())


def norm_ratio(steps: Sequence[float], norms: Sequence[float], total_steps: int) -> float:
  """‖θ‖ at the end / ‖θ‖ at mid-training (the logged point nearest total_steps/2)."""
  t, w = np.asarray(steps, np.float64), np.asarray(norms, np.float64)
  if not t.size:
    return math.nan
  return float(w[-1] / w[np.argmin(np.abs(t - total_steps / 2))])


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
  if not pts:
    return np.array([]), np.array([])
  s, v = zip(*pts)
  return np.asarray(s, np.float64), np.asarray(v, np.float64)


def scale_invariant_series(records: list[dict]) -> dict[str, np.ndarray]:
  """Gradient and weight norms of the scale-invariant leaves together (empty if there are none).

  The step logs ‖g̃‖ = ‖g‖·‖w‖ per scale-invariant leaf (`grad_norm_unit/<path>`) and ‖w‖
  (`param_norm/<path>`): ‖g‖ = ‖g̃‖/‖w‖, summed in squares over the leaves.
  """
  steps, g, w, gu = [], [], [], []
  for r in records:
    keys = [k.split("/", 1)[1] for k in r if k.startswith("grad_norm_unit/")]
    if not keys or any(f"param_norm/{k}" not in r for k in keys):
      continue
    steps.append(r["step"])
    g.append(math.sqrt(sum((r[f"grad_norm_unit/{k}"] / r[f"param_norm/{k}"]) ** 2 for k in keys)))
    w.append(math.sqrt(sum(r[f"param_norm/{k}"] ** 2 for k in keys)))
    gu.append(math.sqrt(sum(r[f"grad_norm_unit/{k}"] ** 2 for k in keys)))
  return {
    "steps": np.asarray(steps, np.float64),
    "grad_norm": np.asarray(g),
    "weight_norm": np.asarray(w),
    "grad_norm_unit": np.asarray(gu),
  }


def run_couplings(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[dict]]:
  """coupling -> one row per seed (`sweep.run_sweep` rows, with their records); the test split is
  read once for every run (each is declared in advance, none is selected)."""
  base = config.run.copy_and_resolve_references()
  base.optimizer.name = "adamw"
  # The key must exist: configs from --config are locked, and the sweep cannot add keys then.
  base.optimizer.kwargs = {"coupling": config.couplings[0]}
  lams = matched_weight_decays(config.decay_per_step, base.optimizer.learning_rate)
  runs = [
    {"optimizer.kwargs.coupling": c, "weight_decay": lams[c], "seed": int(s)}
    for c in config.couplings
    for s in config.seeds
  ]
  sdir = os.path.join(workdir, "sweep")
  rows = sweep.run_sweep(
    base,
    runs,
    sdir,
    strategy=config.strategy,
    verbose=False,
    select=protocol.selector(fixed=[{}]),  # {} matches every row
  )
  out: dict[str, list[dict]] = {c: [] for c in config.couplings}
  for r in rows:
    r["records"] = read_metrics(os.path.join(sdir, r["run_dir"], "metrics.jsonl"))
    out[r["optimizer.kwargs.coupling"]].append(r)
  for c in out:
    out[c].sort(key=lambda r: r["seed"])  # couplings pair up by seed
  return out


def measure(res: dict[str, list[dict]], config) -> dict[str, dict[str, list[float]]]:
  """Per coupling, one value per seed (in seed order) of every `MEASURES` entry (NaN for a
  diverged run)."""
  steps = config.run.steps
  kw = {"tail_fraction": config.tail_fraction, "baseline_from": config.baseline_from}
  out = {}
  for c, rows in res.items():
    m: dict[str, list[float]] = {k: [] for k in MEASURES}
    for r in rows:
      vals = dict.fromkeys(MEASURES, math.nan)
      t, g = _series(r["records"], "grad_norm")
      _, p = _series(r["records"], "param_norm")
      if not r["diverged"] and t.size:
        for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss"):
          vals[k] = r[k]
        vals["rise"] = grad_norm_rise(t, g, steps, **kw)
        tail = t > (1 - config.tail_fraction) * steps
        vals["tail_grad_norm"] = float(np.exp(np.log(g[tail]).mean()))
        late = t >= config.baseline_from * steps
        vals["min_step"] = float(t[late][np.argmin(smooth(g, int(tail.sum()))[late])])
        vals["weight_norm"] = float(p[-1])
        vals["norm_ratio"] = norm_ratio(t, p, steps)
        si = scale_invariant_series(r["records"])
        if si["steps"].size:
          vals["rise_si"] = grad_norm_rise(si["steps"], si["grad_norm"], steps, **kw)
          vals["weight_norm_si"] = float(si["weight_norm"][-1])
          vals["norm_ratio"] = norm_ratio(si["steps"], si["weight_norm"], steps)
      for k in MEASURES:
        m[k].append(vals[k])
    out[c] = m
  return out


def _seed_curves(rows: list[dict], fn) -> tuple[np.ndarray, np.ndarray]:
  """Steps and the seeds × steps array of the series `fn(records)`, cut to the shortest."""
  curves = [fn(r["records"]) for r in rows if not r["diverged"]]
  curves = [c for c in curves if c[0].size]
  if not curves:
    return np.array([]), np.zeros((0, 0))
  n = min(c[0].size for c in curves)
  return curves[0][0][:n], np.stack([c[1][:n] for c in curves])


def _plot_curves(res, config, workdir, name, title, ylabel, fns, logy) -> str:
  """One panel per (panel title, series function); one line per coupling (geometric mean over
  seeds) with its 90% t band (of the logs).

  `logy`: True, False or "auto" (log when a panel's values span more than a factor of 10)."""
  panels = [(t, f) for t, f in fns if any(_seed_curves(rows, f)[0].size for rows in res.values())]
  fig, axes = plt.subplots(
    1, len(panels), figsize=(0.6 + 5.0 * len(panels), 3.9), dpi=100, squeeze=False
  )
  for ax, (ptitle, fn) in zip(axes[0], panels):
    span = [math.inf, 0.0]
    for c, rows in res.items():
      t, per_seed = _seed_curves(rows, fn)
      if not t.size:
        continue
      span = [min(span[0], float(per_seed.min())), max(span[1], float(per_seed.max()))]
      col = study.color(VARIANT[c])
      report.ci_band(ax, t, per_seed, color=col, label=LABELS[c], log=True, ls=LINESTYLE[c])
    tail = (1 - config.tail_fraction) * config.run.steps
    pct = f"{100 * config.tail_fraction:g}%"
    ax.axvspan(tail, config.run.steps, color="0.85", alpha=0.6, lw=0, label=f"last {pct} (tail)")
    log = logy is True or (logy == "auto" and span[1] > 10 * max(span[0], 1e-30))
    if log:
      ax.set_yscale("log")
      report.plain_log_ticks(ax)
    ax.set_title(ptitle, fontsize=9)
    ax.set_xlabel("training step", fontsize=9)
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""), fontsize=9)
    ax.tick_params(labelsize=8)
  fig.suptitle(title, fontsize=10)
  return report.finish(fig, os.path.join(workdir, name), axes[0][:1], fontsize=7)


def plot_accuracy(res, meas, workdir: str) -> str:
  """Final test accuracy per coupling: every seed, and the mean with its 90% t interval."""
  fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=100)
  ticks = []
  for i, c in enumerate(res):
    accs = np.asarray(meas[c]["test_accuracy"], np.float64)
    col = study.color(VARIANT[c])
    ax.scatter(np.full(accs.size, i) + np.linspace(-0.15, 0.15, accs.size), accs, color=col, s=14)
    report.ci_errorbar(ax, [i + 0.3], [accs], color=col, marker="D", ms=5)
    mean, half, _ = report.mean_and_ci(accs)
    ticks.append(f"{LABELS[c].split(':')[0]}\n{mean:.3f} ± {half:.3f}")
  ax.set_xticks(range(len(res)), ticks, fontsize=8)
  ax.set_xlim(-0.5, len(res) - 0.3)
  ax.set(
    title="Final test accuracy per coupling\n(dots: seeds; diamond: mean, 90% t interval)",
    xlabel="decay coupling (mean ± 90% CI half-width)",
    ylabel="final test accuracy (fraction)",
  )
  return report.finish(fig, os.path.join(workdir, "accuracy.png"), [ax])


def _table(meas, lams, config) -> str:
  s = config.decay_per_step
  has_si = any(math.isfinite(x) for m in meas.values() for x in m["rise_si"])
  header = ["coupling", "λ", "decay/step at peak", "final val acc.", "final test acc."]
  header += ["final test loss", "rise of ‖g‖", "tail ‖g‖", "step of min ‖g‖"]
  header += ["‖w‖ end/mid", "final ‖θ‖"]
  if has_si:
    header += ["rise of ‖g‖ (scale-inv. only)", "final ‖w‖ (scale-inv.)"]
  rows = []
  for c, m in meas.items():
    row = [LABELS[c], f"{lams[c]:.4g}", f"{s:.3g}", study.fmt(m["val_accuracy"])]
    row += [study.fmt(m["test_accuracy"]), study.fmt(m["test_loss"]), study.fmt(m["rise"], 2)]
    row += [study.fmt(m["tail_grad_norm"], 3)]
    row += [study.fmt(m["min_step"], 0), study.fmt(m["norm_ratio"], 2)]
    row += [study.fmt(m["weight_norm"], 2)]
    if has_si:
      row += [study.fmt(m["rise_si"], 2), study.fmt(m["weight_norm_si"], 2)]
    rows.append(row)
  return study.markdown_table(header, rows)


def _describe(values):
  def text(c: claims_lib.Claim) -> str:
    return "; ".join(
      f"{name} per seed: {', '.join(f'{v:.3f}' for v in values[name])}" for name in c.measurements
    )

  return text


def _lr_schedule_identity(res) -> str:
  """How close "lr" and "schedule" runs are: at matched λ they are the same map up to float
  rounding (α_t·(s/α) vs (α_t/α)·s), which training then amplifies."""
  if not {"lr", "schedule"} <= set(res):
    return ""
  first, acc = [], []
  for a, b in zip(res["lr"], res["schedule"]):
    _, ga = _series(a["records"], "grad_norm")
    _, gb = _series(b["records"], "grad_norm")
    if ga.size and gb.size:
      first.append(abs(ga[0] - gb[0]) / max(abs(ga[0]), 1e-30))
    acc.append(abs(a["test_accuracy"] - b["test_accuracy"]))
  if not first:
    return ""
  return (
    f" (relative gap of their gradient norms at the first logged step: {max(first):.1g}; "
    f"largest final-accuracy gap between the two at one seed: {max(acc):.3f})"
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  if config.baseline_from > 1 - config.tail_fraction:
    raise ValueError(
      f"config.baseline_from must be <= 1 - config.tail_fraction = {1 - config.tail_fraction:g} "
      f"(the minimum's window includes the tail), got {config.baseline_from}."
    )
  matched_weight_decays(config.decay_per_step, config.run.optimizer.learning_rate)
  t0 = time.perf_counter()
  study.begin(config, workdir)
  res = run_couplings(config, workdir)
  meas = measure(res, config)
  values = {f"{c}/{k}": v for c, m in meas.items() for k, v in m.items()}
  lams = matched_weight_decays(config.decay_per_step, config.run.optimizer.learning_rate)
  lines = []
  for c, rows in res.items():
    for i, r in enumerate(rows):
      lines.append(
        {
          "coupling": c,
          "variant": VARIANT[c],
          "weight_decay": r["weight_decay"],
          "decay_per_step_at_peak": config.decay_per_step,
          "learning_rate": r["learning_rate"],
          "seed": r["seed"],
          "train_loss": r["loss"],
          "diverged": r["diverged"],
          **{k: meas[c][k][i] for k in MEASURES},
          "run_dir": os.path.join("sweep", r["run_dir"]),
        }
      )
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  findings = claims_lib.decide(declared, values, _describe(values))
  has_si = any(math.isfinite(x) for m in meas.values() for x in m["rise_si"])
  g_panels = [("all parameters", lambda rec: _series(rec, "grad_norm"))]
  w_panels = [("all parameters", lambda rec: _series(rec, "param_norm"))]
  if has_si:
    g_panels.append(
      (
        "scale-invariant kernels (conv → BatchNorm)",
        lambda rec: (lambda s: (s["steps"], s["grad_norm"]))(scale_invariant_series(rec)),
      )
    )
    w_panels.append(
      (
        "scale-invariant kernels (conv → BatchNorm)",
        lambda rec: (lambda s: (s["steps"], s["weight_norm"]))(scale_invariant_series(rec)),
      )
    )
  task = f"{config.run.dataset.name} / {config.run.model.name}"
  figures = [
    (
      "Gradient norm over training per coupling (geometric mean over seeds, band: 90% t "
      "interval of the logs)",
      _plot_curves(
        res,
        config,
        workdir,
        "grad_norm.png",
        f"Gradient norm over training — AdamW couplings, {task}",
        "‖g‖₂ of the minibatch loss",
        g_panels,
        logy=True,
      ),
    ),
    (
      "Weight norm over training per coupling (geometric mean, 90% band)",
      _plot_curves(
        res,
        config,
        workdir,
        "weight_norm.png",
        f"Weight norm over training — AdamW couplings, {task}",
        "‖θ‖₂ (Euclidean norm)",
        w_panels,
        logy="auto",
      ),
    ),
    ("Final test accuracy per coupling", plot_accuracy(res, meas, workdir)),
  ]
  wall = time.perf_counter() - t0
  run_cfg = config.run
  alpha = run_cfg.optimizer.learning_rate
  intro = (
    f"{task} {dict(run_cfg.model.kwargs)}, AdamW at peak lr α = {alpha:g}, {run_cfg.steps} "
    f"steps of batch {run_cfg.batch_size}, {run_cfg.optimizer.lr_schedule} (warmup "
    f"{run_cfg.optimizer.warmup_fraction:g} of the steps, cosine to 0), decay mask "
    f"{run_cfg.optimizer.mask}, seeds {list(config.seeds)}; "
    f"{run_cfg.dataset.validation_fraction:g} of the training data is held out for validation. "
    "Nothing is tuned on data, so the test split is read once for every run. λ is matched so "
    f"that every coupling shrinks θ by the same {config.decay_per_step:g} per step at the peak "
    "lr (λ_lr·α = λ_schedule = λ_constant = λ_corrected·α): "
    + ", ".join(f"λ_{c} = {lams[c]:.4g}" for c in config.couplings)
    + ". The couplings then differ only in how the decay follows the schedule, so any "
    'difference is the coupling\'s. At matched λ, "lr" and "schedule" are the same map up '
    f"to float rounding{_lr_schedule_identity(res)}; they differ in what happens when α "
    "changes (see the lr_wd_grid study). Rise = geometric mean of ‖g‖ over the last "
    f"{100 * config.tail_fraction:g}% of the steps / the minimum, after the first "
    f"{100 * config.baseline_from:g}% of the steps, of its moving geometric mean over as many "
    f"logged points (one every {run_cfg.diagnostics_every} steps). {config.baseline_note} "
    + config.task_note
  )
  study.write_summary(
    workdir,
    "AdamW's four decay couplings: weight norm, end-of-training gradient norm, accuracy",
    findings,
    intro=intro,
    tables=[("Per coupling (mean ± sd over seeds)", _table(meas, lams, config))],
    figures=figures,
    footer=f"Wall time {wall:.0f} s. Per-run records: metrics.jsonl; training curves: "
    "sweep/runs/*/metrics.jsonl.",
  )
  return {"findings": findings, "results": res, "measurements": meas, "wall_time_sec": wall}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  return len(config.couplings) * len(config.seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, claim_width=110, work=work)
