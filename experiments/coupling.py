"""AdamW's decay couplings under warmup + cosine: weight norms, the end-of-training gradient-norm
rise (Defazio et al. 2025) and final accuracy, each coupling at its own tuned strength and all at
one strong strength named in advance.

AdamW's decay step is θ ← θ − c_t λ θ with c_t = α_t ("lr", torch/optax), α_t/α ("schedule",
L&H/Composer), 1 ("constant") or α_t²/α ("corrected", AdamC). Strength is gridded as τ/T, the
decay's timescale at the peak lr over the run (`wd_jax.study.strength`), so the couplings share
one strength grid with each its own λ; each coupling's strength is selected on validation.
"corrected" applies to the layers `corrected_layers` names (those followed by normalisation);
the other decayed leaves keep "lr", as Defazio et al. do (`adamw_recipe`). Every coupling ×
strength × seed is one vmapped program of `wd_jax.engine.sweep`; the test split is read for each
coupling's selected strength and for the strong one. The claims declared in the config are
decided by `wd_jax.study.stats`, paired by seed. Writes grad_norm.png, weight_norm.png,
accuracy.png, metrics.jsonl (one line per run), config.json and summary.md.

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

import wd_jax
from wd_jax import study
from wd_jax.engine import sweep
from wd_jax.engine.runlog import read_metrics, write_atomic
from wd_jax.study import claims as claims_lib
from wd_jax.study import protocol, report, schema, strength

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
  "tau_over_T": schema.numbers(),
  "strong": schema.number(low=0.0, open_low=True),
  "corrected_layers": schema.text(),
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


AT = ("selected", "strong")  # each coupling's own selected strength; the strong one


def measurement_names(config) -> list[str]:
  """Every measurement this study produces for `config`: ``<coupling>/<MEASURES entry>@<at>``,
  one value per seed, at each coupling's selected strength and at ``config.strong``."""
  if not any(math.isclose(t, config.strong) for t in config.tau_over_T):
    raise ValueError(
      f"config.strong={config.strong!r} must be one of config.tau_over_T "
      f"{tuple(config.tau_over_T)}: the claims read the test split there."
    )
  return [f"{c}/{k}@{at}" for c in config.couplings for k in MEASURES for at in AT]


def adamw_recipe(
  learning_rate,
  weight_decay,
  mask=None,
  *,
  coupling: str = "lr",
  peak_learning_rate=None,
  corrected_layers: str = "",
):
  """`wd_jax.adamw`, except that "corrected" (AdamC) applies only to the leaves whose path
  matches `corrected_layers` (the layers followed by normalisation); the other decayed leaves
  keep the "lr" coupling with the same λ, as Defazio et al. do. Empty: every decayed leaf."""
  if coupling != "corrected" or not corrected_layers:
    return wd_jax.adamw(
      learning_rate,
      weight_decay=weight_decay,
      coupling=coupling,
      peak_learning_rate=peak_learning_rate,
      mask=mask,
    )
  normalised = wd_jax.regex_mask([(corrected_layers, 1.0)], default=0.0)
  others = wd_jax.regex_mask([(corrected_layers, 0.0)], default=mask)
  inner = wd_jax.adamw(
    learning_rate,
    weight_decay=weight_decay,
    coupling="corrected",
    peak_learning_rate=peak_learning_rate,
    mask=normalised,
  )
  # The inner optimizer decays the corrected leaves and this wrapper the others: disjoint masks,
  # so each leaf decays once (allow_base_decay says the inner decay is meant).
  return wd_jax.with_weight_decay(
    inner,
    weight_decay,
    learning_rate=learning_rate,
    coupling="lr",
    mask=others,
    allow_base_decay=True,
  )


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


def weight_decays(config) -> dict[tuple[str, float], float]:
  """(coupling, τ/T) -> λ: every coupling shrinks θ by 1/τ per step at the peak lr."""
  out = {}
  for c in config.couplings:
    run = config.run.copy_and_resolve_references()
    run.optimizer.kwargs = {"coupling": c}
    for t in config.tau_over_T:
      (out[c, float(t)],) = strength.weight_decays(run, "adamw", [t])
  return out


