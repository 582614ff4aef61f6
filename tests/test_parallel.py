"""Data parallel (pmap, sharded jit, two processes) gives the single-device result."""

import functools
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import studies

from wd_jax.engine import parallel, train
from wd_jax.engine.runlog import read_metrics

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


def test_data_parallel_equals_single_device_in_float64(tmp_path):
  """float64 MLP: only the order of the batch-mean reduction differs between the strategies."""
  with jax.enable_x64(True):
    runs = {}
    for strategy in ("none", "pmap", "sharded"):
      cfg = _mlp(strategy)
      cfg.model.kwargs = dict(cfg.model.kwargs) | {"dtype": "float64"}
      runs[strategy] = train.fit(cfg, str(tmp_path / strategy), verbose=False)
  ref = runs["none"]["state"].params
  assert all(x.dtype == np.float64 for x in jax.tree.leaves(ref))
  for strategy in ("pmap", "sharded"):
    got = runs[strategy]["state"].params
    # Measured after 40 Adam+L2 steps: max |Δθ| 8e-17, max relative 1.5e-13 (the same run in
    # float32: 3e-8 and 1.9e-4).
    _assert_params_close(got, ref, rtol=1e-11)
    assert runs[strategy]["loss"] == pytest.approx(runs["none"]["loss"], rel=1e-12)


def test_float64_model_needs_x64():
  cfg = _mlp("none")
  cfg.model.kwargs = dict(cfg.model.kwargs) | {"dtype": "float64"}
  with pytest.raises(ValueError, match="dtype='float64' needs 64-bit mode"):
    train.build(cfg)


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


def _launch_two(workdir, *extra, devices_per_process=2):
  """Two processes with `devices_per_process` CPU devices each: one mesh over 127.0.0.1."""
  port = _free_port()
  cmd = studies.script_cmd(
    "train.py",
    "mnist1d_mlp.py:smoke",
    workdir,
    "--config.parallel=sharded",
    "--config.optimizer.name=adam_l2",
    "--config.optimizer.weight_decay=0.05",
    f"--coordinator_address=127.0.0.1:{port}",
    "--num_processes=2",
    *extra,
  )
  flags = f"--xla_force_host_platform_device_count={devices_per_process}"
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  procs = []
  for i in range(2):
    # Output to files, not pipes: a full pipe would stall one process and, through the
    # collectives, the other.
    log = f"{workdir}.{'resume.' if '--resume' in extra else ''}{i}.log"
    with open(log, "w") as f:
      procs.append(
        subprocess.Popen([*cmd, f"--process_id={i}"], env=env, stdout=f, stderr=subprocess.STDOUT)
      )
    procs[-1].log = log
  return procs


def _wait(procs, timeout=300):
  deadline = time.time() + timeout
  for p in procs:
    try:
      p.wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
        q.wait()
    with open(p.log) as f:
      tail = f.read()[-3000:]
    assert p.returncode == 0, f"{p.args[-1]} exited with {p.returncode}:\n{tail}"


def _latest_params(workdir):
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as mngr:
    return mngr.latest_step(), mngr.restore(mngr.latest_step())["state"]["params"]


def test_two_processes_train_together_like_one(tmp_path, single):
  workdir = str(tmp_path / "multi")
  _wait(_launch_two(workdir))
  assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
  ref_cfg = _mlp("none")
  ref_cfg.optimizer.kwargs = {}
  ref = train.fit(ref_cfg, str(tmp_path / "ref"), verbose=False)
  _, got = _latest_params(workdir)
  _assert_params_close(got, ref["state"].params, rtol=2e-4)


def test_two_processes_killed_mid_run_resume_to_the_uninterrupted_result(tmp_path):
  """Both processes SIGKILLed after the step-50 checkpoint; both relaunched with --resume.

  One CPU device per process: with two forced host devices per process, 2 of 4 uninterrupted
  400-step runs here hung inside PjRtCpuLoadedExecutable::Execute in both processes (gloo
  collectives between two devices of one process and a remote one; see BUILD.md), 0 of 4 with
  one device per process.
  """
  extra = [f"--config.{k}={v}" for k, v in (("steps", 400), ("checkpoint_every", 50))]
  extra += [f"--config.{k}=50" for k in ("log_every", "diagnostics_every", "eval_every")]
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  launch = functools.partial(_launch_two, devices_per_process=1)
  procs = launch(killed, *extra)
  ckpt = os.path.join(killed, "checkpoints", "50")
  deadline = time.time() + 240
  while not os.path.exists(ckpt) and all(p.poll() is None for p in procs):
    assert time.time() < deadline, "no step-50 checkpoint within 240 s"
    time.sleep(0.02)
  for p in procs:
    p.send_signal(signal.SIGKILL)
  for p in procs:
    p.wait()
  assert os.path.exists(ckpt), "a process ended before the step-50 checkpoint"
  with ocp.CheckpointManager(os.path.join(killed, "checkpoints")) as mngr:
    assert mngr.latest_step() < 400, "the kill came after the run had finished"
  _wait(launch(killed, *extra, "--resume"))
  _wait(launch(full, *extra))
  (step_a, a), (step_b, b) = _latest_params(full), _latest_params(killed)
  assert step_a == step_b == 400
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)  # bitwise
  ma, mb = read_metrics(f"{full}/metrics.jsonl"), read_metrics(f"{killed}/metrics.jsonl")
  assert [r["step"] for r in ma] == [r["step"] for r in mb] == list(range(50, 401, 50))
  assert [r["loss"] for r in ma] == [r["loss"] for r in mb]
