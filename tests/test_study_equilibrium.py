"""The rotational-equilibrium study: smoke config end to end (tune pre-registers the settings,
confirm decides them), its window statistics on hand-made records, and its config checks."""

import math

import numpy as np
import pytest
import studies

from wd_jax.engine.config import override
from wd_jax.study import preregistration

equilibrium = studies.study("equilibrium")


def _config(tmp_path, phase):
  return studies.smoke_config("equilibrium", tmp_path, phase)


def test_smoke_tune_then_confirm(tmp_path):
  out = equilibrium.run(_config(tmp_path, "tune"), str(tmp_path / "tune"))
  assert out["findings"] == []
  body = preregistration.read(str(tmp_path / "equilibrium.json")).body
  assert {c["setting"] for cs in body["cells"].values() for c in cs} == {"adamw_a", "sgdm_a"}
  assert set(body["tune"]["diagnostics"]) == {"adamw_a", "sgdm_a"}

  cfg = _config(tmp_path, "confirm")
  out, summary, lines = studies.run_confirm(equilibrium, cfg, tmp_path)
  # The precondition, then angle and norm per setting, each decided.
  assert len(out["findings"]) == 1 + 2 * len(cfg.settings)
  assert "(equilibrium.png)" in summary
  assert len(lines) == len(cfg.settings) * len(cfg.confirm.seeds)
  v = out["values"]
  for name, *_ in cfg.settings:
    assert len(v[f"{name}/log_angle_ratio"]) == len(cfg.confirm.seeds)
    assert all(math.isfinite(x) for x in v[f"{name}/log_norm_ratio"])
  shares = np.array([v[f"{name}/free_decay_share"] for name, *_ in cfg.settings])
  np.testing.assert_allclose(v["all/max_free_decay_share_above_bound"], shares.max(0) - 0.1)


def _records(norms, angle=0.02, pred_angle=0.04, pred_norm=2.0):
  """The keys the train step and the run record write for one scale-invariant leaf."""
  p = "hidden/0/kernel"
  return [
    {
      "step": t,
      f"angular_update/{p}": angle,
      f"pred_angular_update/{p}": pred_angle,
      f"param_norm/{p}": n,
      f"pred_norm/{p}": pred_norm,
      f"grad_norm_unit/{p}": 0.5,
    }
    for t, n in zip((10, 20, 30), norms)
  ]


def test_window_statistics_by_hand():
  cfg = studies.smoke_config("equilibrium")
  cfg.run.steps, cfg.window = 30, 0.9
  row = {"records": _records((4.0, 3.0, 2.0))}
  s = equilibrium.window_stats(cfg, row, shrink=0.1)
  assert s["log_angle_ratio"] == pytest.approx(math.log(0.5))
  assert s["log_norm_ratio"] == pytest.approx(math.log(3.0 / 2.0))
  assert s["log_norm_drift"] == pytest.approx(math.log(2.0 / 4.0))
  # log(3/4) = −0.29 and log(2/3) = −0.41 per 10 steps vs 0.75·10·log(0.9) = −0.79: not free.
  assert s["free_decay_share"] == 0.0
  # 0.75·10·log(0.97) = −0.23: both intervals fell faster than that: free decay.
  assert equilibrium.window_stats(cfg, row, shrink=0.03)["free_decay_share"] == 1.0


@pytest.mark.parametrize(
  "change, message",
  [
    ({"run.optimizer.lr_schedule": "cosine"}, "constant"),
    ({"settings": (("x", "adamx", 0.1, 1.0),)}, "adamx"),
    ({"settings": (("x", "adamw", 0.1, 0.0),)}, "λ > 0"),
    ({"settings": (("x", "adamw", 1e-3, 1e-3),)}, "timescales"),  # αλT = 6e-5: no equilibrium
    ({"optimizers.adamw.name": "lion"}, "prediction"),
    ({"window": 1.5}, "window"),
    ({"claims.adamw_a_angle.a": "adamw_a/angle_ratio"}, "adamw_a/angle_ratio"),
  ],
)
def test_bad_configs_rejected_before_workdir(tmp_path, change, message):
  cfg = override(_config(tmp_path, "tune"), change)
  with pytest.raises(ValueError, match=message):
    equilibrium.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
