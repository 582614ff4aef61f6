"""The headline study in two phases (smoke config): tune writes a pre-registration, confirm runs
only its cells on fresh seeds and a fresh draw and refuses anything else; the data draws of the
default config share no sequence."""

import hashlib
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import l2_pollution  # noqa: E402
from configs import l2_pollution as l2_config  # noqa: E402

from wd_jax.engine.data import mnist1d, with_validation_split  # noqa: E402
from wd_jax.engine.data._mnist1d import _mnist1d_arrays  # noqa: E402
from wd_jax.study import preregistration  # noqa: E402


def _smoke(tmp, phase="confirm"):
  cfg = l2_config.get_config("smoke")
  cfg.preregistration = str(tmp / "preregistered.json")
  cfg.phase = phase
  return cfg


@pytest.fixture(scope="module")
def phases_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("l2")
  tuned = l2_pollution.run(_smoke(tmp, "tune"), str(tmp / "tune"))
  confirmed = l2_pollution.run(_smoke(tmp), str(tmp / "confirm"))
  return tmp, tuned, confirmed


def test_tune_preregisters_each_arms_cell_with_its_stability_and_grid_edges(phases_run):
  tmp, tuned, _ = phases_run
  p = preregistration.read(str(tmp / "preregistered.json"))
  cfg = _smoke(tmp)
  assert set(p.body["cells"]) == set(cfg.arms) == set(p.body["selection"])
  assert p.body["claims"] == json.loads(json.dumps(cfg.claims.to_dict()))
  for arm, s in p.body["selection"].items():
    assert 0.0 <= s["stability"] <= 1.0 and isinstance(s["edges"], list), arm
    assert p.body["cells"][arm][0]["roles"][0] == "tuned"
  assert p.body["cells"]["adam"][0]["weight_decay"] == 0.0  # plain Adam: λ = 0 only
  assert p.body["tune"]["seeds"] == [0, 1] and p.body["rules"]["min_confirm_seeds"] == 3
  # The tune phase never reads a test split; its summary names the digest it wrote.
  assert not any("test_items.npz" in f for _, _, fs in os.walk(tmp / "tune") for f in fs)
  summary = (tmp / "tune" / "summary.md").read_text()
  assert p.digest in summary and "stability" in summary
  assert any(p.short in line for line in tuned["lines"])


def test_confirm_runs_only_the_preregistered_cells_and_reads_each_test_item_once(phases_run):
  tmp, _, out = phases_run
  p = preregistration.read(str(tmp / "preregistered.json"))
  lines = [json.loads(x) for x in (tmp / "confirm" / "metrics.jsonl").read_text().splitlines()]
  ran = {(x["arm"], x["learning_rate"], x["weight_decay"]) for x in lines}
  cells = {
    (a, c["learning_rate"], c["weight_decay"]) for a, cs in p.body["cells"].items() for c in cs
  }
  assert ran == cells
  assert {x["seed"] for x in lines} == {10, 11, 12} and not any(x["diverged"] for x in lines)
  for arm, rows in out["rows"].items():
    for r in rows:  # every run's test split read once, per item
      with np.load(tmp / "confirm" / arm / r["run_dir"] / "test_items.npz") as f:
        assert f["accuracy"].shape == f["loss"].shape == (600,)
  summary = (tmp / "confirm" / "summary.md").read_text()
  assert f"sha256 `{p.digest}`" in summary and "uncommitted" in summary
  assert summary.count("**Verdict**") == len(out["findings"]) == len(_smoke(tmp).claims)
  assert "## True by construction" in summary and "Holm" in summary
  assert (tmp / "confirm" / "preregistration.json").exists()
  assert {"mnist1d_claims.png", "mnist1d_step_cos.png"} <= set(os.listdir(tmp / "confirm"))


