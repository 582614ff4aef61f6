"""Studies 2 (lr × λ grids) and 7 (AdamW couplings): smoke configs end to end, the slope and
gradient-norm-rise measurements on synthetic data, and the shared heat-map panel."""

import json
import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import coupling  # noqa: E402
import lr_wd_grid  # noqa: E402
from configs import coupling as coupling_config  # noqa: E402
from configs import lr_wd_grid as grid_config  # noqa: E402

from wd_jax.study import (  # noqa: E402
  lr_ridge,
  protocol,
  report,
  stats,
)


def _read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return f.read()


# ----------------------------------------------------------------------------------------------
# The measurement, on synthetic grids.


def _synthetic(lrs, taus, exponent, seeds, noise=0.0, width=0.6, offset=-3.65):
  """(seed, strength, lr) accuracies peaked along log λ* = c + exponent·log α, and the
  (strength, lr) log λ matrix of an lr-coupled grid (λ = 1/(α τ)): a Gaussian ridge in log λ."""
  rng = np.random.default_rng(0)
  x = np.log10(lrs)
  log_lam = -np.log10(np.asarray(taus))[:, None] - x[None, :] + offset
  out = np.empty((seeds, len(taus), len(lrs)))
  for s in range(seeds):
    shift = rng.normal(0.0, 0.05)  # each seed's optimum sits slightly elsewhere
    best = -1.5 + exponent * (x - x.mean()) + shift
    out[s] = 0.9 * np.exp(-(((log_lam - best[None, :]) / width) ** 2))
    out[s] += noise * rng.normal(size=out[s].shape)
  return out, log_lam


LRS = list(np.geomspace(2.5e-3, 8e-2, 6))  # 32×
TAUS = list(np.geomspace(16.0, 1 / 64, 11))  # strengths 0.3 decades apart


def test_ridge_slope_of_an_exact_quadratic():
  rng = np.random.default_rng(1)
  x, y = rng.uniform(-2, 0, 40), rng.uniform(-4, 0, 40)
  for slope in (-1.0, 0.0, 0.7):
    z = 1.0 - 0.3 * (y - (slope * x - 1.0)) ** 2 - 0.05 * x**2  # ridge y* = slope·x − 1
    assert lr_ridge.ridge_slope(x, y, z) == pytest.approx(slope, abs=1e-9)
  assert math.isnan(lr_ridge.ridge_slope(x, y, 0.3 * y**2))  # convex in y: no ridge
  assert math.isnan(lr_ridge.ridge_slope(x[:5], y[:5], x[:5]))  # too few points


@pytest.mark.parametrize("exponent", [-1.0, -0.5, 0.0])
def test_the_ridge_recovers_the_exponent_of_best_wd_against_lr(exponent):
  scores, log_lam = _synthetic(LRS, TAUS, exponent, seeds=4, noise=0.005)
  a = lr_ridge.analyse(scores, log_lam, LRS)
  assert all(abs(s - exponent) < 0.15 for s in a["slopes"]), a["slopes"]
  assert all(abs(s - exponent) < 0.25 for s in a["argmax_slopes"]), a["argmax_slopes"]
  # The "schedule" view of the same runs (λ_s = α·λ_lr) has a slope larger by exactly 1.
  sched = lr_ridge.analyse(scores, lr_ridge.view_log_lambda("adamw_schedule", log_lam, LRS), LRS)
  assert np.allclose(np.subtract(sched["slopes"], a["slopes"]), 1.0, atol=1e-9)


def test_ridge_claims_tell_minus_one_from_zero():
  claim = {"comparison": "equivalent", "margin": 0.5, "alpha": 0.05}
  for exponent in (-1.0, 0.0):
    scores, log_lam = _synthetic(LRS, TAUS, exponent, seeds=5, noise=0.005)
    slopes = lr_ridge.analyse(scores, log_lam, LRS)["slopes"]
    for p in (-1.0, 0.0):
      d = stats.decide(claim, {"a": [s - p for s in slopes]})
      want = stats.SUPPORTED if p == exponent else stats.NOT_SUPPORTED
      assert d.verdict == want, (exponent, p, d.detail)


def test_unreachable_cells_and_a_dead_lr_are_left_out_without_warnings():
  scores, log_lam = _synthetic(LRS, TAUS, -1.0, seeds=3)
  log_lam[-3:, 0] = np.nan  # Adam+L2 cannot reach the three strongest strengths at the lowest lr
  scores[:, -3:, 0] = np.nan
  scores[:, :, 1] = np.nan  # every run diverged at the second lr
  a = lr_ridge.analyse(scores, log_lam, LRS)  # no warning (warnings are errors here)
  assert np.isnan(a["best_log10_wd"][:, 1]).all()
  assert all(abs(s + 1.0) < 0.2 for s in a["slopes"])
  assert not a["region"][:, 1].any()


