"""Studies 2 (lr × λ grids) and 7 (AdamW couplings): smoke configs end to end, and the slope,
confidence-interval and gradient-norm-rise measurements on synthetic data."""

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

from wd_jax import study  # noqa: E402


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


@pytest.mark.parametrize("exponent", [-1.0, 0.0, -0.5])
def test_slope_recovers_the_exponent_of_best_wd_against_lr(exponent):
  lrs = np.geomspace(1e-3, 8e-3, 4)
  wds = np.geomspace(1e-4, 1.0, 9)  # grid step 0.5 decades, finer than the ridge moves
  scores = _synthetic_scores(lrs, wds, exponent, seeds=4)
  a = lr_wd_grid.analyse(scores, list(lrs), list(wds), level=0.95)
  assert a["interior"].all()
  # The parabola refines the argmax well below the 0.5-decade grid step.
  assert all(abs(s - exponent) < 0.15 for s in a["slopes"]), a["slopes"]
  assert abs(a["ci"]["mean"] - exponent) < 0.1
  assert a["ci"]["lo"] <= a["ci"]["mean"] <= a["ci"]["hi"]
  assert abs(a["mean_grid_slope"] - exponent) < 0.15


def test_verdicts_tell_minus_one_from_zero():
  lrs = list(np.geomspace(1e-3, 8e-3, 4))
  wds = list(np.geomspace(1e-4, 1.0, 9))
  coupled = lr_wd_grid.analyse(_synthetic_scores(lrs, wds, -1.0, 4), lrs, wds, 0.95)["ci"]
  fixed = lr_wd_grid.analyse(_synthetic_scores(lrs, wds, 0.0, 4), lrs, wds, 0.95)["ci"]
  verdict = lambda ci, p: lr_wd_grid.slope_verdict(ci, p, 0.25, 0.5).status
  assert verdict(coupled, -1.0) == study.SUPPORTED
  assert verdict(coupled, 0.0) == study.NOT_SUPPORTED
  assert verdict(fixed, 0.0) == study.SUPPORTED
  assert verdict(fixed, -1.0) == study.NOT_SUPPORTED
  # An interval that holds the prediction but is too wide to pin the slope near it.
  wide = {"mean": 1.4, "sd": 0.7, "n": 3, "lo": -0.4, "hi": 3.2}
  assert verdict(wide, 0.0) == study.INCONCLUSIVE
  assert verdict(wide, -1.0) == study.NOT_SUPPORTED
  one = lr_wd_grid.slope_ci([-1.0])
  assert one["n"] == 1 and math.isnan(one["lo"])
  assert verdict(one, -1.0) == study.INCONCLUSIVE


def test_analyse_survives_diverged_cells():
  lrs, wds = [1e-3, 2e-3, 4e-3], [1e-3, 1e-2, 1e-1]
  scores = _synthetic_scores(lrs, wds, 0.0, 2, width=1.0)
  scores[:, :, 0] = np.nan  # every seed diverged at the smallest lr
  a = lr_wd_grid.analyse(scores, lrs, wds, 0.95)  # no warning (warnings are errors here)
  assert np.isnan(a["best_log10_wd"][:, 0]).all() and np.isnan(a["mean_grid"][:, 0]).all()
  assert all(math.isfinite(s) for s in a["slopes"])  # fitted on the two remaining lrs


def test_slope_ci_is_the_t_interval():
  ci = lr_wd_grid.slope_ci([-1.0, -0.8, -1.2, math.nan])
  assert ci["n"] == 3 and ci["mean"] == pytest.approx(-1.0) and ci["sd"] == pytest.approx(0.2)
  half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t_{0.975, 2}
  assert ci["lo"] == pytest.approx(-1.0 - half) and ci["hi"] == pytest.approx(-1.0 + half)


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
  # Growth over the anneal sees a fall too: tail / mid-training window.
  assert coupling.anneal_growth(t, falling, 1000, 0.1) == pytest.approx(0.5**0.9, rel=0.05)
  assert coupling.anneal_growth(t, rising, 1000, 0.1) == pytest.approx(3.0)
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


def test_lr_wd_grid_smoke_end_to_end(tmp_path):
  cfg = grid_config.get_config("smoke")
  assert {"adamw", "adamw_schedule"} <= set(cfg.variants)  # the consistency check runs too
  workdir = str(tmp_path / "grid")
  out = lr_wd_grid.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md", "heatmaps.png", "best_wd_vs_lr.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  summary = _read(workdir, "summary.md")
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.variants) + 1
  for f in out["findings"]:
    assert f.verdict.status in (study.SUPPORTED, study.NOT_SUPPORTED, study.INCONCLUSIVE)
  lines = [json.loads(x) for x in _read(workdir, "metrics.jsonl").splitlines()]
  expected = sum(
    len(g.learning_rates) * len(g.weight_decays) * len(cfg.seeds) for g in cfg.variants.values()
  )
  assert len(lines) == expected
  assert {x["variant"] for x in lines} == set(cfg.variants)
  assert json.loads(_read(workdir, "config.json"))["metric"] == "test_accuracy"


def test_coupling_smoke_end_to_end(tmp_path):
  cfg = coupling_config.get_config("smoke")
  workdir = str(tmp_path / "coupling")
  out = coupling.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  for name in ("grad_norm.png", "weight_norm.png", "accuracy.png"):
    assert os.path.getsize(os.path.join(workdir, name)) < 150_000, name
  summary = _read(workdir, "summary.md")
  assert summary.count("**Verdict**") == len(out["findings"]) >= 5
  lines = [json.loads(x) for x in _read(workdir, "metrics.jsonl").splitlines()]
  assert len(lines) == len(cfg.couplings) * len(cfg.seeds)
  lams = {x["coupling"]: x["weight_decay"] for x in lines}
  alpha = cfg.run.optimizer.learning_rate
  assert lams["lr"] * alpha == pytest.approx(cfg.decay_per_step)
  assert lams["corrected"] * alpha == pytest.approx(cfg.decay_per_step)
  assert all(x["rise"] > 0 for x in lines)


def test_bad_configs_rejected_before_workdir(tmp_path):
  cfg = grid_config.get_config("smoke")
  cfg.variants.adamw.weight_decays = (1.0,)
  with pytest.raises(ValueError, match="weight_decays"):
    lr_wd_grid.run(cfg, str(tmp_path / "never"))
  cfg = coupling_config.get_config("smoke")
  cfg.couplings = ("lr", "sqrt")
  with pytest.raises(ValueError, match="sqrt"):
    coupling.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
