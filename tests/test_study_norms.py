"""The norms study's smoke config end to end (tune writes a pre-registration, confirm reads it),
and its random labels."""

import numpy as np
import pytest
import studies

from wd_jax.engine.config import override
from wd_jax.study import preregistration

norms = studies.study("norms")


def _config(tmp_path, phase):
  return studies.smoke_config("norms", tmp_path, phase)


def test_random_labels_replace_every_training_label_and_keep_the_test_labels():
  cfg = studies.smoke_config("norms")
  true, rand = (norms.dataset(cfg, arm, "confirm") for arm in ("true_none", "random_none"))
  again = norms.dataset(cfg, "random_early", "confirm")
  np.testing.assert_array_equal(rand.y_train, again.y_train)  # one draw, shared by the arms
  np.testing.assert_array_equal(rand.y_test, true.y_test)
  np.testing.assert_array_equal(rand.x_train, true.x_train)
  agree = float(np.mean(np.asarray(rand.y_train) == np.asarray(true.y_train)))
  assert agree < 0.2  # uniform over 10 classes: ~10% agree by chance
  assert sorted(set(np.asarray(rand.y_train).tolist())) == list(range(10))


def test_smoke_tune_then_confirm(tmp_path):
  out = norms.run(_config(tmp_path, "tune"), str(tmp_path / "tune"))
  assert out["findings"] == []
  cells = preregistration.read(str(tmp_path / "norms.json")).body["cells"]
  assert set(cells) == set(norms.ARMS)
  lr = {cells[a][0]["learning_rate"] for a in norms.ARMS}
  assert len(lr) == 1  # every arm at the tuned lr
  assert cells["true_early"][0]["weight_decay"] == cells["random_early"][0]["weight_decay"] > 0
  assert cells["true_none"][0]["weight_decay"] == cells["random_none"][0]["weight_decay"] == 0.0

  cfg = _config(tmp_path, "confirm")
  out, summary, lines = studies.run_confirm(norms, cfg, tmp_path)
  assert "(norms_and_sharpness.png)" in summary
  assert len(lines) == len(norms.ARMS) * len(cfg.confirm.seeds)
  for x in lines:
    assert x["test_accuracy"] is not None and x["sharpness"] > 0 and x["abs_sharpness"] > 0
  v = out["values"]
  assert v["true_none/test_accuracy"].shape == (3, 600)  # seeds × test items
  low = np.minimum(v["random_none/log_sharpness"], v["random_early/log_sharpness"])
  high = np.maximum(v["true_none/log_sharpness"], v["true_early/log_sharpness"])
  np.testing.assert_allclose(v["labels/sharpness_separation"], low - high)


@pytest.mark.parametrize(
  "change, message",
  [
    ({"sharpness.radius": 0.0}, "radius"),
    ({"switch": 1.5}, "switch"),
    ({"claims.raw_norm_misses_labels.a": "labels/norm_gap"}, "labels/norm_gap"),
  ],
)
def test_bad_configs_rejected_before_workdir(tmp_path, change, message):
  cfg = override(_config(tmp_path, "tune"), change)
  with pytest.raises(ValueError, match=message):
    norms.run(cfg, str(tmp_path / "never"))
  assert not (tmp_path / "never").exists()