def test_best_log_wd_parabola_edges_ties_and_nan():
  x = [0.0, 1.0, 2.0, 3.0]
  # An exact parabola peaked at 1.3 is recovered exactly.
  assert lr_ridge.best_log_wd(x, [-((v - 1.3) ** 2) for v in x]) == (pytest.approx(1.3), True)
  assert lr_ridge.best_log_wd(x, [4.0, 3.0, 2.0, 1.0]) == (0.0, False)  # edge: censored
  assert lr_ridge.best_log_wd(x, [1.0, 2.0, 2.0, 1.0])[0] == pytest.approx(1.5)  # tie: between
  assert lr_ridge.best_log_wd(x, [math.nan, 1.0, math.nan, 0.0]) == (1.0, True)  # NaN = worst
  est, interior = lr_ridge.best_log_wd(x, [math.nan] * 4)
  assert math.isnan(est) and not interior
  with pytest.raises(ValueError, match="increasing"):
    lr_ridge.best_log_wd([1.0, 0.0], [0.0, 1.0])


def test_grad_norm_rise_and_strength_matched_weight_decays():
  t = np.arange(1, 101) * 10.0
  flat = np.ones(100)
  assert coupling.grad_norm_rise(t, flat, 1000) == pytest.approx(1.0)
  rising = np.concatenate([np.ones(90), np.full(10, 3.0)])
  assert coupling.grad_norm_rise(t, rising, 1000) == pytest.approx(3.0)
  falling = np.geomspace(2.0, 0.5, 100)
  assert coupling.grad_norm_rise(t, falling, 1000) == pytest.approx(1.0, abs=0.05)
  # Noise alone: both sides average as many points, so a flat noisy curve gives ≈ 1.
  noisy = np.exp(np.random.default_rng(0).normal(0.0, 0.2, 100))
  assert coupling.grad_norm_rise(t, noisy, 1000, baseline_from=0.5) < 1.15
  # An early minimum (the start-up transient) is left out by baseline_from.
  dip = np.concatenate([np.full(10, 0.1), np.ones(80), np.full(10, 2.0)])
  assert coupling.grad_norm_rise(t, dip, 1000) == pytest.approx(20.0)
  assert coupling.grad_norm_rise(t, dip, 1000, baseline_from=0.3) == pytest.approx(2.0)
  assert coupling.norm_ratio(t, np.linspace(2.0, 1.0, 100), 1000) == pytest.approx(1.0 / 1.5, 0.02)
  cfg = coupling_config.get_config("smoke")
  lams = coupling.weight_decays(cfg)
  alpha, steps = cfg.run.optimizer.learning_rate, cfg.run.steps
  for t in cfg.tau_over_T:  # every coupling shrinks θ by 1/τ per step at the peak lr
    tau = t * steps
    assert lams["lr", t] * alpha * tau == pytest.approx(1.0)
    assert lams["constant", t] * tau == pytest.approx(1.0)
    assert lams["corrected", t] * alpha**2 / alpha * tau == pytest.approx(1.0)


def test_adamc_corrects_only_the_named_layers_and_keeps_lr_elsewhere():
  """A zero-gradient step at α_t = α_peak/2: the corrected leaf shrinks by (α_t²/α_peak)·λ, the
  other decayed leaf by α_t·λ ("lr"), an undecayed leaf not at all."""
  import jax.numpy as jnp
  import optax

  import wd_jax

  lam, peak, a_t = 0.5, 0.2, 0.1
  params = {"hidden": {"0": {"kernel": jnp.ones((3, 2))}}, "head": {"kernel": jnp.ones((2, 1))}}
  params["head"]["bias"] = jnp.ones(1)
  mask = wd_jax.default_mask  # what the study's config uses: kernels decayed, biases not
  opt = coupling.adamw_recipe(
    a_t,
    lam,
    mask,
    coupling="corrected",
    peak_learning_rate=peak,
    corrected_layers=r"hidden/0/kernel",
  )
  zeros = optax.tree.zeros_like(params)
  u, _ = opt.update(zeros, opt.init(params), params)
  np.testing.assert_allclose(u["hidden"]["0"]["kernel"], -(a_t**2 / peak) * lam, rtol=1e-6)
  np.testing.assert_allclose(u["head"]["kernel"], -a_t * lam, rtol=1e-6)
  np.testing.assert_allclose(u["head"]["bias"], 0.0)
  # Without corrected_layers it is wd_jax.adamw with "corrected" on every decayed leaf.
  plain = coupling.adamw_recipe(a_t, lam, mask, coupling="corrected", peak_learning_rate=peak)
  u, _ = plain.update(zeros, plain.init(params), params)
  np.testing.assert_allclose(u["head"]["kernel"], -(a_t**2 / peak) * lam, rtol=1e-6)


