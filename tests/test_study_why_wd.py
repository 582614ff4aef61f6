"""The why-weight-decay study: the vision smoke config end to end (tune writes a
pre-registration, confirm reads it and decides every claim), the crossover and stabilisation
measurements on synthetic curves whose answer is known (both ways), and the refusals."""

import json
import math
import os
import sys

import numpy as np
import pytest

from wd_jax.study import claims as claims_lib
from wd_jax.study import preregistration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import why_wd  # noqa: E402
from configs import why_wd as why_wd_config  # noqa: E402


def _config(tmp, variant, phase):
  cfg = why_wd_config.get_config(variant)
  cfg.preregistration = str(tmp / f"why_wd_{variant}.json")
  cfg.phase = phase
  return cfg


@pytest.fixture(scope="module")
def vision(tmp_path_factory):
  """The smoke vision study, tuned then confirmed once."""
  tmp = tmp_path_factory.mktemp("why_wd")
  tuned = why_wd.run(_config(tmp, "smoke_vision", "tune"), str(tmp / "tune"))
  cfg = _config(tmp, "smoke_vision", "confirm")
  out = why_wd.run(cfg, str(tmp / "confirm"))
  return tmp, cfg, tuned, out


def test_smoke_tune_then_confirm(vision):
  tmp, cfg, tuned, out = vision
  assert tuned["findings"] == []  # the tune phase decides nothing
  prereg = preregistration.read(cfg.preregistration)
  cells = prereg.body["cells"]
  assert set(cells) == {"none", "decay"}
  decay = cells["decay"][0]
  assert decay["weight_decay"] > 0
  matched = [c for c in cells["none"] if "matched" in c["roles"]]
  assert matched and matched[0]["learning_rate"] == decay["learning_rate"]
  with open(tmp / "confirm" / "summary.md") as f:
    summary = f.read()
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims)
  assert prereg.digest in summary
  assert "(vision_train_loss.png)" in summary
  with open(tmp / "confirm" / "metrics.jsonl") as f:
    lines = [json.loads(x) for x in f]
  assert len(lines) == sum(len(c) for c in cells.values()) * len(cfg.confirm.seeds)
  assert all(x["test_accuracy"] is not None for x in lines)  # every run's test read once
  v = out["values"]
  assert v["vision/decay/test_accuracy"].shape == (3, 600)  # seeds × test items
  gain = lambda w: v[f"vision/decay/val_accuracy@{w}"] - v[f"vision/none@matched/val_accuracy@{w}"]
  np.testing.assert_allclose(v["vision/gain_growth"], gain("end") - gain("drop"))
  np.testing.assert_allclose(v["vision/gain@drop_minus_tolerance"], gain("drop") - cfg.tolerance)
  assert np.isfinite(v["vision/decay/val_accuracy@drop"]).all()  # evaluated at the drop


def test_confirm_refuses_without_a_preregistration(tmp_path):
  for variant in ("smoke", "smoke_vision"):
    with pytest.raises(ValueError, match="tune phase"):
      why_wd.run(_config(tmp_path, variant, "confirm"), str(tmp_path / variant))


