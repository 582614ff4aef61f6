"""Studies 2 (lr × λ grids) and 7 (AdamW couplings): smoke configs end to end, the slope and
gradient-norm-rise measurements on synthetic data, and the shared heat-map panel."""

import json
import math
import os
import sys

import ml_collections
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import coupling  # noqa: E402
import lr_wd_grid  # noqa: E402
from configs import coupling as coupling_config  # noqa: E402
from configs import lr_wd_grid as grid_config  # noqa: E402

from wd_jax import report  # noqa: E402
from wd_jax.study import protocol, stats  # noqa: E402


def _read(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return f.read()


# ----------------------------------------------------------------------------------------------
# The measurement, on synthetic grids.


def _synthetic_scores(lrs, wds, exponent, seeds, noise=0.0, width=0.6):
  """(seed, λ, lr) accuracies peaked at log λ* = c + exponent·log α (a Gaussian ridge in log λ)."""
  rng = np.random.default_rng(0)
  x, y = np.log10(lrs), np.log10(wds)
  out = np.empty((seeds, len(wds), len(lrs)))
  for s in range(seeds):
    shift = rng.normal(0.0, 0.05)  # each seed's optimum sits slightly elsewhere
    best = -1.5 + exponent * (x - x.mean()) + shift
    out[s] = 0.9 * np.exp(-(((y[:, None] - best[None, :]) / width) ** 2))
    out[s] += noise * rng.normal(size=out[s].shape)
  return out


def _claim(p, half=0.5):
  return {"comparison": "slope_within", "low": p - half, "high": p + half, "alpha": 0.05}


@pytest.mark.parametrize("exponent", [-1.0, 0.0, -0.5])
def test_slope_recovers_the_exponent_of_best_wd_against_lr(exponent):
  lrs = np.geomspace(1e-3, 8e-3, 4)
  wds = np.geomspace(1e-4, 1.0, 9)  # grid step 0.5 decades, finer than the ridge moves
  scores = _synthetic_scores(lrs, wds, exponent, seeds=4)
  a = lr_wd_grid.analyse(scores, list(lrs), list(wds))
  assert a["interior"].all()
  # The parabola refines the argmax well below the 0.5-decade grid step.
  assert all(abs(s - exponent) < 0.15 for s in a["slopes"]), a["slopes"]
  d = stats.decide(_claim(exponent), a["measurement"])
  assert abs(d.effect - exponent) < 0.1 and d.n == 4 and d.ci[0] <= d.effect <= d.ci[1]
  assert abs(a["mean_grid_slope"] - exponent) < 0.15


def test_slope_claims_tell_minus_one_from_zero():
  lrs = list(np.geomspace(1e-3, 8e-3, 4))
  wds = list(np.geomspace(1e-4, 1.0, 9))
  coupled = lr_wd_grid.analyse(_synthetic_scores(lrs, wds, -1.0, 4), lrs, wds)["measurement"]
  fixed = lr_wd_grid.analyse(_synthetic_scores(lrs, wds, 0.0, 4), lrs, wds)["measurement"]
  verdict = lambda m, p: stats.decide(_claim(p), m).verdict
  assert verdict(coupled, -1.0) == stats.SUPPORTED
  assert verdict(coupled, 0.0) == stats.NOT_SUPPORTED
  assert verdict(fixed, 0.0) == stats.SUPPORTED
  assert verdict(fixed, -1.0) == stats.NOT_SUPPORTED
  # Two seeds that disagree (slopes −1 and +1): an interval too wide to place the slope.
  x = [0.0, 1.0, 2.0] * 2
  wide = {"x": x, "y": [0.0, -1.0, -2.0, 0.0, 1.0, 2.0], "groups": [0, 0, 0, 1, 1, 1]}
  assert verdict(wide, 0.0) == stats.INCONCLUSIVE
  # The declared claim decides it: the same data, a range that misses it.
  assert stats.decide(_claim(-1.0, 0.25), fixed).verdict == stats.NOT_SUPPORTED


def test_reindexed_couplings_measure_a_slope_difference_of_minus_one():
  # λ_lr = λ_schedule / α: best log λ_lr = best log λ_schedule − log α (slopes −1 and 0 here).
  lrs = list(np.geomspace(1e-3, 8e-3, 4))
  wds = list(np.geomspace(1e-4, 1.0, 9))
  cfg = ml_collections.ConfigDict({"seeds": (0, 1, 2), "variants": {}})
  res = {}
  for v, exponent in (("adamw", -1.0), ("adamw_schedule", 0.0)):
    cfg.variants[v] = {"learning_rates": tuple(lrs), "weight_decays": tuple(wds)}
    scores = _synthetic_scores(lrs, wds, exponent, 3)
    analysis = {m: lr_wd_grid.analyse(scores, lrs, wds) for m in lr_wd_grid.METRICS}
    res[v] = {"lrs": lrs, "rows": [], "selected": None, "analysis": analysis}
  values = lr_wd_grid.measure(res, cfg)
  assert set(values) == set(lr_wd_grid.measurement_names(cfg))
  d = stats.decide(_claim(-1.0, 0.25), values["adamw-adamw_schedule/best_log_wd@val_accuracy"])
  assert d.verdict == stats.SUPPORTED and abs(d.effect + 1.0) < 0.1
  reverse = stats.decide(_claim(+1.0, 0.25), values["adamw_schedule-adamw/best_log_wd@val_loss"])
  assert reverse.verdict == stats.SUPPORTED
  assert all(math.isnan(x) for x in values["adamw/test_accuracy@selected"])  # nothing selected


def test_a_dead_lr_leaves_the_measurement_and_a_seed_with_a_gap_is_dropped():
  lrs, wds = [1e-3, 2e-3, 4e-3], [1e-3, 1e-2, 1e-1]
  scores = _synthetic_scores(lrs, wds, 0.0, 3, width=1.0)
  scores[:, :, 0] = np.nan  # every seed diverged at every λ of the smallest lr
  a = lr_wd_grid.analyse(scores, lrs, wds)  # no warning (warnings are errors here)
  assert np.isnan(a["best_log10_wd"][:, 0]).all() and np.isnan(a["mean_grid"][:, 0]).all()
  assert all(math.isfinite(s) for s in a["slopes"])  # fitted on the two remaining lrs
  assert sorted(set(a["measurement"]["x"])) == pytest.approx(np.log10(lrs[1:]).tolist())
  scores[1, :, 1] = np.nan  # seed 1 alone has no best λ at a kept lr: that seed is dropped
  a = lr_wd_grid.analyse(scores, lrs, wds)
  assert math.isnan(a["slopes"][1]) and math.isfinite(a["slopes"][0])
  d = stats.decide(_claim(0.0), a["measurement"])
  assert d.dropped == 1 and d.n == 2


def test_the_verdict_reads_the_t_interval_of_the_per_seed_slopes():
  lrs = list(np.geomspace(1e-3, 8e-3, 4))
  wds = list(np.geomspace(1e-4, 1.0, 9))
  a = lr_wd_grid.analyse(_synthetic_scores(lrs, wds, -0.5, 4, noise=0.02), lrs, wds)
  mean, lo, hi = stats.t_interval(a["slopes"], 0.05)
  d = stats.decide(_claim(-0.5), a["measurement"])
  assert (d.effect, *d.ci) == pytest.approx((mean, lo, hi))
  assert lo < hi  # the per-seed slopes differ: the interval has a width


def test_best_log_wd_parabola_edges_ties_and_nan():
  x = [0.0, 1.0, 2.0, 3.0]
  # An exact parabola peaked at 1.3 is recovered exactly.
  assert lr_wd_grid.best_log_wd(x, [-((v - 1.3) ** 2) for v in x]) == (pytest.approx(1.3), True)
  assert lr_wd_grid.best_log_wd(x, [4.0, 3.0, 2.0, 1.0]) == (0.0, False)  # edge: censored
  assert lr_wd_grid.best_log_wd(x, [1.0, 2.0, 2.0, 1.0])[0] == pytest.approx(1.5)  # tie: between
  assert lr_wd_grid.best_log_wd(x, [math.nan, 1.0, math.nan, 0.0]) == (1.0, True)  # NaN = worst
  est, interior = lr_wd_grid.best_log_wd(x, [math.nan] * 4)
  assert math.isnan(est) and not interior
  with pytest.raises(ValueError, match="increasing"):
    lr_wd_grid.best_log_wd([1.0, 0.0], [0.0, 1.0])


def test_grad_norm_rise_and_matched_weight_decays():
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
  lams = coupling.matched_weight_decays(1e-2, 4e-3)
  # The same decay per step at the peak lr: c_peak·λ with c = α, 1, 1, α²/α.
  assert lams["lr"] * 4e-3 == pytest.approx(1e-2) and lams["schedule"] == lams["constant"] == 1e-2
  assert lams["corrected"] * 4e-3**2 / 4e-3 == pytest.approx(1e-2)
  with pytest.raises(ValueError, match="decay_per_step"):
    coupling.matched_weight_decays(0.0, 1e-3)


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
  assert {"adamw", "adamw_schedule"} <= set(cfg.variants)  # the re-indexing check runs too
  workdir = str(tmp_path / "grid")
  out = lr_wd_grid.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md", "heatmaps.png", "best_wd_vs_lr.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  for name in ("heatmaps.png", "best_wd_vs_lr.png"):
    assert os.path.getsize(os.path.join(workdir, name)) < 150_000, name
  summary = _read(workdir, "summary.md")
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims)
  assert len(cfg.claims) == len(cfg.variants) + 1
  assert [f.claim.name for f in out["findings"]] == list(cfg.claims)
  for f in out["findings"]:
    assert f.claim.comparison == "slope_within"
    assert f.decision.verdict in (stats.SUPPORTED, stats.NOT_SUPPORTED, stats.INCONCLUSIVE)
  lines = [json.loads(x) for x in _read(workdir, "metrics.jsonl").splitlines()]
  expected = sum(
    len(g.learning_rates) * len(g.weight_decays) * len(cfg.seeds) for g in cfg.variants.values()
  )
  assert len(lines) == expected
  assert {x["variant"] for x in lines} == set(cfg.variants)
  # Best λ is read on validation; the test split only for the selected (lr, λ), every seed.
  for v in cfg.variants:
    mine = [x for x in lines if x["variant"] == v]
    assert all("val_accuracy" in x for x in mine)
    read = [x for x in mine if "test_accuracy" in x]
    chosen = protocol.select_best(mine, by=("learning_rate", "weight_decay"), metric="val_accuracy")
    assert len(read) == len(cfg.seeds)
    assert all(
      x["learning_rate"] == chosen["learning_rate"] and x["weight_decay"] == chosen["weight_decay"]
      for x in read
    )
  assert json.loads(_read(workdir, "config.json"))["metric"] == "val_accuracy"


