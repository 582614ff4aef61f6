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
  out = l2_pollution.run(l2_config.get_config("smoke"), workdir)
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  pngs = sorted(f for f in os.listdir(workdir) if f.endswith(".png"))
  assert len(pngs) == 6, pngs  # three figures per task
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  assert summary.count("**Verdict**") == len(out["findings"]) == 8
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(x) for x in f]
  assert len(lines) == 5 * 2 * 2 + 5 * 2 * 1  # variants × λ × seeds, per task
  shares = [x["final_l2_share"] for x in lines if x["variant"] == "adam_l2"]
  assert all(0.0 < s < 1.0 for s in shares)
  assert all(x["final_l2_share"] == 0.0 for x in lines if x["variant"] == "l2_v_only")
  # Selection on validation, test read once: for the selected λ and the largest λ only.
  cfg = l2_config.get_config("smoke")
  for task in ("mnist1d", "char_lm"):
    top = max(cfg.tasks[task].weight_decays)
    for x in lines:
      if x["task"] == task and not x["diverged"] and x["weight_decay"] == top:
        assert "test_loss" in x, x
    read = {
      (x["variant"], x["weight_decay"]) for x in lines if x["task"] == task and "test_loss" in x
    }
    assert len(read) <= 2 * 5  # at most two λ per variant


def test_bad_config_rejected_before_workdir(tmp_path):
  cfg = l2_config.get_config("smoke")
  cfg.variants = ("adam_l2", "adamx")
  with pytest.raises(ValueError, match="adamx"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  cfg = l2_config.get_config("smoke")
  cfg.claims.mnist1d_share_grows.a = "mnist1d/adam_l2/l2_share@halfway"
  with pytest.raises(ValueError, match="l2_share@halfway"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
