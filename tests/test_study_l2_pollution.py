"""The headline study's smoke config end to end: files, figures and a verdict per claim."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import l2_pollution  # noqa: E402
from configs import l2_pollution as l2_config  # noqa: E402


def test_smoke_runs_end_to_end(tmp_path):
  workdir = str(tmp_path / "l2")
  cfg = l2_config.get_config("smoke")
  out = l2_pollution.run(cfg, workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  pngs = sorted(f for f in os.listdir(workdir) if f.endswith(".png"))
  assert len(pngs) == 4, pngs  # two figures per task
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  assert summary.count("**Verdict**") == len(out["findings"]) == 10
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(x) for x in f]
  # mnist1d: 1 arm × 2 strengths × 2 seeds + 2 tuned arms × 2 lr × 2 strengths × 2 seeds;
  # char_lm: 3 arms × 2 strengths × 1 seed (λθ in m, not in v: no divergence on rare rows).
  assert len(lines) == 4 + 16 + 6
  assert not any(x["diverged"] for x in lines)
  # Strength in one unit: each arm's λ differs, its τ/T is the grid's.
  for task in ("mnist1d", "char_lm"):
    assert {x["tau_over_T"] for x in lines if x["task"] == task} == {16.0, 4.0}
  # λθ kept out of m never turns the step; every arm that decays does, more when stronger.
  for x in lines:
    if x["variant"] in ("l2_v_only", "l2_neither"):
      assert x["mean_step_cos"] == pytest.approx(1.0, abs=1e-6), x
    else:
      assert x["mean_step_cos"] < 1.0, x
  # Selection on validation, test read once: the selected and the matched configuration only.
  for task in ("mnist1d", "char_lm"):
    for v in cfg.variants:
      read = {
        (x["learning_rate"], x["weight_decay"])
        for x in lines
        if x["task"] == task and x["variant"] == v and "test_loss" in x
      }
      assert 1 <= len(read) <= 2, (task, v, read)
      assert any(
        x["tau_over_T"] == cfg.matched
        and x["learning_rate"] == cfg.tasks[task].run.optimizer.learning_rate
        and "test_loss" in x
        for x in lines
        if x["task"] == task and x["variant"] == v
      )


def test_bad_config_rejected_before_workdir(tmp_path):
  cfg = l2_config.get_config("smoke")
  cfg.variants = ("adam_l2", "adamx")
  with pytest.raises(ValueError, match="adamx"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  cfg = l2_config.get_config("smoke")
  cfg.claims.mnist1d_l2_turns_the_step.a = "mnist1d/adamw/step_cos@halfway"
  with pytest.raises(ValueError, match="step_cos@halfway"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  cfg = l2_config.get_config("smoke")
  cfg.matched = 2.0
  with pytest.raises(ValueError, match=r"config\.matched=2\.0"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()


def test_a_strength_adam_l2_cannot_reach_is_refused_before_the_workdir(tmp_path):
  cfg = l2_config.get_config("smoke")
  del cfg.tasks["char_lm"]
  cfg.claims = l2_config.claims(("mnist1d",), 0.0625, cfg.variants)
  cfg.matched = 0.0625  # τ = 2.5 steps: faster than any coordinate can move at α = 0.02
  cfg.tasks.mnist1d.tau_over_T = (4.0, 0.0625)
  with pytest.raises(ValueError, match="cannot reach the matched strength"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
