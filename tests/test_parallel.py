"""Data parallel (pmap, sharded jit, two processes) gives the single-device result."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from wd_jax import parallel, train
from wd_jax.runlog import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
from configs import digits_resnet, mnist1d_mlp  # noqa: E402


def _mlp(parallel_strategy, **kw):
  c = mnist1d_mlp.get_config("smoke")
  c.optimizer.name = "adam_l2"
  c.optimizer.weight_decay = 0.05
  c.optimizer.kwargs = {"track_moments": True}
  c.parallel = parallel_strategy
  for k, v in kw.items():
    c[k] = v
  return c


def _resnet(parallel_strategy):
  c = digits_resnet.get_config("smoke")
  c.steps = 20
  c.log_every = c.diagnostics_every = 10
  c.eval_every = c.checkpoint_every = 20
  c.batch_size = 64
  c.parallel = parallel_strategy
  return c


def _assert_params_close(a, b, rtol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * 1e-2)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
  d = tmp_path_factory.mktemp("single")
  return {
    "mlp": train.fit(_mlp("none"), str(d / "mlp"), verbose=False),
    "resnet": train.fit(_resnet("none"), str(d / "resnet"), verbose=False),
    "dir": d,
  }


@pytest.mark.parametrize("strategy", ["pmap", "sharded"])
@pytest.mark.parametrize("model", ["mlp", "resnet"])
def test_data_parallel_equals_single_device(tmp_path, single, strategy, model):
  assert jax.local_device_count() == 4
  cfg = _mlp(strategy) if model == "mlp" else _resnet(strategy)
  got = train.fit(cfg, str(tmp_path / "run"), verbose=False)
  ref = single[model]
  # float32: the batch mean is reduced in a different order across 4 devices.
  _assert_params_close(got["state"].params, ref["state"].params, rtol=2e-4)
  _assert_params_close(got["state"].rest, ref["state"].rest, rtol=2e-4)  # BatchNorm statistics
  run = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
  base = read_metrics(str(single["dir"] / model / "metrics.jsonl"))
  assert [r["step"] for r in run] == [r["step"] for r in base]
  keys = [
    k for k in base[-1] if k.startswith(("loss", "param_norm", "l2_share", "angular", "test_"))
  ]
  assert any(k.startswith("l2_share") for k in keys) == (model == "mlp")
  for k in keys:
    np.testing.assert_allclose(run[-1][k], base[-1][k], rtol=2e-3, atol=1e-6, err_msg=k)


def test_indivisible_batch_rejected_before_workdir(tmp_path):
  with pytest.raises(ValueError, match=r"batch_size 130 is not divisible by the 4 devices"):
    train.fit(_mlp("pmap", batch_size=130), str(tmp_path / "never"), verbose=False)
  assert not (tmp_path / "never").exists()


def test_unknown_strategy():
  with pytest.raises(ValueError, match=r"parallel.*'tpu-magic'"):
    parallel.DataParallel("tpu-magic")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_together_like_one(tmp_path, single):
  """Two processes with 2 CPU devices each form one 4-device mesh over 127.0.0.1."""
  port = _free_port()
  workdir = str(tmp_path / "multi")
  cmd = [
    sys.executable,
    os.path.join(ROOT, "experiments", "train.py"),
    f"--config={os.path.join(ROOT, 'experiments/configs/mnist1d_mlp.py')}:smoke",
    f"--workdir={workdir}",
    "--config.parallel=sharded",
    "--config.optimizer.name=adam_l2",
    "--config.optimizer.weight_decay=0.05",
    f"--coordinator_address=127.0.0.1:{port}",
    "--num_processes=2",
  ]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  procs = [
    subprocess.Popen(
      [*cmd, f"--process_id={i}"],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
  ref_cfg = _mlp("none")
  ref_cfg.optimizer.kwargs = {}
  ref = train.fit(ref_cfg, str(tmp_path / "ref"), verbose=False)
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as mngr:
    got = mngr.restore(mngr.latest_step())["params"]
  _assert_params_close(got, ref["state"].params, rtol=2e-4)
