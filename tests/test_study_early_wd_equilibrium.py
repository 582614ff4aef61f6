"""Studies 3 and 4 (early/late weight decay, rotational equilibrium): smoke configs end to end."""

import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import early_wd  # noqa: E402
import equilibrium  # noqa: E402
from configs import early_wd as early_wd_config  # noqa: E402
from configs import equilibrium as equilibrium_config  # noqa: E402


def _outputs(workdir):
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(x) for x in f]
  pngs = sorted(f for f in os.listdir(workdir) if f.endswith(".png"))
  return summary, lines, pngs


def test_early_wd_smoke_runs_end_to_end(tmp_path):
  cfg = early_wd_config.get_config("smoke")
  workdir = str(tmp_path / "early_wd")
  out = early_wd.run(cfg, workdir)
  summary, lines, pngs = _outputs(workdir)
  assert pngs == ["test_accuracy.png", "weight_norm.png"]
  # precondition + early≈whole + late≈none + early>late + norm(early)<norm(none)
  assert summary.count("**Verdict**") == len(out["findings"]) == 5
  assert len(lines) == len(cfg.schedules) * len(cfg.seeds)
  by = {(x["schedule"], x["seed"]): x for x in lines}
  assert all(by[("none", s)]["weight_decay"] == 0.0 for s in cfg.seeds)
  assert all(by[("early", s)]["wd_schedule"] == "early" for s in cfg.seeds)
  for x in lines:
    assert 0.0 <= x["test_accuracy"] <= 1.0 and x["final_kernel_norm"] > 0
  # Before the switch, "early" and "whole" are the same run; "late" and "none" too.
  for s in cfg.seeds:
    a, b = by[("early", s)], by[("whole", s)]
    assert math.isclose(a["kernel_norm_at_switch"], b["kernel_norm_at_switch"], rel_tol=1e-4)
    a, b = by[("late", s)], by[("none", s)]
    assert math.isclose(a["kernel_norm_at_switch"], b["kernel_norm_at_switch"], rel_tol=1e-4)


def test_equilibrium_smoke_runs_end_to_end(tmp_path):
  cfg = equilibrium_config.get_config("smoke")
  workdir = str(tmp_path / "equilibrium")
  out = equilibrium.run(cfg, workdir)
  summary, lines, pngs = _outputs(workdir)
  assert pngs == [
    "angular_update_per_layer.png",
    "angular_update_scatter.png",
    "norm_trajectories.png",
  ]
  # angle and norm ratio for AdamW and SGDM, and Adam+L2's spread across layers
  assert summary.count("**Verdict**") == len(out["findings"]) == 5
  assert len(lines) == len(cfg.settings) * len(cfg.seeds)
  for x in lines:
    assert x["layers"], x["variant"]  # every scale-invariant kernel measured
    for st in x["layers"].values():
      assert st["angular_update"] > 0 and st["norm"] > 0
      if x["variant"] == "adam_l2":
        assert math.isnan(st["pred_angular_update"])  # no closed form
      else:
        assert st["angle_ratio"] > 0 and st["norm_ratio"] > 0
  assert "| stem | b0.conv1 | b0.conv2 |" in summary  # layer columns use short names


def test_bad_configs_rejected_before_workdir(tmp_path):
  cfg = early_wd_config.get_config("smoke")
  cfg.schedules = ("whole", "middle")
  with pytest.raises(ValueError, match="middle"):
    early_wd.run(cfg, str(tmp_path / "never1"))
  cfg = equilibrium_config.get_config("smoke")
  cfg.run.optimizer.lr_schedule = "cosine"
  with pytest.raises(ValueError, match="constant"):
    equilibrium.run(cfg, str(tmp_path / "never2"))
  assert not (tmp_path / "never1").exists() and not (tmp_path / "never2").exists()
