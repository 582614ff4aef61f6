"""The scaling study's smoke config end to end (tune writes a pre-registration listing every
cell, confirm reads it and decides every claim), and its slope measurement on a synthetic case."""

import math

import numpy as np
import pytest
import studies

from wd_jax.study import preregistration

scaling = studies.study("scaling")
scaling_config = studies.study("configs.scaling")


def _config(folder, phase):
  return studies.smoke_config("scaling", folder, phase)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  folder = tmp_path_factory.mktemp("scaling")
  tuned = scaling.run(_config(folder, "tune"), str(folder / "tune"))
  cfg = _config(folder, "confirm")
  confirmed = scaling.run(cfg, str(folder / "confirm"))
  return folder, cfg, tuned, confirmed


def test_preregistration_lists_every_cell(smoke):
  folder, cfg, tuned, _ = smoke
  assert tuned["findings"] == []  # the tune phase decides nothing
  prereg = preregistration.read(str(folder / "scaling.json"))
  cells = prereg.body["cells"]
  expected = {scaling.cell_name(r, n, w) for r in cfg.rules for n in cfg.sizes for w in cfg.widths}
  assert set(cells) == expected == set(prereg.body["selection"])
  for grid in cells.values():  # one lr per cell, λ a factor 2 apart around the tuned centre
    assert len(grid) == 2 * cfg.confirm_steps + 1
    assert len({c["learning_rate"] for c in grid}) == 1
    lams = [c["weight_decay"] for c in grid]
    np.testing.assert_allclose(np.diff(np.log2(lams)), 1.0)
  setup = prereg.body["tune"]["setup"]
  assert setup["epochs"] == cfg.epochs and setup["sizes"] == list(cfg.sizes)


def test_confirm_decides_every_claim(smoke):
  folder, cfg, _, out = smoke
  prereg = preregistration.read(str(folder / "scaling.json"))
  with open(folder / "confirm" / "summary.md") as f:
    summary = f.read()
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims)
  assert prereg.digest in summary
  assert "(scaling.png)" in summary
  identity = next(f for f in out["findings"] if f.claim.name == "tau_identity")
  assert identity.claim.kind == "construction" and identity.decision.verdict == "supported"
  assert out["values"]["fixed/size/lam_slope"].shape == (len(cfg.confirm.seeds),)


def test_confirm_refuses_without_a_preregistration(tmp_path):
  with pytest.raises(ValueError, match="tune phase"):
    scaling.run(_config(tmp_path, "confirm"), str(tmp_path / "confirm"))


def test_slopes_when_best_lambda_falls_as_one_over_size():
  """λ* ∝ 1/n at a fixed lr: τ*_epoch is constant, so b_τ(n) = 0 and b_λ(n) = −1 per seed."""
  cfg = scaling_config.get_config("default")
  seeds, batch, lr = len(cfg.confirm.seeds), cfg.run.batch_size, 4e-3
  est = {}
  for rule in cfg.rules:
    for n in cfg.sizes:
      for w in cfg.widths:
        # λ* ∝ 1/n (× width under the μP lr rule, whose lr ∝ 1/w), a per-seed offset shared by
        # every cell of that seed.
        eta = lr * (cfg.base_width / w if rule == "mup" else 1.0)
        log_lam = math.log(10.0 / n * (w / cfg.base_width if rule == "mup" else 1.0))
        log_lam = log_lam + np.arange(seeds) * 0.1
        est[scaling.cell_name(rule, n, w)] = {
          "rule": rule,
          "size": n,
          "width": w,
          "lr": eta,
          "log_lam": log_lam,
          "log_tau": scaling.log_tau_epoch(eta, log_lam, n / batch),
        }
  v = scaling.measure(cfg, est)
  for rule in cfg.rules:
    np.testing.assert_allclose(v[f"{rule}/size/lam_slope"], -1.0, atol=1e-9)
    np.testing.assert_allclose(v[f"{rule}/size/tau_slope"], 0.0, atol=1e-9)
    np.testing.assert_allclose(v[f"{rule}/size/nearer_zero"], 1.0, atol=1e-9)
    np.testing.assert_allclose(v[f"{rule}/size/toward_tau_constant"], 0.5, atol=1e-9)
    np.testing.assert_allclose(v[f"{rule}/size/identity"], 0.0, atol=1e-9)
    np.testing.assert_allclose(v[f"{rule}/width/tau_slope"], 0.0, atol=1e-9)
  np.testing.assert_allclose(v["mup/width/lam_slope"], 1.0, atol=1e-9)
  np.testing.assert_allclose(v["mup/width/toward_tau_constant"], 0.5, atol=1e-9)
  assert np.all(np.isnan(v["fixed/width/toward_tau_constant"]))  # the predictions meet at 0
  np.testing.assert_allclose(v["mup/width/lr_slope"], -1.0, atol=1e-9)
  np.testing.assert_allclose(v["fixed/width/lam_slope"], 0.0, atol=1e-9)


def test_best_lambda_is_the_quadratic_vertex():
  x = np.log(2.0) * np.arange(-3, 4)
  y = 0.7 - 0.01 * (x - 0.4) ** 2
  best, edge = scaling.best_log_lambda(x, y)
  assert math.isclose(best, 0.4, abs_tol=1e-9) and not edge
  best, edge = scaling.best_log_lambda(x, -x)  # falling: the argmax is the grid's first point
  assert best == x[0] and edge
  assert math.isnan(scaling.best_log_lambda(x, np.r_[y[:-1], np.nan])[0])
