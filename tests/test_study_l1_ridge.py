"""Studies 5 (L1 vs L2 sparsity) and 6 (ridge / MAP) end to end on their smoke configs."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wd_jax.engine import data as data_lib
from wd_jax.engine import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import l1_vs_l2  # noqa: E402
import ridge  # noqa: E402
from configs import l1_vs_l2 as l1_config  # noqa: E402
from configs import ridge as ridge_config  # noqa: E402


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


def test_ridge_smoke_end_to_end(tmp_path):
  cfg = ridge_config.get_config("smoke")
  workdir = str(tmp_path / "ridge")
  out = ridge.run(cfg, workdir)
  lines = _outputs(workdir, out, num_pngs=4)
  assert len(out["findings"]) == len(cfg.claims) == 4
  assert len(lines) == (len(cfg.optimizers) + 1) * len(cfg.weight_decays) * len(cfg.seeds)
  # Trained through the sweep engine: one sweep per seed, one run directory per (optimizer, λ).
  trained = [x for x in lines if x["optimizer"] != "closed_form"]
  assert all(os.path.exists(os.path.join(workdir, x["run_dir"], "metrics.jsonl")) for x in trained)
  # float64 full-batch SGD + L2 lands on the closed form; the closed form is the MAP.
  assert all(x["final_distance"] < 1e-10 for x in lines if x["optimizer"] == "sgd_l2")
  assert all(x["map_grad_rel"] < 1e-10 for x in lines if x["optimizer"] == "closed_form")
  assert all(x["map_grad_rel_control"] > 1e-3 for x in lines if x["optimizer"] == "closed_form")
  gap = cfg.claims.adamw_misses_ridge.margin
  assert all(x["final_distance"] > gap for x in lines if x["optimizer"] == "adamw")
  verdicts = {f.claim.name: f.decision.verdict for f in out["findings"]}
  assert verdicts["sgd_l2_reaches_ridge"] == verdicts["ridge_is_map"] == "supported"
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  built_in = summary[summary.index("## True by construction") :]
  assert "**sgd_l2_reaches_ridge**" in built_in and "**ridge_is_map**" in built_in
  assert "**adamw_misses_ridge**" not in built_in
  assert "No hyperparameter is selected" in summary


def test_ridge_engine_loss_and_model_give_the_ridge_fixed_point():
  """The engine's regression loss on the study's model is ½‖Xθ − y‖²/n, so gradient + λθ
  vanishes exactly at `ridge_solution`: the fixed point coupled L2 must reach."""
  cfg = ridge_config.get_config("smoke")
  lam = 0.1
  with jax.enable_x64(True):
    p = ridge.problem(cfg, 0)
    model = ridge.LinearModel(cfg.data.dim, nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    (leaf,) = jax.tree.leaves(params)  # θ only: no bias
    assert leaf.dtype == jnp.float64 and leaf.shape == (cfg.data.dim,)
    x, y = jnp.asarray(p["x"]), jnp.asarray(p["y"])

    def loss(params):
      return train.loss_and_metrics("regression", nnx.merge(graphdef, params)(x), y)[0]

    theta = jnp.asarray(data_lib.ridge_solution(p["x"], p["y"], lam))
    at_ridge = jax.tree.map(lambda _: theta, params)
    value, grad = jax.value_and_grad(loss)(at_ridge)
    (g,) = jax.tree.leaves(grad)
    r = p["x"] @ np.asarray(theta) - p["y"]
    np.testing.assert_allclose(float(value), 0.5 * r @ r / len(r), rtol=1e-14)
    assert float(jnp.linalg.norm(g + lam * theta)) < 1e-14
    assert float(jnp.linalg.norm(g)) > 1e-3  # λθ* is not small: the check is not vacuous
  # The eigendecomposed ridge path is the closed form at every λ'.
  lams = np.array([0.0, 1e-3, 0.1, 10.0])
  want = np.stack([data_lib.ridge_solution(p["x"], p["y"], v) for v in lams])
  np.testing.assert_allclose(ridge.ridge_path(p, lams), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
  "module, config, field, value",
  [
    (l1_vs_l2, l1_config, "methods", ("prox_l1", "l0")),
    (l1_vs_l2, l1_config, "weight_decays", (0.0, 1e-3)),
    (l1_vs_l2, l1_config, "seeds", (0, 0)),
    (ridge, ridge_config, "optimizers", ("sgd_l2", "lbfgs")),
    (ridge, ridge_config, "weight_decays", (0.0, 0.1)),
    (ridge, ridge_config, "seeds", (0, 0)),
    (ridge, ridge_config, "strategy", "processes"),
  ],
)
def test_bad_config_rejected_before_workdir(tmp_path, module, config, field, value):
  cfg = config.get_config("smoke")
  cfg[field] = value
  with pytest.raises(ValueError, match=field):
    module.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
  "change, message",
  [
    (lambda c: setattr(c.data, "num_examples", 8), "num_examples"),  # fewer points than dim
    (lambda c: setattr(c.learning_rates, "adamw", 0.0), "learning_rates.adamw"),
    (lambda c: setattr(c.claims.adamw_misses_ridge, "a", "adamw/nope"), "adamw/nope"),
    # A claim about an optimizer the config does not run is refused, not left undecided.
    (lambda c: setattr(c, "optimizers", ("sgd_l2", "adamw")), "adam_l2/max_distance"),
  ],
)
def test_ridge_bad_config_or_claim_rejected_before_workdir(tmp_path, change, message):
  cfg = ridge_config.get_config("smoke")
  change(cfg)
  with pytest.raises(ValueError, match=message):
    ridge.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