def test_scale_invariant_series_from_per_leaf_records():
  # ‖g‖ of a scale-invariant leaf is ‖g̃‖/‖w‖ (the step logs ‖g̃‖ = ‖g‖·‖w‖ and ‖w‖).
  records = [
    {
      "step": 10,
      "grad_norm_unit/a": 3.0,
      "param_norm/a": 2.0,
      "grad_norm_unit/b": 4.0,
      "param_norm/b": 1.0,
      "param_norm/head": 9.0,
    },
    {"step": 20, "grad_norm": 1.0},  # a record without per-leaf diagnostics is skipped
  ]
  si = coupling.scale_invariant_series(records)
  assert si["steps"].tolist() == [10.0]
  assert si["grad_norm"][0] == pytest.approx(math.hypot(1.5, 4.0))
  assert si["weight_norm"][0] == pytest.approx(math.hypot(2.0, 1.0))
  assert coupling.scale_invariant_series([{"step": 1, "grad_norm": 1.0}])["steps"].size == 0


# ----------------------------------------------------------------------------------------------
# The studies end to end.


def test_heatmap_scale_spans_at_least_a_typical_interval():
  # Cells within 0.01 of each other, 90% CIs 0.04 wide: the colours span the CI, flagged "flat".
  norm, note = report.heatmap_scale([np.array([[0.90, 0.91]])], [np.array([[0.02, 0.02]])])
  assert (norm.vmin, norm.vmax) == pytest.approx((0.885, 0.925)) and note.startswith("flat")
  # A range wider than the CIs is the range itself, without a note; NaN cells are ignored.
  means = [np.array([[0.5, 0.9, np.nan]]), np.array([[0.7, np.nan, 0.6]])]
  norm, note = report.heatmap_scale(means, [np.full((1, 3), 0.01), np.full((1, 3), np.nan)])
  assert (norm.vmin, norm.vmax) == pytest.approx((0.5, 0.9)) and note == ""
  norm, note = report.heatmap_scale([np.array([[0.5]])])  # one value, no CI: padded
  assert norm.vmin < 0.5 < norm.vmax and note == ""


def test_heatmap_panel_writes_the_interval_and_outlines_the_best_cell():
  import matplotlib.pyplot as plt

  mean = np.array([[0.5, 0.7], [0.8, np.nan]])
  half = np.array([[0.01, 0.02], [0.03, np.nan]])
  dead = np.array([[False, False], [False, True]])
  norm, _ = report.heatmap_scale([mean], [half])
  fig, ax = plt.subplots()
  _, best = report.heatmap_panel(
    ax,
    [1e-3, 1e-2],
    [0.1, 1.0],
    mean,
    norm=norm,
    cmap=plt.get_cmap("viridis"),
    half=half,
    dead=dead,
  )
  texts = sorted(t.get_text() for t in ax.texts)
  plt.close(fig)
  assert best == (1, 0)
  assert texts == ["0.5\n±0.01", "0.7\n±0.02", "0.8\n±0.03", "diverged"]
  assert ax.get_xscale() == ax.get_yscale() == "log"


def test_ci_band_on_logs_is_a_multiplicative_band():
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots()
  per_seed = np.array([[1.0, 10.0], [4.0, 40.0]])  # geometric means 2 and 20
  report.ci_band(ax, [0, 1], per_seed, color="k", log=True, ls="--")
  line = ax.lines[0]
  plt.close(fig)
  assert line.get_ydata() == pytest.approx([2.0, 20.0]) and line.get_linestyle() == "--"


# ----------------------------------------------------------------------------------------------
# The studies end to end.


