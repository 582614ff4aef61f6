"""The training engine end to end: accuracy, kill-and-resume, bad config, divergence."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from wd_jax.engine import data as data_lib
from wd_jax.engine import train
from wd_jax.engine.config import override
from wd_jax.engine.runlog import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
from configs import mnist1d_cnn, mnist1d_mlp  # noqa: E402


def _smoke(**overrides):
  return override(mnist1d_mlp.get_config("smoke"), overrides)


def _read(path):
  with open(path) as f:
    return f.read()


def _restore_params(workdir, step):
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as mngr:
    return mngr.restore(step)["state"]["params"]


def test_smoke_run_writes_every_output(tmp_path):
  workdir = str(tmp_path / "run")
  result = train.fit(_smoke(), workdir, verbose=False)
  for name in ("config.json", "metrics.jsonl", "summary.md", "checkpoints", "tensorboard"):
    assert os.path.exists(os.path.join(workdir, name)), name
  records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [20, 40]
  for key in (
    "loss",
    "accuracy",
    "param_norm",
    "grad_norm",
    "update_norm",
    "learning_rate",
    "weight_decay",
    "steps_per_sec",
    "test_accuracy",
    "angular_update/hidden/0/kernel",
  ):
    assert key in records[-1], key
  assert np.isfinite(result["test_accuracy"])
  assert json.loads(_read(os.path.join(workdir, "config.json")))["optimizer"]["name"] == "adamw"
  assert "completed" in _read(os.path.join(workdir, "summary.md"))


def test_same_seed_same_result(tmp_path):
  a = train.fit(_smoke(), str(tmp_path / "a"), verbose=False)
  b = train.fit(_smoke(), str(tmp_path / "b"), verbose=False)
  c = train.fit(_smoke(seed=1), str(tmp_path / "c"), verbose=False)
  assert a["loss"] == b["loss"] and a["test_accuracy"] == b["test_accuracy"]
  assert a["loss"] != c["loss"]


def test_l2_share_logged_for_tracked_adam(tmp_path):
  cfg = _smoke(**{"optimizer.name": "adam_l2", "optimizer.weight_decay": 0.1})
  cfg.optimizer.kwargs = {"track_moments": True}
  train.fit(cfg, str(tmp_path / "r"), verbose=False)
  last = read_metrics(str(tmp_path / "r" / "metrics.jsonl"))[-1]
  assert 0.0 < last["l2_share"] < 1.0
  assert "l2_share/hidden/0/kernel" in last


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("optimizer.weight_decay", -1.0, "weight_decay"),
    ("optimizer.learning_rate", 0.0, "learning_rate"),
    ("optimizer.name", "adamx", "optimizer.name"),
    ("dataset.name", "imagenet", "dataset.name"),
    ("steps", 0, "config.steps"),
    ("optimizer.lr_schedule", "step", "lr_schedule"),
  ],
)
def test_bad_config_rejected_before_workdir_exists(tmp_path, field, value, message):
  workdir = tmp_path / "never"
  with pytest.raises(ValueError, match=message):
    train.fit(_smoke(**{field: value}), str(workdir), verbose=False)
  assert not workdir.exists()


def test_corrupt_cifar_file_clear_error_and_no_workdir(tmp_path):
  data_dir = tmp_path / "cifar"
  data_dir.mkdir()
  for name in data_lib.CIFAR10_TRAIN_FILES + data_lib.CIFAR10_TEST_FILES:
    (data_dir / name).write_bytes(b"\x01" * 3073 * 2)
  (data_dir / "data_batch_3.bin").write_bytes(b"\x01" * 3000)  # truncated
  cfg = _smoke(**{"dataset.name": "cifar10", "model.name": "resnet"})
  cfg.dataset.kwargs = {"data_dir": str(data_dir)}
  with pytest.raises(ValueError, match=r"data_batch_3\.bin"):
    train.fit(cfg, str(tmp_path / "never"), verbose=False)
  assert not (tmp_path / "never").exists()


def test_existing_workdir_needs_resume(tmp_path):
  train.fit(_smoke(), str(tmp_path / "r"), verbose=False)
  with pytest.raises(ValueError, match="--resume"):
    train.fit(_smoke(), str(tmp_path / "r"), verbose=False)
  with pytest.raises(ValueError, match="different config"):
    train.fit(_smoke(seed=3), str(tmp_path / "r"), resume=True, verbose=False)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
  # Decoupled "constant" decay of 1e30 from step 10 on sends θ to inf within a few steps.
  cfg = _smoke(
    **{
      "optimizer.name": "sgdw",
      "optimizer.learning_rate": 0.01,
      "optimizer.weight_decay": 1e30,
      "optimizer.wd_schedule": "late",
      "optimizer.lr_schedule": "constant",
      "steps": 40,
      "log_every": 5,
      "diagnostics_every": 0,
      "checkpoint_every": 5,
      "eval_every": 40,
    }
  )
  cfg.optimizer.kwargs = {"coupling": "constant"}
  cfg.optimizer.wd_switch_fraction = 0.25
  workdir = str(tmp_path / "r")
  result = train.fit(cfg, workdir, verbose=False)
  assert result["diverged"] and result["diverged_at_step"] <= 15
  assert result["last_checkpoint_step"] == 10
  summary = _read(os.path.join(workdir, "summary.md"))
  assert "diverged" in summary and "last good checkpoint: step 10" in summary
  params = _restore_params(workdir, 10)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))


def test_mnist1d_cnn_default_config_reaches_85_percent(tmp_path):
  result = train.fit(mnist1d_cnn.get_config(), str(tmp_path / "cnn"), verbose=False)
  assert result["test_accuracy"] >= 0.85, result["test_accuracy"]


def test_an_unused_mask_rule_names_the_config_field_that_allows_it(tmp_path):
  cfg = _smoke(**{"optimizer.mask": "rules", "optimizer.mask_rules": (("nothing.*", 0.0),)})
  with pytest.raises(ValueError, match=r"config.optimizer.allow_unused_mask_rules=True"):
    train.build(cfg)
  cfg.optimizer.allow_unused_mask_rules = True
  assert train.build(cfg).init_state is not None


def test_the_tutorial_creates_its_output_directory(tmp_path, monkeypatch):
  """Its first code cell (imports and the output directory) as `python docs/tutorial.py DIR`
  runs it; the training cells after it are run end to end by tests/test_docs.py."""
  with open(os.path.join(ROOT, "docs", "tutorial.py")) as f:
    first_cell = f.read().split("# %%")[2]
  out = tmp_path / "new" / "dir"
  monkeypatch.setattr(sys, "argv", ["tutorial.py", str(out)])
  exec(compile(first_cell, "docs/tutorial.py", "exec"), {"__name__": "tutorial"})
  assert out.is_dir()
