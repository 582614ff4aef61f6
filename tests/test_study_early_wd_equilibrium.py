"""Studies 3 and 4 (early/late weight decay, rotational equilibrium): smoke configs end to end."""

import json
import math
import os
import sys

import numpy as np
import pytest

from wd_jax.engine.config import override
from wd_jax.study import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import early_wd  # noqa: E402
import equilibrium  # noqa: E402
from configs import early_wd as early_wd_config  # noqa: E402
from configs import equilibrium as equilibrium_config  # noqa: E402


def _outputs(workdir, out):
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  # One verdict per declared claim, each with its declaration.
  assert summary.count("**Verdict**") == summary.count("**Declared**") == len(out["findings"])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(x) for x in f]
  pngs = sorted(f for f in os.listdir(workdir) if f.endswith(".png"))
  assert all(os.path.getsize(os.path.join(workdir, p)) > 1000 for p in pngs)
  for p in pngs:
    assert f"({p})" in summary, p
  return summary, lines, pngs


def test_early_wd_smoke_runs_end_to_end(tmp_path):
  cfg = early_wd_config.get_config("smoke")
  workdir = str(tmp_path / "early_wd")
  out = early_wd.run(cfg, workdir)
  summary, lines, pngs = _outputs(workdir, out)
  assert pngs == ["accuracy.png", "weight_norm.png"]
  assert "test split is read once" in summary
  # whole>none, early≈whole, late≈none, early>late, norm(early)<norm(none), as declared
  assert [f.claim.name for f in out["findings"]] == list(cfg.claims.keys())
  assert len(out["findings"]) == 5
  assert {f.decision.comparison for f in out["findings"]} == {"greater", "equivalent", "less"}
  assert len(lines) == len(cfg.schedules) * len(cfg.seeds)
  by = {(x["schedule"], x["seed"]): x for x in lines}
  assert all(by[("none", s)]["weight_decay"] == 0.0 for s in cfg.seeds)
  assert all(by[("early", s)]["wd_schedule"] == "early" for s in cfg.seeds)
  for x in lines:
    # Validation for every run; the declared schedules' test split read once, at the end.
    assert 0.0 <= x["val_accuracy"] <= 1.0 and 0.0 <= x["test_accuracy"] <= 1.0
    assert x["final_kernel_norm"] > 0
  # Before the switch, "early" and "whole" are the same run; "late" and "none" too.
  for s in cfg.seeds:
    a, b = by[("early", s)], by[("whole", s)]
    assert math.isclose(a["kernel_norm_at_switch"], b["kernel_norm_at_switch"], rel_tol=1e-4)
    a, b = by[("late", s)], by[("none", s)]
    assert math.isclose(a["kernel_norm_at_switch"], b["kernel_norm_at_switch"], rel_tol=1e-4)
  # ... and after it they part: the decay moved the weights.
  assert by[("whole", 0)]["final_kernel_norm"] < by[("none", 0)]["final_kernel_norm"]
  # The claims read the measurements in seed order (paired across schedules).
  values = out["values"]
  assert values["early/kernel_norm"] == [by[("early", s)]["final_kernel_norm"] for s in cfg.seeds]
  assert values["none/test_accuracy"] == [by[("none", s)]["test_accuracy"] for s in cfg.seeds]


def test_equilibrium_smoke_runs_end_to_end(tmp_path):
  cfg = equilibrium_config.get_config("smoke")
  workdir = str(tmp_path / "equilibrium")
  out = equilibrium.run(cfg, workdir)
  summary, lines, pngs = _outputs(workdir, out)
  assert pngs == [
    "angular_update_per_layer.png",
    "angular_update_scatter.png",
    "norm_trajectories.png",
  ]
  # angle and norm ratio for AdamW and SGDM, and Adam+L2's spread across layers
  assert len(out["findings"]) == 5
  assert len(lines) == len(cfg.settings) * len(cfg.seeds)
  for x in lines:
    assert x["layers"], x["variant"]  # every scale-invariant kernel measured
    assert 0.0 <= x["val_accuracy"] <= 1.0 and "test_accuracy" not in x
    for st in x["layers"].values():
      assert st["angular_update"] > 0 and st["norm"] > 0
      if x["variant"] == "adam_l2":
        assert math.isnan(st["pred_angular_update"])  # no closed form
      else:
        assert st["angle_ratio"] > 0 and st["norm_ratio"] > 0
  assert "| stem | b0.conv1 | b0.conv2 |" in summary  # layer columns use short names
  # The claims read log(measured/predicted), mean over layers, one value per seed.
  for variant in ("adamw", "sgdm"):
    for q in ("angle", "norm"):
      want = [
        np.mean([math.log(st[f"{q}_ratio"]) for st in x["layers"].values()])
        for x in sorted(lines, key=lambda x: x["seed"])
        if x["variant"] == variant
      ]
      np.testing.assert_allclose(out["values"][f"{variant}/log_{q}_ratio"], want, rtol=1e-12)