def test_lr_wd_grid_smoke_end_to_end(tmp_path):
  cfg = grid_config.get_config("smoke")
  assert {"adamw", "adamw_schedule"} <= set(cfg.views)  # one run set, read in both units
  workdir = str(tmp_path / "grid")
  out = lr_wd_grid.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md", "heatmaps.png", "ridge.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  for name in ("heatmaps.png", "ridge.png"):
    assert os.path.getsize(os.path.join(workdir, name)) < 200_000, name
  summary = _read(workdir, "summary.md")
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims) == 2 * 3
  assert [f.claim.name for f in out["findings"]] == list(cfg.claims)
  lines = [json.loads(x) for x in _read(workdir, "metrics.jsonl").splitlines()]
  assert {x["model"] for x in lines} == {"mlp", "mlp_ln"}
  assert {x["run_set"] for x in lines} == {"adam_l2", "adamw"}
  assert len(lines) == 2 * 2 * 2 * 2 * len(cfg.seeds)  # models × run sets × lr × τ/T × seeds
  # Strength in one unit: each run set's λ is its own, τ/T is the grid's.
  for x in lines:
    assert x["tau_over_T"] in cfg.tau_over_T
    if x["run_set"] == "adamw":
      assert x["weight_decay"] * x["learning_rate"] * x["tau_over_T"] * 30 == pytest.approx(1.0)
  # Best λ is read on validation; the test split only for the selected (lr, λ), every seed.
  for m in cfg.models:
    for rs in ("adam_l2", "adamw"):
      mine = [x for x in lines if x["model"] == m and x["run_set"] == rs]
      read = [x for x in mine if "test_accuracy" in x]
      chosen = protocol.select_best(
        mine, by=("learning_rate", "weight_decay"), metric="val_accuracy"
      )
      assert len(read) == len(cfg.seeds)
      assert all(
        x["learning_rate"] == chosen["learning_rate"]
        and x["weight_decay"] == chosen["weight_decay"]
        for x in read
      )


def test_coupling_smoke_end_to_end(tmp_path):
  cfg = coupling_config.get_config("smoke")
  workdir = str(tmp_path / "coupling")
  out = coupling.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  for name in ("grad_norm.png", "weight_norm.png", "accuracy.png"):
    assert os.path.getsize(os.path.join(workdir, name)) < 150_000, name
  summary = _read(workdir, "summary.md")
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims) == 8
  lines = [json.loads(x) for x in _read(workdir, "metrics.jsonl").splitlines()]
  assert len(lines) == len(cfg.couplings) * len(cfg.tau_over_T) * len(cfg.seeds)
  alpha, steps = cfg.run.optimizer.learning_rate, cfg.run.steps
  for x in lines:  # one strength unit: 1/τ per step at the peak lr for every coupling
    per_step = x["weight_decay"] * (1.0 if x["coupling"] == "constant" else alpha)
    assert per_step * x["tau_over_T"] * steps == pytest.approx(1.0)
  assert all(x["rise"] > 0 for x in lines)
  # The test split is read for each coupling's selected strength and for the strong one only.
  for c in cfg.couplings:
    mine = [x for x in lines if x["coupling"] == c]
    chosen = {x["tau_over_T"] for x in mine if x["selected"]}
    assert len(chosen) == 1
    for x in mine:
      read = math.isfinite(x["test_accuracy"])
      assert read == (x["tau_over_T"] in chosen or x["tau_over_T"] == cfg.strong), x


def test_bad_configs_rejected_before_workdir(tmp_path):
  never = str(tmp_path / "never")
  cfg = grid_config.get_config("smoke")
  cfg.learning_rates.adamw = (1.0,)
  with pytest.raises(ValueError, match=r"learning_rates\.adamw"):
    lr_wd_grid.run(cfg, never)
  cfg = grid_config.get_config("smoke")
  cfg.metric = "test_accuracy"  # selection never reads the test split
  with pytest.raises(ValueError, match="metric"):
    lr_wd_grid.run(cfg, never)
  cfg = grid_config.get_config("smoke")
  cfg.claims.mlp_adamw_ridge.a = "mlp/adamw/best_log_wd@test_accuracy"
  with pytest.raises(ValueError, match="best_log_wd@test_accuracy"):
    lr_wd_grid.run(cfg, never)
  cfg = grid_config.get_config("smoke")
  cfg.models.mlp.dataset.validation_fraction = 0.0
  with pytest.raises(ValueError, match="validation_fraction"):
    lr_wd_grid.run(cfg, never)
  cfg = coupling_config.get_config("smoke")
  cfg.couplings = ("lr", "sqrt")
  with pytest.raises(ValueError, match="sqrt"):
    coupling.run(cfg, never)
  cfg = coupling_config.get_config("smoke")
  cfg.claims.lr_rise.a = "lr/growth"  # no statistic chosen after the fact
  with pytest.raises(ValueError, match="lr/growth"):
    coupling.run(cfg, never)
  cfg = coupling_config.get_config("smoke")
  cfg.baseline_from = 0.95
  with pytest.raises(ValueError, match="baseline_from"):
    coupling.run(cfg, never)
  assert not (tmp_path / "never").exists()
