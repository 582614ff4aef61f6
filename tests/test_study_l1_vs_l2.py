"""The L1 vs L2 study: its pruning and support scores by hand, and its smoke config end to end
(tune writes a pre-registration, confirm reads it)."""

import json

import numpy as np
import pytest
import studies

from wd_jax.engine.config import override
from wd_jax.study import preregistration

l1_vs_l2 = studies.study("l1_vs_l2")


def _config(path, phase):
  return studies.smoke_config("l1_vs_l2", path, phase)


def test_pruning_zeroes_the_smallest_kernel_weights_globally_and_never_a_bias():
  params = {
    "a": {"kernel": np.array([[0.1, -3.0], [0.5, 2.0]]), "bias": np.array([0.0001, 0.2])},
    "b": {"kernel": np.array([[-0.2], [4.0]])},
  }
  out = l1_vs_l2.prune(params, 0.5)  # 3 of the 6 kernel weights: 0.1, -0.2, 0.5
  np.testing.assert_array_equal(out["a"]["kernel"], [[0.0, -3.0], [0.0, 2.0]])
  np.testing.assert_array_equal(out["b"]["kernel"], [[0.0], [4.0]])
  np.testing.assert_array_equal(out["a"]["bias"], params["a"]["bias"])
  assert l1_vs_l2.zero_fraction(out) == 0.5
  assert l1_vs_l2.zero_fraction(params) == 0.0  # the bias's near-zero is not counted


def test_support_scores_by_hand():
  theta = np.array([0.0, 2.0, 0.0, -0.5, 0.1, 0.0])
  support = np.array([1, 2, 3])
  # lasso: its nonzeros {1, 3, 4}: 2 hits, F1 = 2·2/(3 + 3); top 3 by |θ| = {1, 3, 4}
  got = l1_vs_l2.support_scores(theta, support, 3, "lasso")
  assert got == {"support_f1": 4 / 6, "precision_at_k": 2 / 3, "support_size": 3}
  # ridge: its top 2 {1, 3}: 2 hits of 2 chosen and 3 true
  got = l1_vs_l2.support_scores(theta, support, 2, "ridge")
  assert got == {"support_f1": 4 / 5, "precision_at_k": 1.0, "support_size": 2}


def test_a_teacher_draw_has_k_nonzero_weights_and_is_fresh_per_seed():
  cfg = studies.smoke_config("l1_vs_l2")
  t = cfg.teacher
  p = l1_vs_l2.teacher_problem(t, 1, 0)
  assert p["x"].shape == (t.num_train, t.dim) and p["x_val"].shape == (t.num_val, t.dim)
  assert len(p["support"]) == t.nonzeros
  q = l1_vs_l2.teacher_problem(t, 2, 0)
  assert not np.array_equal(p["x"], q["x"])


@pytest.fixture(scope="module")
def both_phases(tmp_path_factory):
  path = tmp_path_factory.mktemp("l1")
  tuned = l1_vs_l2.run(_config(path, "tune"), str(path / "tune"))
  cfg = _config(path, "confirm")
  out = l1_vs_l2.run(cfg, str(path / "confirm"))
  return path, tuned, cfg, out


def test_smoke_tune_preregisters_the_four_arms(both_phases):
  path, tuned, cfg, _ = both_phases
  assert tuned["findings"] == []
  body = preregistration.read(str(path / "l1_vs_l2.json")).body
  assert set(body["cells"]) == {"prox_l1", "l2", "lasso", "ridge"}
  prox = body["cells"]["prox_l1"][0]["weight_decay"]
  assert body["tune"]["prox_sparsity"][f"{prox:g}"] >= cfg.min_sparsity
  assert body["tune"]["teacher"] == cfg.teacher.to_dict()


def test_smoke_confirm_matches_sparsity_per_seed_and_decides_every_claim(both_phases):
  path, _, cfg, out = both_phases
  workdir = path / "confirm"
  with open(workdir / "summary.md") as f:
    summary = f.read()
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims)
  built_in = summary[summary.index("## True by construction") :]
  assert "**prox_exact_zeros**" in built_in and "**sparsity_matched**" in built_in
  assert "**prox_beats_pruned_l2**" not in built_in
  assert "(l1_vs_l2.png)" in summary
  v = out["values"]
  n = len(cfg.confirm.seeds)
  assert v["prox_l1/test_accuracy"].shape == v["l2_pruned/test_accuracy"].shape == (n, 600)
  np.testing.assert_allclose(v["l2_pruned/zero_fraction"], v["prox_l1/zero_fraction"], atol=1e-3)
  assert np.all(v["prox_l1/zero_fraction"] > 0)
  assert np.all(v["ridge/support_size"] == cfg.teacher.nonzeros)
  np.testing.assert_array_equal(v["ridge/support_f1"], v["ridge/precision_at_k"])
  with open(workdir / "metrics.jsonl") as f:
    lines = [json.loads(x) for x in f]
  assert len(lines) == 2 * n and all(x["test_accuracy"] is not None for x in lines)


@pytest.mark.parametrize(
  "phase, change, message",
  [
    ("tune", {"min_sparsity": 0.0}, "min_sparsity"),
    ("tune", {"teacher.nonzeros": 0}, "nonzeros"),
    ("tune", {"claims.lasso_support_f1.a": "lasso/recall"}, "lasso/recall"),
    ("confirm", {"teacher.noise": 0.9}, "teacher"),
  ],
)
def test_bad_configs_rejected_before_workdir(both_phases, tmp_path, phase, change, message):
  path = both_phases[0]
  cfg = override(_config(path, phase), change)
  with pytest.raises(ValueError, match=message):
    l1_vs_l2.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