def test_bf16_is_a_documented_design_that_refuses_to_run(tmp_path):
  with pytest.raises(ValueError, match="no dtype"):
    why_wd.run(_config(tmp_path, "bf16", "tune"), str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()


# ----------------------------------------------------------------------------------------------
# The measurements on synthetic curves.

T = 100
STEPS = np.arange(1, T + 1)


def _records(curve):
  return [{"step": int(s), "loss": float(y)} for s, y in zip(STEPS, curve)]


def test_drop_schedule_and_old_records():
  """The engine's "drop" lr schedule: the peak until lr_drop_fraction of the steps, then ×
  lr_drop_factor; a pre-registration written before these fields existed still matches."""
  from wd_jax.engine import config as config_lib

  c = config_lib.base_config()
  c.steps, c.optimizer.learning_rate, c.optimizer.lr_schedule = 10, 0.4, "drop"
  c.optimizer.lr_drop_fraction, c.optimizer.lr_drop_factor = 0.3, 0.25
  config_lib.validate(c)
  lr = [float(config_lib.learning_rate_schedule(c)(t)) for t in range(10)]
  np.testing.assert_allclose(lr, [0.4] * 3 + [0.1] * 7)
  for field in ("lr_drop_fraction", "lr_drop_factor"):
    assert (
      config_lib.ABSENT_MEANS[f"optimizer.{field}"] == config_lib.base_config().optimizer[field]
    )
  c.optimizer.lr_drop_factor = 1.5
  with pytest.raises(ValueError, match="lr_drop_factor"):
    config_lib.validate(c)


def test_window_mean_and_value_at():
  recs = _records(STEPS.astype(float))
  assert why_wd.window_mean(recs, 20, 50) == pytest.approx(np.mean(np.arange(21, 51)))
  assert math.isnan(why_wd.window_mean(recs, 200, 300))
  assert why_wd.value_at(recs, 7, "loss") == 7.0
  assert math.isnan(why_wd.value_at(recs, 7, "val_accuracy"))


BASE = 3.0 - 2.0 * STEPS / T  # λ = 0: the loss falls linearly
CROSSING = BASE + 0.3 * np.cos(np.pi * STEPS / T)  # above early, below late; crosses at T/2


def test_crossover_found_where_it_is_and_not_where_it_is_not():
  at = why_wd.crossover(STEPS, CROSSING, BASE, smooth=1)
  assert at == pytest.approx(T / 2 + 1, abs=1)
  assert math.isnan(why_wd.crossover(STEPS, BASE + 0.1, BASE))  # always above: no crossing
  assert math.isnan(why_wd.crossover(STEPS, BASE - 0.1, BASE))  # always below: never above
  mirrored = BASE - 0.3 * np.cos(np.pi * STEPS / T)  # below early, above late
  assert math.isnan(why_wd.crossover(STEPS, mirrored, BASE))


def _lm_rows(decayed_curves, base_curves, seeds):
  """Synthetic confirm rows of the LM study: none (tuned = matched) and two decayed arms."""
  cells = {
    "none": [
      {
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "tau_over_T": None,
        "roles": ["tuned", "matched"],
      }
    ],
    "moderate": [
      {"learning_rate": 1e-3, "weight_decay": 1.0, "tau_over_T": 1.0, "roles": ["tuned"]}
    ],
    "large": [
      {"learning_rate": 1e-3, "weight_decay": 3.0, "tau_over_T": 1 / 3, "roles": ["tuned"]}
    ],
  }
  rows = {}
  for arm, arm_cells in cells.items():
    c = arm_cells[0]
    curves = base_curves if arm == "none" else decayed_curves
    rows[arm] = [
      {
        "learning_rate": c["learning_rate"],
        "weight_decay": c["weight_decay"],
        "seed": s,
        "diverged": False,
        "records": _records(y),
        "test_items": {"loss": np.full(50, y[-1]) + np.linspace(-0.1, 0.1, 50)},
      }
      for s, y in zip(seeds, curves)
    ]
  return rows, cells


@pytest.mark.parametrize("crossing", [True, False])
def test_lm_claims_decided_on_synthetic_curves(tmp_path, crossing):
  cfg = _config(tmp_path, "smoke", "confirm")
  cfg.run.steps = T
  seeds = list(cfg.confirm.seeds)
  rng = np.random.default_rng(0)
  noise = lambda: 0.01 * rng.standard_normal(T)
  base = [BASE + noise() for _ in seeds]
  # Crossing: above λ = 0 in the early window, below it at the end (the paper's shape); the
  # other way: below early, above late (its mirror image).
  sign = 1.0 if crossing else -1.0
  decayed = [BASE + sign * 0.3 * np.cos(np.pi * STEPS / T) + noise() for _ in seeds]
  rows, cells = _lm_rows(decayed, base, seeds)
  values = why_wd.measure(cfg, rows, cells)
  found = {f.claim.name: f for f in claims_lib.decide(claims_lib.parse(cfg.claims), values)}
  verdict = lambda name: found[name].decision.verdict
  expect = "supported" if crossing else "not supported"
  for name in ("moderate_higher_before_decay", "moderate_lower_at_end", "held_out_loss_lower"):
    assert verdict(name) == expect, (name, verdict(name))


def test_stabilisation_window_on_synthetic_curves():
  """A decayed run whose loss plateaus during the large-lr phase against one that keeps falling
  to ~0: the window mean separates them, and the plateau sits above the floor; the other way
  round it does not."""
  falling = np.exp(-STEPS / 10.0)
  plateau = np.where(STEPS <= 50, 0.4, 0.4 * np.exp(-(STEPS - 50) / 5.0))
  w = lambda y: why_wd.window_mean(_records(y), 25, 50)
  assert w(plateau) - w(falling) > 0.3 and w(plateau) > 0.05
  assert w(falling) < 0.05