def _select_per_coupling(config):
  """The rows whose test split is read: every seed of each coupling's strength with the best mean
  validation accuracy, and of the strong strength (named in advance)."""
  key = "optimizer.kwargs.coupling"

  def select(rows):
    picked = set()
    for c in config.couplings:
      mine = [i for i, r in enumerate(rows) if r[key] == c]
      best = protocol.select_best(
        [rows[i] for i in mine], by=("tau_over_T",), metric="val_accuracy"
      )
      for i in mine:
        t = rows[i]["tau_over_T"]
        if math.isclose(t, config.strong) or (best is not None and t == best["tau_over_T"]):
          picked.add(i)
    return sorted(picked)

  return select


def run_couplings(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[dict]]:
  """coupling -> every row (`sweep.run_sweep` rows with ``tau_over_T`` and their records)."""
  base = config.run.copy_and_resolve_references()
  base.optimizer.name = "adamw"
  # The keys must exist: configs from --config are locked, and the sweep cannot add keys then.
  base.optimizer.kwargs = {
    "coupling": config.couplings[0],
    "corrected_layers": config.corrected_layers,
  }
  lams = weight_decays(config)
  runs = [
    {"optimizer.kwargs.coupling": c, "weight_decay": lams[c, float(t)], "seed": int(s)}
    for c in config.couplings
    for t in config.tau_over_T
    for s in config.seeds
  ]
  tau_of = {(c, lam): t for (c, t), lam in lams.items()}
  sdir = os.path.join(workdir, "sweep")
  select = _select_per_coupling(config)

  def tagged(rows):  # the selector reads τ/T, which the sweep's rows do not carry
    for r in rows:
      r["tau_over_T"] = tau_of[r["optimizer.kwargs.coupling"], r["weight_decay"]]
    return select(rows)

  rows = sweep.run_sweep(
    base, runs, sdir, strategy=config.strategy, verbose=False, optimizer=adamw_recipe, select=tagged
  )
  out: dict[str, list[dict]] = {c: [] for c in config.couplings}
  for r in rows:
    r["tau_over_T"] = tau_of[r["optimizer.kwargs.coupling"], r["weight_decay"]]
    r["records"] = read_metrics(os.path.join(sdir, r["run_dir"], "metrics.jsonl"))
    out[r["optimizer.kwargs.coupling"]].append(r)
  for c in out:
    out[c].sort(key=lambda r: (r["tau_over_T"], r["seed"]))  # couplings pair up by seed
  return out


def selected_strength(rows: list[dict]) -> float:
  """The coupling's τ/T with the best mean validation accuracy (NaN if every run diverged)."""
  best = protocol.select_best(rows, by=("tau_over_T",), metric="val_accuracy")
  return best["tau_over_T"] if best else math.nan


def measure_row(r: dict, config) -> dict[str, float]:
  """Every `MEASURES` entry of one run (NaN for a diverged run)."""
  steps = config.run.steps
  kw = {"tail_fraction": config.tail_fraction, "baseline_from": config.baseline_from}
  vals = dict.fromkeys(MEASURES, math.nan)
  t, g = _series(r["records"], "grad_norm")
  _, p = _series(r["records"], "param_norm")
  if r["diverged"] or not t.size:
    return vals
  for k in ("val_accuracy", "val_loss", "test_accuracy", "test_loss"):
    vals[k] = r.get(k, math.nan)
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
  return vals


def at_strength(rows: list[dict], tau: float) -> list[dict]:
  """The coupling's rows at one τ/T, in seed order."""
  return sorted((r for r in rows if math.isclose(r["tau_over_T"], tau)), key=lambda r: r["seed"])


def measure(res: dict[str, list[dict]], config) -> dict[str, dict[str, list[float]]]:
  """Per coupling, ``<MEASURES entry>@selected`` and ``@strong``: one value per seed."""
  out = {}
  for c, rows in res.items():
    for r in rows:
      r["measures"] = measure_row(r, config)
    m: dict[str, list[float]] = {}
    chosen = {"selected": selected_strength(rows), "strong": float(config.strong)}
    for at, tau in chosen.items():
      picked = at_strength(rows, tau) if math.isfinite(tau) else []
      for k in MEASURES:
        m[f"{k}@{at}"] = [r["measures"][k] for r in picked] or [math.nan] * len(config.seeds)
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