def test_pooled_values_pair_by_seed_and_a_diverged_setting_drops_the_seed():
  summ = {
    ("adamw", 1e-2, 1.0): {1: {"angle_cv": 0.2}, 0: {"angle_cv": 0.1}},
    ("adamw", 5e-3, 1.0): {0: {"angle_cv": 0.3}, 1: {"angle_cv": math.nan}},
    ("adam_l2", 5e-3, 1e-2): {0: {"angle_cv": 0.9}, 1: {"angle_cv": 0.7}},
  }
  assert equilibrium.pooled(summ, "adamw", "angle_cv", [0, 1])[0] == pytest.approx(0.2)
  assert math.isnan(equilibrium.pooled(summ, "adamw", "angle_cv", [0, 1])[1])
  assert equilibrium.pooled(summ, "adam_l2", "angle_cv", [0, 1]) == [0.9, 0.7]


def test_layer_stats_reads_the_logged_keys():
  # The keys the train step and the run record write for a scale-invariant leaf.
  p = "stem/conv/kernel"
  recs = [
    {
      "step": t,
      "loss": 1.0,
      f"angular_update/{p}": 0.02,
      f"pred_angular_update/{p}": 0.04,
      f"param_norm/{p}": n,
      f"pred_norm/{p}": 2.0,
      f"grad_norm_unit/{p}": 0.5,
      f"effective_lr/{p}": 0.1 / n**2,
    }
    for t, n in ((10, 4.0), (20, 3.0), (30, 2.0))
  ]
  stats = equilibrium.layer_stats({"records": recs}, steps=30, last_fraction=0.9, shrink=0.1)
  assert list(stats) == [p]
  s = stats[p]
  assert s["angle_ratio"] == pytest.approx(0.5) and s["norm_ratio"] == pytest.approx(1.5)
  # log(3/4) = -0.29 and log(2/3) = -0.41 per 10 steps vs 0.75·10·log(0.9) = -0.79: not free.
  assert s["free_decay_share"] == 0.0
  stats = equilibrium.layer_stats({"records": recs}, steps=30, last_fraction=0.9, shrink=0.03)
  assert stats[p]["free_decay_share"] == 1.0  # 0.75·10·log(0.97) = -0.23: both fell faster
  assert equilibrium.short_name("blocks/1/conv_bn2/conv/kernel") == "b1.conv2"


def test_seed_series_aligns_seeds_and_leaves_out_diverged_runs():
  rows = [
    {"diverged": False, "records": [{"step": 1, "x": 1.0}, {"step": 2, "x": 2.0}, {"step": 3}]},
    {"diverged": False, "records": [{"step": 1, "x": 3.0}, {"step": 2, "x": 4.0}]},
    {"diverged": True, "records": [{"step": 1, "x": 9.0}]},
  ]
  steps, values = report.seed_series(rows, "x")
  np.testing.assert_array_equal(steps, [1, 2])
  np.testing.assert_array_equal(values, [[1.0, 2.0], [3.0, 4.0]])
  steps, values = report.seed_series(rows, "y")
  assert steps.size == 0 and values.size == 0


@pytest.mark.parametrize(
  "module, config, change, message",
  [
    (early_wd, early_wd_config, {"schedules": ("whole", "middle")}, "middle"),
    (early_wd, early_wd_config, {"seeds": ()}, "seeds"),
    (early_wd, early_wd_config, {"run.dataset.validation_fraction": 0.0}, "validation_fraction"),
    (early_wd, early_wd_config, {"run.per_leaf_diagnostics": False}, "per_leaf"),
    (early_wd, early_wd_config, {"claims.norm_stays_small.a": "early/kernel_norm@end"}, "@end"),
    (early_wd, early_wd_config, {"schedules": ("whole", "none")}, "early/test_accuracy"),
    (equilibrium, equilibrium_config, {"run.optimizer.lr_schedule": "cosine"}, "constant"),
    (equilibrium, equilibrium_config, {"settings": (("adamx", 1e-2, 1.0),)}, "adamx"),
    (equilibrium, equilibrium_config, {"settings": (("adamw", 1e-2, 0.0),)}, "λ > 0"),
    (equilibrium, equilibrium_config, {"last_fraction": 1.5}, "last_fraction"),
    (
      equilibrium,
      equilibrium_config,
      {"claims.adamw_angle_at_equilibrium.a": "adamw/angle_ratio"},
      "adamw/angle_ratio",
    ),
    (  # no Adam+L2 run, but a claim reads it
      equilibrium,
      equilibrium_config,
      {"settings": (("adamw", 1e-2, 1.0), ("sgdm", 0.1, 1e-2))},
      "adam_l2/angle_cv",
    ),
  ],
)
def test_bad_configs_rejected_before_workdir(tmp_path, module, config, change, message):
  cfg = override(config.get_config("smoke"), change)
  with pytest.raises(ValueError, match=message):
    module.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
