"""The early/late weight-decay study's smoke config end to end: tune writes a pre-registration,
confirm reads it, runs the critical-period curve and decides every claim."""

import math

import numpy as np
import pytest
import studies

from wd_jax.engine.config import override
from wd_jax.study import preregistration

early_wd = studies.study("early_wd")


def _config(tmp_path, phase):
  return studies.smoke_config("early_wd", tmp_path, phase)


def test_smoke_tune_then_confirm(tmp_path):
  out = early_wd.run(_config(tmp_path, "tune"), str(tmp_path / "tune"))
  assert out["findings"] == []  # the tune phase decides nothing
  prereg = preregistration.read(str(tmp_path / "early_wd.json"))
  cells = prereg.body["cells"]
  assert set(cells) == {"none", "whole", "early_25", "early_50", "late_25", "late_50"}
  whole = cells["whole"][0]
  for arm in ("early_25", "late_50"):  # the curve runs at whole's tuned lr and λ
    assert cells[arm][0]["learning_rate"] == whole["learning_rate"]
    assert cells[arm][0]["weight_decay"] == whole["weight_decay"] > 0
  assert any("matched" in c["roles"] for c in cells["none"])
  received = prereg.body["tune"]["decay_received"]
  # The decay received splits at the switch: early@s + late@s = whole.
  assert math.isclose(received["early_25"] + received["late_25"], received["whole"], rel_tol=1e-6)
  assert received["late_50"] < received["late_25"] < received["whole"]

  cfg = _config(tmp_path, "confirm")
  out, summary, lines = studies.run_confirm(early_wd, cfg, tmp_path)
  assert prereg.digest in summary
  assert "(critical_period.png)" in summary
  assert len(lines) == sum(len(c) for c in cells.values()) * len(cfg.confirm.seeds)
  assert all(x["test_accuracy"] is not None for x in lines)  # every run's test read once
  v = out["values"]
  mid = 0.5 * (v["whole/test_accuracy"] + v["none@matched/test_accuracy"])
  np.testing.assert_allclose(v["early_25/above_midpoint"], v["early_25/test_accuracy"] - mid)
  assert v["early_25/test_accuracy"].shape == (3, 600)  # seeds × test items


def test_confirm_refuses_without_a_preregistration(tmp_path):
  with pytest.raises(ValueError, match="tune phase"):
    early_wd.run(_config(tmp_path, "confirm"), str(tmp_path / "confirm"))


@pytest.mark.parametrize(
  "change, message",
  [
    ({"switches": (0.25,)}, "late_50"),  # a claim reads an arm the switches do not make
    ({"claims.early_25_recovers_most.a": "early_25/recovery"}, "early_25/recovery"),
    ({"tune.learning_rates": ()}, "learning_rates"),
    ({"run.dataset.validation_fraction": 0.0}, "validation_fraction"),
  ],
)
def test_bad_configs_rejected_before_workdir(tmp_path, change, message):
  cfg = override(_config(tmp_path, "tune"), change)
  with pytest.raises(ValueError, match=message):
    early_wd.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