def plot_accuracy(res, meas, config, workdir: str) -> str:
  """Final test accuracy per coupling at its selected strength and at the strong one: every seed,
  and the mean with its 90% t interval."""
  fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=100, sharey=True)
  for ax, at in zip(axes, AT):
    ticks = []
    for i, c in enumerate(res):
      accs = np.asarray(meas[c][f"test_accuracy@{at}"], np.float64)
      col = study.color(VARIANT[c])
      xs = np.full(accs.size, i) + np.linspace(-0.15, 0.15, accs.size)
      ax.scatter(xs, accs, color=col, s=14)
      report.ci_errorbar(ax, [i + 0.3], [accs], color=col, marker="D", ms=5)
      mean, half, _ = report.mean_and_ci(accs)
      tau = selected_strength(res[c]) if at == "selected" else config.strong
      ticks.append(f"{LABELS[c].split(':')[0]} (τ/T {tau:.3g})\n{mean:.3f} ± {half:.3f}")
    ax.set_xticks(range(len(res)), ticks, fontsize=7)
    ax.set_xlim(-0.5, len(res) - 0.3)
    where = (
      "each at its strength selected on validation"
      if at == "selected"
      else (f"all at the strong τ/T = {config.strong:.3g}")
    )
    ax.set(
      title=f"Final test accuracy, {where}", xlabel="decay coupling (mean ± 90% CI half-width)"
    )
    ax.title.set_fontsize(9)
  axes[0].set_ylabel("final test accuracy (fraction)")
  return report.finish(fig, os.path.join(workdir, "accuracy.png"), [], legend=False)


def _table(res, meas, lams, config) -> str:
  has_si = any(math.isfinite(x) for m in meas.values() for x in m["rise_si@strong"])
  header = ["coupling", "at", "τ/T", "λ", "final val acc.", "final test acc.", "rise of ‖g‖"]
  header += ["step of min ‖g‖", "‖w‖ end/mid", "final ‖θ‖"]
  if has_si:
    header += ["rise of ‖g‖ (scale-inv. only)", "final ‖w‖ (scale-inv.)"]
  rows = []
  for c, m in meas.items():
    for at in AT:
      tau = selected_strength(res[c]) if at == "selected" else float(config.strong)
      lam = lams.get((c, tau), math.nan)
      row = [LABELS[c], at, f"{tau:.4g}", f"{lam:.4g}", study.fmt(m[f"val_accuracy@{at}"])]
      row += [study.fmt(m[f"test_accuracy@{at}"]), study.fmt(m[f"rise@{at}"], 2)]
      row += [study.fmt(m[f"min_step@{at}"], 0), study.fmt(m[f"norm_ratio@{at}"], 2)]
      row += [study.fmt(m[f"weight_norm@{at}"], 2)]
      if has_si:
        row += [study.fmt(m[f"rise_si@{at}"], 2), study.fmt(m[f"weight_norm_si@{at}"], 2)]
      rows.append(row)
  return study.markdown_table(header, rows)


def _strength_table(res, config) -> str:
  """Validation accuracy and the rise at every strength: where the rise appears, and what the
  selection chose."""
  taus = sorted(config.tau_over_T, reverse=True)
  header = ["coupling", *[f"τ/T={t:.3g}: val acc. / rise" for t in taus]]
  rows = []
  for c, rs in res.items():
    cells = []
    for t in taus:
      picked = at_strength(rs, t)
      acc = [r["measures"]["val_accuracy"] for r in picked]
      rise = [r["measures"]["rise"] for r in picked]
      cells.append(f"{study.fmt(acc)} / {study.fmt(rise, 2)}")
    rows.append([LABELS[c], *cells])
  return study.markdown_table(header, rows)