def test_coupling_smoke_end_to_end(tmp_path):
  cfg = coupling_config.get_config("smoke")
  workdir = str(tmp_path / "coupling")
  out = coupling.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  for name in ("grad_norm.png", "weight_norm.png", "accuracy.png"):
    assert os.path.getsize(os.path.join(workdir, name)) < 150_000, name
  summary = _read(workdir, "summary.md")
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims) == 6
  lines = [json.loads(x) for x in _read(workdir, "metrics.jsonl").splitlines()]
  assert len(lines) == len(cfg.couplings) * len(cfg.seeds)
  lams = {x["coupling"]: x["weight_decay"] for x in lines}
  alpha = cfg.run.optimizer.learning_rate
  assert lams["lr"] * alpha == pytest.approx(cfg.decay_per_step)
  assert lams["corrected"] * alpha == pytest.approx(cfg.decay_per_step)
  assert all(x["rise"] > 0 for x in lines)
  # Nothing is selected: every run is declared in advance and its test split read once.
  assert all(0 < x["val_accuracy"] <= 1 and 0 < x["test_accuracy"] <= 1 for x in lines)


def test_bad_configs_rejected_before_workdir(tmp_path):
  never = str(tmp_path / "never")
  cfg = grid_config.get_config("smoke")
  cfg.variants.adamw.weight_decays = (1.0,)
  with pytest.raises(ValueError, match="weight_decays"):
    lr_wd_grid.run(cfg, never)
  cfg = grid_config.get_config("smoke")
  cfg.metric = "test_accuracy"  # selection never reads the test split
  with pytest.raises(ValueError, match="metric"):
    lr_wd_grid.run(cfg, never)
  cfg = grid_config.get_config("smoke")
  cfg.claims.adamw_slope.measure = "adamw/best_log_wd@test_accuracy"
  with pytest.raises(ValueError, match="best_log_wd@test_accuracy"):
    lr_wd_grid.run(cfg, never)
  cfg = grid_config.get_config("smoke")
  cfg.run.dataset.validation_fraction = 0.0
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