def test_claims_read_intervals_over_seeds_and_items(phases_run):
  _, _, out = phases_run
  acc = out["values"]["mnist1d/adamw/test_accuracy"]
  assert acc.shape == (3, 600)
  (gap,) = [f for f in out["findings"] if f.claim.name == "adamw_beats_adam_l2"]
  assert "3 seeds × 600 items (crossed)" in gap.decision.detail
  (turn,) = [f for f in out["findings"] if f.claim.name == "v_only_first_moment_is_the_loss"]
  assert turn.decision.verdict == "supported" and turn.claim.kind == "construction"


def test_confirm_refuses_without_a_preregistration(tmp_path):
  with pytest.raises(ValueError, match="run it first"):
    l2_pollution.run(_smoke(tmp_path), str(tmp_path / "confirm"))
  assert not (tmp_path / "confirm").exists()


def test_a_claim_edited_after_tune_is_refused_naming_the_digest(phases_run, tmp_path):
  tmp, _, _ = phases_run
  cfg = _smoke(tmp)
  cfg.claims.adamw_beats_adam_l2.margin = 0.005
  digest = preregistration.read(cfg.preregistration).short
  with pytest.raises(ValueError, match=rf"{digest}.*adamw_beats_adam_l2\.margin: 0\.005 now"):
    l2_pollution.run(cfg, str(tmp_path / "again"))
  assert not (tmp_path / "again").exists()


def test_confirm_refuses_tuning_seeds_a_tuning_draw_and_another_digest(phases_run, tmp_path):
  tmp, _, _ = phases_run
  cfg = _smoke(tmp)
  cfg.confirm.seeds = (1, 11, 12)
  with pytest.raises(ValueError, match=r"reuses the tuning seeds \[1\]"):
    l2_pollution.run(cfg, str(tmp_path / "a"))
  cfg = _smoke(tmp)
  cfg.confirm.dataset.seed = 1
  with pytest.raises(ValueError, match="tuning draw"):
    l2_pollution.run(cfg, str(tmp_path / "b"))
  other = preregistration.write(str(tmp_path / "other.json"), {"claims": {}})
  preregistration.bind(str(tmp_path / "c"), other)  # a workdir started on another digest
  with pytest.raises(ValueError, match=f"holds pre-registration {other.short}"):
    l2_pollution.run(_smoke(tmp), str(tmp_path / "c"))


def test_bad_config_rejected_before_workdir(tmp_path):
  cfg = _smoke(tmp_path, "tune")
  cfg.arms = ("adam", "adamx")
  with pytest.raises(ValueError, match="adamx"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  cfg = _smoke(tmp_path, "tune")
  cfg.claims.adamw_beats_adam_l2.a = "mnist1d/adamw/step_cos@halfway"
  with pytest.raises(ValueError, match="step_cos@halfway"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  cfg = _smoke(tmp_path, "tune")
  cfg.phase = "pilot"
  with pytest.raises(ValueError, match=r"config\.phase"):
    l2_pollution.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()


def test_the_tuning_and_confirm_draws_share_no_sequence():
  """The default config's tuning draw and both confirm draws (main job, replication), hashed
  sequence by sequence: no sequence of one is in another."""
  default, replicate = l2_config.get_config(), l2_config.get_config("replicate")
  draws = [default.tune.dataset, default.confirm.dataset, replicate.confirm.dataset]
  hashes = []
  for draw in draws:  # the generator's raw sequences (each draw standardises its own copy)
    x, _, x_test, _ = _mnist1d_arrays(draw.seed, draw.num_train, draw.num_test)
    hashes.append(
      {hashlib.sha256(row.tobytes()).hexdigest() for row in np.concatenate([x, x_test])}
    )
    assert len(hashes[-1]) == len(x) + len(x_test)  # and no sequence repeats within a draw
  for draw in draws[1:]:  # large validation and test splits where the claims are decided
    ds = with_validation_split(mnist1d(**dict(draw)), default.run.dataset.validation_fraction)
    assert ds.num_val >= 4000 and ds.num_test >= 20_000
  for i in range(3):
    for j in range(i + 1, 3):
      assert not hashes[i] & hashes[j], (i, j)