def _describe(values):
  def text(c: claims_lib.Claim) -> str:
    return "; ".join(
      f"{name} per seed: {', '.join(f'{v:.3f}' for v in values[name])}" for name in c.measurements
    )

  return text


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  declared = study.check(config, workdir, FIELDS, measurement_names)
  if config.baseline_from > 1 - config.tail_fraction:
    raise ValueError(
      f"config.baseline_from must be <= 1 - config.tail_fraction = {1 - config.tail_fraction:g} "
      f"(the minimum's window includes the tail), got {config.baseline_from}."
    )
  lams = weight_decays(config)
  t0 = time.perf_counter()
  study.begin(config, workdir)
  res = run_couplings(config, workdir)
  meas = measure(res, config)
  values = {f"{c}/{k}": v for c, m in meas.items() for k, v in m.items()}
  lines = []
  for c, rows in res.items():
    chosen = selected_strength(rows)
    for r in rows:
      lines.append(
        {
          "coupling": c,
          "variant": VARIANT[c],
          "tau_over_T": r["tau_over_T"],
          "selected": r["tau_over_T"] == chosen,
          "weight_decay": r["weight_decay"],
          "learning_rate": r["learning_rate"],
          "seed": r["seed"],
          "train_loss": r["loss"],
          "diverged": r["diverged"],
          **r["measures"],
          "run_dir": os.path.join("sweep", r["run_dir"]),
        }
      )
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(json.dumps(x) + "\n" for x in lines))
  findings = claims_lib.decide(declared, values, _describe(values))
  has_si = any(math.isfinite(x) for m in meas.values() for x in m["rise_si@strong"])
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
  strong = {c: at_strength(rows, config.strong) for c, rows in res.items()}
  at = f"τ/T = {config.strong:.3g}"
  figures = [
    (
      f"Gradient norm over training per coupling at the strong {at} (geometric mean over "
      "seeds, band: 90% t interval of the logs)",
      _plot_curves(
        strong,
        config,
        workdir,
        "grad_norm.png",
        f"Gradient norm over training — AdamW couplings at {at}, {task}",
        "‖g‖₂ of the minibatch loss",
        g_panels,
        logy=True,
      ),
    ),
    (
      f"Weight norm over training per coupling at {at} (geometric mean, 90% band)",
      _plot_curves(
        strong,
        config,
        workdir,
        "weight_norm.png",
        f"Weight norm over training — AdamW couplings at {at}, {task}",
        "‖θ‖₂ (Euclidean norm)",
        w_panels,
        logy="auto",
      ),
    ),
    (
      "Final test accuracy per coupling, at its selected strength and at the strong one",
      plot_accuracy(res, meas, config, workdir),
    ),
  ]
  wall = time.perf_counter() - t0
  run_cfg = config.run
  alpha = run_cfg.optimizer.learning_rate
  corrected = (
    f'"corrected" corrects the leaves matching {config.corrected_layers!r} (followed by '
    'normalisation); the other decayed leaves keep "lr" with the same λ. '
    if config.corrected_layers
    else '"corrected" applies to every decayed leaf. '
  )
  intro = (
    f"{task} {dict(run_cfg.model.kwargs)}, AdamW at peak lr α = {alpha:g}, {run_cfg.steps} "
    f"steps of batch {run_cfg.batch_size}, {run_cfg.optimizer.lr_schedule} (warmup "
    f"{run_cfg.optimizer.warmup_fraction:g} of the steps, cosine to 0), decay mask "
    f"{run_cfg.optimizer.mask}, seeds {list(config.seeds)}; "
    f"{run_cfg.dataset.validation_fraction:g} of the training data is held out for validation. "
    "Strength τ/T ∈ {" + ", ".join(f"{t:.3g}" for t in config.tau_over_T) + "}: every coupling "
    "shrinks θ by 1/τ per step at the peak lr (λ_lr·α = λ_schedule = λ_constant = "
    "λ_corrected·α = 1/τ); they differ in how the decay follows the schedule. Each coupling's "
    "strength is selected on validation; the test split is read at that strength and at the "
    f"strong {at}, named in advance. {corrected}Rise = geometric mean of ‖g‖ over the last "
    f"{100 * config.tail_fraction:g}% of the steps / the minimum, after the first "
    f"{100 * config.baseline_from:g}% of the steps, of its moving geometric mean over as many "
    f"logged points (one every {run_cfg.diagnostics_every} steps). {config.baseline_note} "
    + config.task_note
  )
  study.write_summary(
    workdir,
    "AdamW's decay couplings: weight norm, end-of-training gradient norm, accuracy",
    findings,
    intro=intro,
    tables=[
      (
        "Per coupling, at its selected strength and at the strong one (mean ± sd over seeds)",
        _table(res, meas, lams, config),
      ),
      ("Validation accuracy and rise at every strength", _strength_table(res, config)),
    ],
    figures=figures,
    footer=f"Wall time {wall:.0f} s. Per-run records: metrics.jsonl; training curves: "
    "sweep/runs/*/metrics.jsonl.",
  )
  return {"findings": findings, "results": res, "measurements": meas, "wall_time_sec": wall}


def work(config) -> int:
  """Configuration-steps the study trains (its progress line's total)."""
  return len(config.couplings) * len(config.tau_over_T) * len(config.seeds) * config.run.steps


if __name__ == "__main__":
  study.main(run, claim_width=110, work=work)
