"""The L1 vs L2 study end to end on its smoke config."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import l1_vs_l2  # noqa: E402
from configs import l1_vs_l2 as l1_config  # noqa: E402


def _outputs(workdir: str, out: dict, num_pngs: int) -> list[dict]:
  """Checks the files every study writes; returns the metrics.jsonl records."""
  for name in ("config.json", "metrics.jsonl", "summary.md"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "config.json")) as f:
    json.load(f)
  pngs = sorted(f for f in os.listdir(workdir) if f.endswith(".png"))
  assert len(pngs) == num_pngs, pngs
  assert all(os.path.getsize(os.path.join(workdir, p)) > 1000 for p in pngs)
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  assert summary.count("**Verdict**") == summary.count("**Declared**") == len(out["findings"])
  for p in pngs:
    assert f"({p})" in summary, p
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(x) for x in f]


def test_l1_vs_l2_smoke_end_to_end(tmp_path):
  cfg = l1_config.get_config("smoke")
  workdir = str(tmp_path / "l1")
  out = l1_vs_l2.run(cfg, workdir)
  lines = _outputs(workdir, out, num_pngs=3)
  assert len(out["findings"]) == 6
  n_wd, n_seed = len(cfg.weight_decays), len(cfg.seeds)
  assert len(lines) == len(cfg.methods) * n_wd * n_seed + n_seed  # + the λ = 0 baseline
  hi = max(cfg.weight_decays)
  # Exact zeros are exact: the soft-threshold makes some, the subgradient and L2 none.
  prox = [x["zero_fraction"] for x in lines if x["method"] == "prox_l1" and x["weight_decay"] == hi]
  assert all(z > 0 for z in prox)
  assert all(x["zero_count"] == 0 for x in lines if x["method"] in ("add_l1", "sgd_l2", "none"))


@pytest.mark.parametrize(
  "module, config, field, value",
  [
    (l1_vs_l2, l1_config, "methods", ("prox_l1", "l0")),
    (l1_vs_l2, l1_config, "weight_decays", (0.0, 1e-3)),
    (l1_vs_l2, l1_config, "seeds", (0, 0)),
  ],
)
def test_bad_config_rejected_before_workdir(tmp_path, module, config, field, value):
  cfg = config.get_config("smoke")
  cfg[field] = value
  with pytest.raises(ValueError, match=field):
    module.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
