"""Runs that survive the real world: kills at random points, preemption, two launches, damaged
checkpoints, torn records, full disks, a killed sweep, and bad input caught before any file.

Kills are deterministic: ``WD_JAX_FAULT=<site>:<n>`` makes a training process SIGKILL itself
the n-th time it reaches <site> (`wd_jax.engine.runlog.fault`): right after a checkpoint save is
issued
(its files still being written), in the middle of a metrics record, or between a summary/status
file's complete temporary copy and its rename.
"""

import errno
import gc
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings

import filelock
import jax
import numpy as np
import pytest
import studies

from wd_jax.engine import checkpoint as checkpoint_lib
from wd_jax.engine import runlog, train, workdir
from wd_jax.engine.config import base_config, override
from wd_jax.engine.sweep import tuning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
CONFIG = os.path.join(ROOT, "experiments", "configs", "mnist1d_mlp.py") + ":smoke"
# A small run with many checkpoints and log steps: kill points everywhere.
FLAGS = {
  "dataset.name": "digits",
  "model.kwargs": "{'widths': (32,)}",
  "batch_size": 32,
  "eval_batch_size": 400,
  "log_every": 5,
  "diagnostics_every": 10,
  "eval_every": 20,
  "checkpoint_every": 5,
  "max_checkpoints": 3,
  # A constant lr: a run of any length follows the same path, so a long run stopped early can
  # be resumed with the reference's length and compared with it.
  "optimizer.lr_schedule": "constant",
  "steps": 120,
}


def _config(**overrides):
  c = base_config()
  c.dataset.name = "digits"
  c.model.name = "mlp"
  c.model.kwargs = {"widths": (32,)}
  c.steps, c.batch_size, c.eval_batch_size = 40, 32, 400
  c.log_every, c.diagnostics_every, c.eval_every, c.checkpoint_every = 5, 10, 20, 5
  c.max_checkpoints = 3
  return override(c, overrides)


def _launch(wd, *extra, fault=None, **popen):
  cmd = [sys.executable, TRAIN, f"--config={CONFIG}", f"--workdir={wd}"]
  cmd += [f"--config.{k}={v}" for k, v in FLAGS.items()] + list(extra)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  env.pop(runlog.FAULT_ENV, None)
  if fault:
    env[runlog.FAULT_ENV] = fault
  return subprocess.Popen(
    cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
  )


def _run(wd, *extra, fault=None, timeout=240):
  p = _launch(wd, *extra, fault=fault)
  _, err = p.communicate(timeout=timeout)
  return p.returncode, err


def _records(wd):
  return runlog.read_metrics(os.path.join(wd, "metrics.jsonl"))


def _final_params(wd):
  step = checkpoint_lib.steps(wd)[-1]
  like = train.build(_config(steps=FLAGS["steps"])).init_state  # shapes only
  return step, checkpoint_lib.restore(wd, step, like).params


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run every killed-and-resumed run must equal, bit for bit."""
  wd = str(tmp_path_factory.mktemp("ref") / "run")
  code, err = _run(wd)
  assert code == 0, err[-2000:]
  return wd


def _chain_of_kills(wd, rng, kills):
  """Kills a run at `kills` random fault points, resuming after each, then lets it finish.

  Every fault point is one a launch reaches before it can finish (a run of 120 steps with a
  checkpoint every 5 advances at most 10 steps per kill), so each launch but the last is
  killed."""
  first = True
  for _ in range(kills):
    sites = ["checkpoint", "metrics", "write:status.json"]
    if not first:
      sites.append("write:metrics.jsonl")  # a resume rewrites it without the records it redoes
    site = rng.choice(sites)
    n = rng.randint(1, 2) if site in ("checkpoint", "metrics") else 1
    code, err = _run(wd, *([] if first else ["--resume"]), fault=f"{site}:{n}")
    assert code == -signal.SIGKILL, f"{site}:{n} did not kill the run (exit {code}): {err[-1500:]}"
    first = False
    # The workdir stays readable after every kill: config, status, records, checkpoints.
    with open(os.path.join(wd, "config.json")) as f:
      json.load(f)
    with warnings.catch_warnings(record=True) as caught:  # a kill mid-record tears the last line
      warnings.simplefilter("always")
      _records(wd)
    assert all("torn record" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert all(s % FLAGS["checkpoint_every"] == 0 for s in checkpoint_lib.steps(wd))
  code, err = _run(wd, "--resume")  # the last resume finishes the run
  assert code == 0, err[-2000:]


def test_random_sigkills_resume_to_the_uninterrupted_run_bitwise(tmp_path, reference):
  # One seeded chain of 11 kills of a run (each a new process); the sweep's chain of 30 kills
  # (tests/test_sweep_resume.py) covers the same resume path across runs.
  wd = str(tmp_path / "killed")
  _chain_of_kills(wd, random.Random(0), kills=11)
  (sa, a), (sb, b) = _final_params(reference), _final_params(wd)
  assert sa == sb == FLAGS["steps"]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  ra, rb = _records(reference), _records(wd)
  assert [r["step"] for r in rb] == [r["step"] for r in ra] == list(range(5, 121, 5))
  assert [r["loss"] for r in rb] == [r["loss"] for r in ra]
  assert workdir.read_status(wd)["state"] == "completed"
  assert not [n for n in os.listdir(wd) if n.startswith(".tmp-")]


def test_summary_write_killed_then_resumed_keeps_the_final_metrics(tmp_path, reference):
  wd = str(tmp_path / "run")
  code, _ = _run(wd, fault="write:summary.md:1")  # the loop finished; the summary did not
  assert code == -signal.SIGKILL and not os.path.exists(os.path.join(wd, "summary.md"))
  code, err = _run(wd, "--resume")
  assert code == 0, err[-2000:]
  with open(os.path.join(wd, "summary.md")) as f:
    summary = f.read()
  assert "completed" in summary and "final test_accuracy" in summary
  assert workdir.read_status(wd)["final"]["loss"] == _records(reference)[-1]["loss"]


def test_sigterm_checkpoints_and_resume_continues_bitwise(tmp_path, reference):
  wd = str(tmp_path / "run")
  p = _launch(wd, "--config.steps=100000", "--config.checkpoint_every=50000")  # only the signal
  # After the first log record, SIGTERM: the run must finish the step and checkpoint it.
  deadline = time.time() + 120
  while not _records(wd) and p.poll() is None:
    assert time.time() < deadline, "no record within 120 s"
    time.sleep(0.05)
  p.send_signal(signal.SIGTERM)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "preempted at step" in err and "Traceback" not in err
  status = workdir.read_status(wd)
  assert status["state"] == "preempted"
  assert checkpoint_lib.steps(wd)[-1] == status["step"] > 0
  with open(os.path.join(wd, "summary.md")) as f:
    assert f"preempted** at step {status['step']}" in f.read()
  # Resume with the reference's length: from the preemption step on, equal to the reference.
  code, err = _run(wd, "--resume")
  assert code == 0, err[-2000:]
  (_, a), (_, b) = _final_params(reference), _final_params(wd)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sigint_is_a_clean_stop_too(tmp_path):
  wd = str(tmp_path / "run")
  p = _launch(wd, "--config.steps=100000")
  deadline = time.time() + 120
  while not _records(wd) and p.poll() is None:
    assert time.time() < deadline
    time.sleep(0.05)
  p.send_signal(signal.SIGINT)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 128 + signal.SIGINT and "Traceback" not in err, err[-2000:]
  assert workdir.read_status(wd)["state"] == "preempted"


def test_a_second_launch_is_refused_while_the_first_runs(tmp_path):
  wd = str(tmp_path / "run")
  first = _launch(wd, "--config.steps=100000")
  try:
    deadline = time.time() + 120
    while not _records(wd):
      assert first.poll() is None and time.time() < deadline
      time.sleep(0.05)
    code, err = _run(wd, "--resume")
    assert code == 1, err[-2000:]
    assert f"in use by process {first.pid}" in err and "Traceback" not in err
    assert first.poll() is None  # the first run is untouched
  finally:
    first.kill()
    first.communicate()
  # The holder died (SIGKILL): its lock went with it, and a resume gets past it (to its first
  # checkpoint, where a fault point stops it).
  code, err = _run(wd, "--resume", "--config.steps=100000", fault="checkpoint:1")
  assert code == -signal.SIGKILL, err[-2000:]


def _files(wd):
  out = {}
  for root, _, names in os.walk(wd):
    for n in names:
      path = os.path.join(root, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, wd)] = f.read()
  return out


def test_resuming_a_finished_run_changes_no_file_and_more_steps_extend_it(tmp_path):
  wd = str(tmp_path / "run")
  first = train.fit(_config(), wd, verbose=False)
  before = _files(wd)
  again = train.fit(_config(), wd, resume=True, verbose=False)
  assert _files(wd) == before  # byte for byte
  assert again["already_completed"] and again["loss"] == first["loss"]
  assert again["state"] is not None
  longer = train.fit(_config(steps=60), wd, resume=True, verbose=False)
  assert [r["step"] for r in _records(wd)][-4:] == [45, 50, 55, 60]
  assert "already_completed" not in longer and workdir.read_status(wd)["step"] == 60
  with pytest.raises(ValueError, match="steps may only grow"):
    train.fit(_config(steps=50), wd, resume=True, verbose=False)
  with pytest.raises(ValueError, match=r"optimizer\.learning_rate"):
    train.fit(_config(steps=60, **{"optimizer.learning_rate": 0.5}), wd, resume=True)


def _damage(wd, step, how):
  """Deletes one array file of checkpoint `step`, or flips 100 bytes in its largest file."""
  root = os.path.join(checkpoint_lib.directory(wd), str(step), "state")
  files = [os.path.join(r, n) for r, _, ns in os.walk(root) for n in ns]
  data = max(files, key=os.path.getsize)
  if how == "deleted":
    os.unlink(data)
    return
  with open(data, "r+b") as f:
    blob = bytearray(f.read())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(blob), size=min(100, len(blob)), replace=False):
      blob[i] ^= 0xFF
    f.seek(0)
    f.write(blob)


# A damaged file fails inside orbax's asynchronous reads; the coroutines it abandons are
# garbage-collected with an "exception ignored" note, which is orbax's, not a failure here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["deleted", "flipped"])
def test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_used(tmp_path, how):
  ref = train.fit(_config(), str(tmp_path / "ref"), verbose=False)
  wd = str(tmp_path / "run")
  train.fit(_config(), wd, verbose=False)  # checkpoints 30, 35, 40
  _damage(wd, 40, how)
  with pytest.raises(checkpoint_lib.DamagedCheckpoint, match=r"checkpoints/40.*step 35"):
    train.fit(_config(), wd, resume=True, fallback=False, verbose=False)
  with pytest.warns(UserWarning, match="checkpoints/40"):
    got = train.fit(_config(), wd, resume=True, verbose=False)
  for x, y in zip(jax.tree.leaves(ref["state"].params), jax.tree.leaves(got["state"].params)):
    np.testing.assert_array_equal(x, y)
  gc.collect()  # orbax's abandoned reads are finalised here, under this test's filter


def test_a_torn_metrics_line_is_dropped_with_a_warning_naming_file_and_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n{"step": 15, "lo')
  with pytest.warns(UserWarning, match=r"metrics.jsonl: line 3 is a torn record"):
    assert [r["step"] for r in runlog.read_metrics(str(path))] == [5, 10]
  path.write_text('{"step": 5}\n{"ste\n{"step": 15}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl: line 2"):
    runlog.read_metrics(str(path))


def test_non_finite_values_come_back_as_floats(tmp_path):
  writer = runlog.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(1, {"param_norm": float("inf"), "loss": float("nan"), "note": "inf run"})
  writer.close()
  (record,) = runlog.read_metrics(str(tmp_path / "metrics.jsonl"))
  assert record["param_norm"] == float("inf") and np.isnan(record["loss"])
  assert record["note"] == "inf run"


def test_resume_after_the_metrics_file_was_deleted_is_refused_unless_the_gap_is_accepted(tmp_path):
  wd = str(tmp_path / "run")
  train.fit(_config(steps=20), wd, verbose=False)
  os.unlink(os.path.join(wd, "metrics.jsonl"))
  with pytest.raises(runlog.RecordsGap, match=r"metrics.jsonl is missing.*steps 1-20 are lost"):
    train.fit(_config(steps=30), wd, resume=True, verbose=False)
  assert not os.path.exists(os.path.join(wd, "metrics.jsonl"))  # refused before any write
  with pytest.warns(UserWarning, match="metrics.jsonl is missing"):
    train.fit(_config(steps=30), wd, resume=True, accept_gap=True, verbose=False)
  assert [r["step"] for r in _records(wd)] == [25, 30]


@pytest.mark.parametrize("where", ["jsonl", "tensorboard", "checkpoint"])
def test_a_full_disk_stops_the_run_at_once_with_a_clear_error(tmp_path, monkeypatch, where):
  calls = {"n": 0}

  def full(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] >= 3:
      raise OSError(errno.ENOSPC, "No space left on device")
    return original(*args, **kwargs)

  if where == "jsonl":
    original = runlog.MetricWriter._write_line
    monkeypatch.setattr(runlog.MetricWriter, "_write_line", full)
  elif where == "tensorboard":
    original = runlog._TensorBoard.write
    monkeypatch.setattr(runlog._TensorBoard, "write", full)
  else:
    original = checkpoint_lib.save
    monkeypatch.setattr(checkpoint_lib, "save", full)
  wd = str(tmp_path / "run")
  with pytest.raises(runlog.RunIOError, match=r"disk is full|No space left"):
    train.fit(_config(steps=10_000), wd, verbose=False)
  status = workdir.read_status(wd)
  # Stopped, not hung: at the log step whose write failed (the 3rd: step 15), or at the
  # checkpoint of 15, of a 10,000-step run.
  assert status["state"] == "failed" and status["step"] in (10, 15), status
  # The checkpoints written before the failure are intact, and the run resumes from them.
  monkeypatch.undo()
  got = train.fit(_config(steps=20), wd, resume=True, verbose=False)
  assert got["state"] is not None


def test_the_auto_record_ignores_malformed_entries_and_keeps_concurrent_writes(tmp_path):
  path = str(tmp_path / "auto.json")
  with open(path, "w") as f:
    json.dump({"a": "vmap", "b": {"chosen": "gpu"}, "c": [1]}, f)
  assert tuning._read_auto_cache(path) == {}
  code = (
    "import sys; from wd_jax.engine.sweep import tuning\n"
    "for i in range(25):\n"
    "  tuning._write_auto_cache(sys.argv[1], f'{sys.argv[2]}-{i}', 'vmap', {'vmap': {}})\n"
  )
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", code, path, f"w{w}"], env=env) for w in range(4)]
  assert [p.wait(120) for p in procs] == [0] * 4
  assert len(tuning._read_auto_cache(path)) == 4 * 25  # none lost to a read-modify-write race


def _sweep_cmd(wd):
  return studies.script_cmd(
    "sweep.py",
    "sweep_mnist1d_mlp.py:smoke",
    wd,
    "--config.sweep.strategy=processes",
    "--config.sweep.num_workers=2",
    "--config.base.steps=100000",
  )


def _children(pid):
  out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
  return [int(x) for x in out.stdout.split()]


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split()[2] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_a_processes_sweep_takes_its_workers_and_temp_files_with_it(tmp_path, sig):
  wd = str(tmp_path / "sweep")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  p = subprocess.Popen(
    _sweep_cmd(wd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 180
  workers = []
  while len(workers) < 2 or not os.path.isdir(os.path.join(wd, "runs")):
    assert p.poll() is None and time.time() < deadline, "the workers did not start"
    workers = _children(p.pid)
    time.sleep(0.1)
  p.send_signal(sig)
  p.wait(60)
  assert p.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
  deadline = time.time() + 30
  while any(_alive(w) for w in workers):
    assert time.time() < deadline, "a worker outlived its sweep"
    time.sleep(0.1)
  if sig == signal.SIGTERM:
    assert not [n for n in os.listdir(wd) if n.startswith(".workers-")]
    with open(os.path.join(wd, "summary.md")) as f:
      assert "interrupted" in f.read()


CHARS, NAN = {"max_chars": 20_000, "seq_len": 16}, float("nan")


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"dataset.name": "char_corpus", "dataset.kwargs": {"max_chars": 20_000, "seq_len": 16}},
      "cannot train on",
    ),
    ({"model.kwargs": {"widths": (0,)}}, "widths"),
    (
      {"optimizer.mask": "rules", "optimizer.mask_rules": ((".*bias", float("nan")),)},
      "mask_rules",
    ),
    ({"optimizer.mask": "rules", "optimizer.mask_rules": (".*bias", 0.0)}, "mask_rules"),
    ({"batch_size": 5000}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**70}, r"config.seed must be an int <= 4294967294"),
    ({"optimizer.kwargs": {"b3": 0.9}}, r"config.optimizer.kwargs \{'b3': 0.9\} do not fit"),
    ({"dataset.kwargs": {"noise": 0.1}}, r"config.dataset.kwargs \{'noise': 0.1\} do not fit"),
    ({"optimizer.mask_rules": (("[", 1.0),)}, r"mask_rules\[0\] has an invalid regular"),
    ({"optimizer.mask_rules": ((".*bias", 0.0),)}, r"optimizer.mask='default' ignores it"),
    ({"model.kwargs": {"widths": (10**8, 10**8)}}, r"needs at least .* GiB \(parameters"),
  ],
)
def test_bad_configs_are_refused_before_the_workdir_exists(tmp_path, overrides, message):
  wd = tmp_path / "never"
  with pytest.raises(ValueError, match=message):
    train.fit(_config(**overrides), str(wd), verbose=False)
  assert not wd.exists()


def test_a_step_too_large_for_memory_is_refused_before_the_workdir_exists(tmp_path, monkeypatch):
  from wd_jax.engine import experiment

  # 19 KB of parameters and gradients fit in 100 KB; with one step's values (270 KB) they do not
  monkeypatch.setattr(experiment, "available_memory", lambda: (100_000, "a 100 KB device"))
  wd = tmp_path / "never"
  with pytest.raises(ValueError, match=r"\(its state and one training step of batch 32, every"):
    train.fit(_config(), str(wd), verbose=False)
  assert not wd.exists()


def test_every_checkpoint_of_a_diverging_run_is_finite_in_loss_params_and_optimizer_state(tmp_path):
  """AdamW at lr 1e5 on the MNIST-1D MLP: Adam's ν overflows while the loss and the parameters
  are still finite; no checkpoint may hold such a state (one that did held 15,100 infinities)."""
  wd = str(tmp_path / "run")
  cfg = _config(
    **{
      "dataset.name": "mnist1d",
      "model.kwargs": {"widths": (100, 100)},
      "optimizer.learning_rate": 1e5,
      "optimizer.lr_schedule": "constant",
    }
  )
  cfg.steps, cfg.checkpoint_every, cfg.log_every, cfg.max_checkpoints = 60, 2, 2, 100
  result = train.fit(cfg, wd, verbose=False)
  assert result["diverged"] and "optimizer state" in result["message"], result
  like = train.build(cfg).init_state
  saved = checkpoint_lib.steps(wd)
  for step in saved:
    state = checkpoint_lib.restore(wd, step, like)
    for leaf in jax.tree.leaves((state.params, state.opt_state)):
      assert np.all(np.isfinite(np.asarray(leaf))), step
  assert result["last_checkpoint_step"] == (saved[-1] if saved else None)
  assert result["diverged_at_step"] > (saved[-1] if saved else 0)


# ----------------------------------------------------------------------------------------------
# Checkpoints that heal, and a run's identity guarded.


def _params_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _warnings_of(fn, *args, **kwargs):
  """`fn`'s result and the messages of the warnings it gave."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = fn(*args, **kwargs)
  return result, [str(w.message) for w in caught]


def _aside(wd):
  path = os.path.join(checkpoint_lib.directory(wd), "damaged")
  return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 40-step run (checkpoints 30, 35, 40) and its final parameters."""
  wd = str(tmp_path_factory.mktemp("finished") / "run")
  result = train.fit(_config(), wd, verbose=False)
  return wd, result["state"].params


def _copy_of(finished, tmp_path):
  import shutil

  wd = str(tmp_path / "run")
  shutil.copytree(finished[0], wd)
  return wd


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damaged", [[40], [35, 40]], ids=["newest", "newest-and-middle"])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_its_step_saved_again(
  tmp_path, finished, damaged
):
  wd = _copy_of(finished, tmp_path)
  for step in damaged:
    _damage(wd, step, "flipped")
  got, said = _warnings_of(train.fit, _config(), wd, resume=True, verbose=False)
  for step, message in zip(sorted(damaged, reverse=True), said):  # newest first, then older
    assert re.search(rf"checkpoints/{step} (is damaged|cannot be read).*Moved aside", message)
  assert len(said) == len(damaged), said
  aside = _aside(wd)
  assert [int(n.split("-")[0]) for n in aside] == damaged, aside
  assert all(n.endswith(("-unreadable", "-digest-mismatch")) for n in aside), aside
  assert checkpoint_lib.steps(wd) == [30, 35, 40]
  like = train.build(_config()).init_state
  _params_equal(checkpoint_lib.restore(wd, 40, like).params, finished[1])  # intact on disk
  _params_equal(got["state"].params, finished[1])
  status = workdir.read_status(wd)
  assert status["state"] == "completed" and status["final"]["last_checkpoint_step"] == 40
  again = train.fit(_config(), wd, resume=True, verbose=False)  # healed: no warning, no work
  assert again["already_completed"]
  gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_without_fallback_a_damaged_final_checkpoint_is_refused_before_nothing_to_do(
  tmp_path, finished, capfd
):
  wd = _copy_of(finished, tmp_path)
  _damage(wd, 40, "deleted")
  before = _files(wd)
  with pytest.raises(checkpoint_lib.DamagedCheckpoint, match=r"checkpoints/40.*step 35"):
    train.fit(_config(), wd, resume=True, fallback=False)
  assert "nothing to do" not in capfd.readouterr().err
  assert _files(wd) == before  # refused: nothing moved, nothing written
  gc.collect()


def test_a_damaged_middle_checkpoint_does_not_stop_a_resume_from_the_newest(tmp_path, finished):
  wd = _copy_of(finished, tmp_path)
  _damage(wd, 35, "flipped")
  got = train.fit(_config(steps=50), wd, resume=True, verbose=False)
  assert got["last_checkpoint_step"] == 50 and _aside(wd) == []
  like = train.build(_config(steps=50)).init_state
  assert int(checkpoint_lib.restore(wd, 50, like).step) == 50


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_with_every_checkpoint_damaged_the_restart_from_zero_checkpoints_as_usual(
  tmp_path, finished
):
  wd = _copy_of(finished, tmp_path)
  for step in (30, 35, 40):
    _damage(wd, step, "flipped")
  got, said = _warnings_of(train.fit, _config(), wd, resume=True, verbose=False)
  assert len(said) == 4 and "starts again from step 0" in said[-1], said
  assert len(_aside(wd)) == 3 and checkpoint_lib.steps(wd) == [30, 35, 40]
  like = train.build(_config()).init_state
  _params_equal(checkpoint_lib.restore(wd, 40, like).params, finished[1])
  _params_equal(got["state"].params, finished[1])
  assert workdir.read_status(wd)["final"]["last_checkpoint_step"] == 40
  assert [r["step"] for r in _records(wd)] == list(range(5, 41, 5))  # one run, not two
  gc.collect()


def _mlp(width, depth=1):
  from wd_jax.engine import models

  return lambda rngs: models.MLP(64, (width,) * depth, 10, rngs=rngs)


@pytest.mark.parametrize(
  "model, message",
  [
    (_mlp(64), r"params/hidden/0/kernel is float32\[64, 32\] there, float32\[64, 64\] in this"),
    (_mlp(32, depth=2), r"params/hidden/1/kernel is in this run's model, not in the checkpoint"),
  ],
  ids=["shape", "structure"],
)
def test_a_resume_with_another_model_is_refused_naming_the_parameter(tmp_path, model, message):
  wd = str(tmp_path / "run")
  train.fit(_config(), wd, model=_mlp(32), verbose=False)
  before = _files(wd)
  with pytest.raises(checkpoint_lib.CheckpointMismatch, match=message):
    train.fit(_config(steps=60), wd, model=model, resume=True, verbose=False)
  assert _files(wd) == before  # the earlier run is untouched: nothing moved, trained or written


@pytest.mark.parametrize("resume", [False, True])
def test_a_workdir_with_records_but_no_config_is_an_existing_run(tmp_path, finished, resume):
  wd = _copy_of(finished, tmp_path)
  os.unlink(os.path.join(wd, "config.json"))
  before = _files(wd)
  with pytest.raises(ValueError, match=r"holds a run \(checkpoints/, metrics.jsonl.*no config"):
    train.fit(_config(), wd, resume=resume, verbose=False)
  assert _files(wd) == before


def test_a_resume_with_another_learning_rate_is_refused_naming_the_field(tmp_path, finished):
  wd = _copy_of(finished, tmp_path)
  with pytest.raises(ValueError, match=r"optimizer\.learning_rate is 0\.005, the run has 0\.001"):
    train.fit(_config(**{"optimizer.learning_rate": 5e-3}), wd, resume=True, verbose=False)


def test_records_are_durable_before_each_checkpoint(tmp_path, monkeypatch):
  """An OS crash keeps what was fsynced: at every checkpoint, every record written so far must
  be, so the records never end before the newest checkpoint."""
  wd = str(tmp_path / "run")
  metrics = os.path.join(wd, "metrics.jsonl")
  durable = {"size": 0}
  real_fsync, real_save = os.fsync, checkpoint_lib.save

  def fsync(fd):
    real_fsync(fd)
    if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(metrics):
      durable["size"] = os.fstat(fd).st_size

  def save(mngr, step, state, **kwargs):
    assert durable["size"] == os.path.getsize(metrics), f"records not durable at step {step}"
    return real_save(mngr, step, state, **kwargs)

  monkeypatch.setattr(os, "fsync", fsync)
  monkeypatch.setattr(checkpoint_lib, "save", save)
  train.fit(_config(), wd, verbose=False)
  assert durable["size"] > 0


def test_a_resume_whose_records_end_before_the_checkpoint_is_refused_naming_the_gap(
  tmp_path, finished
):
  wd = _copy_of(finished, tmp_path)
  path = os.path.join(wd, "metrics.jsonl")
  with open(path) as f:
    lines = f.readlines()
  with open(path, "w") as f:
    f.writelines(lines[:3])  # records 5, 10, 15 survived; 20-40 lost
  with pytest.raises(runlog.RecordsGap, match=r"ends at step 15.*steps 16-40 are lost"):
    train.fit(_config(steps=50), wd, resume=True, verbose=False)
  with pytest.warns(UserWarning, match=r"steps 16-40 are lost"):
    train.fit(_config(steps=50), wd, resume=True, accept_gap=True, verbose=False)
  assert [r["step"] for r in _records(wd)] == [5, 10, 15, 45, 50]


# ----------------------------------------------------------------------------------------------
# Every lesser break: one line, a true status, no temporary file left.


@pytest.mark.parametrize("content", ['{"step": "x"}', "null", '{"state": "running"}'])
def test_a_malformed_status_file_is_named_and_does_not_block_a_resume(tmp_path, finished, content):
  wd = _copy_of(finished, tmp_path)
  with open(os.path.join(wd, "status.json"), "w") as f:
    f.write(content)
  with pytest.warns(UserWarning, match=r"status.json is not a run status"):
    got = train.fit(_config(steps=50), wd, resume=True, verbose=False)
  assert got["last_checkpoint_step"] == 50 and workdir.read_status(wd)["state"] == "completed"


def test_a_torn_config_file_is_named(tmp_path, finished):
  wd = _copy_of(finished, tmp_path)
  path = os.path.join(wd, "config.json")
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(text[: len(text) // 2])
  with pytest.raises(workdir.DamagedFile, match=r"config.json cannot be read"):
    train.fit(_config(), wd, resume=True, verbose=False)


def test_a_second_ctrl_c_leaves_a_preempted_status_and_a_summary(tmp_path, monkeypatch):
  """The second SIGINT raises KeyboardInterrupt wherever the run is: here, in the 5th record."""
  calls = {"n": 0}
  real = runlog.MetricWriter.write

  def write(self, step, metrics):
    calls["n"] += 1
    if calls["n"] == 5:
      raise KeyboardInterrupt
    return real(self, step, metrics)

  monkeypatch.setattr(runlog.MetricWriter, "write", write)
  wd = str(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    train.fit(_config(), wd, verbose=False)
  status = workdir.read_status(wd)
  assert status["state"] == "preempted" and status["step"] == checkpoint_lib.steps(wd)[-1] == 20
  with open(os.path.join(wd, "summary.md")) as f:
    assert "preempted" in f.read()


def test_an_unexpected_error_leaves_a_failed_status_naming_it(tmp_path, monkeypatch):
  def broken(self, step, metrics):
    raise RuntimeError("a bug in a metric")

  monkeypatch.setattr(runlog.MetricWriter, "write", broken)
  wd = str(tmp_path / "run")
  with pytest.raises(RuntimeError):
    train.fit(_config(), wd, verbose=False)
  status = workdir.read_status(wd)
  assert status["state"] == "failed" and status["error"] == "a bug in a metric"


def test_a_kill_between_the_config_file_and_its_rename_leaves_no_temporary_file(tmp_path):
  wd = str(tmp_path / "run")
  code, _ = _run(wd, fault="write:config.json:1")
  assert code == -signal.SIGKILL and [n for n in os.listdir(wd) if n.startswith(".tmp-")]
  code, err = _run(wd, "--config.steps=10")  # the workdir holds no run: a new launch is fine
  assert code == 0, err[-2000:]
  assert not [n for n in os.listdir(wd) if n.startswith(".tmp-")]


def test_the_progress_line_counts_the_runs_steps_on_resume(tmp_path, capfd):
  wd = str(tmp_path / "run")
  train.fit(_config(steps=20), wd, verbose=False)
  train.fit(_config(), wd, resume=True, verbose=True)
  err = capfd.readouterr().err
  assert "40 steps (from 20)" in err and "40/40 steps" in err, err


# ----------------------------------------------------------------------------------------------
# A real full disk and a read-only filesystem (a tmpfs mounted for the test; needs root).


@pytest.fixture
def small_disk(tmp_path):
  """A 512 KiB tmpfs: writes fail with ENOSPC there as on a full disk."""
  path = tmp_path / "disk"
  path.mkdir()
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(path)], capture_output=True
  )
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", str(path)], check=False)


def _lines(err):
  return [line for line in err.splitlines() if line.strip() and not line.startswith("train ")]


@pytest.mark.parametrize("where", ["checkpoint", "records"])
def test_a_real_full_disk_stops_the_run_with_one_line_and_a_failed_status(small_disk, where):
  wd = str(small_disk / "run")
  if where == "checkpoint":  # checkpoints of ~300 KB: the second or third one fills the disk
    extra = ["--config.model.kwargs={'widths': (256,)}", "--config.max_checkpoints=20"]
  else:  # no checkpoint before step 100,000: the records fill the disk
    extra = ["--config.checkpoint_every=100000"]
  code, err = _run(wd, "--config.steps=100000", *extra)
  assert code == 1 and "Traceback" not in err, err[-3000:]
  (line,) = _lines(err)
  status = workdir.read_status(wd)
  assert status["state"] == "failed" and "the disk is full" in status["error"]
  saved = checkpoint_lib.steps(wd)
  if where == "checkpoint":
    step = int(line.split("checkpoint of step ")[1].split()[0])
    assert line == (
      f"error: cannot write the checkpoint of step {step} "
      f"({checkpoint_lib.directory(wd)}/{step}): the disk is full"
    )
    assert saved and saved[-1] < step and status["step"] == saved[-1]
  else:
    assert line.startswith("error: cannot write ") and line.endswith(": the disk is full")
    assert "metrics.jsonl" in line or "tensorboard" in line
  leftovers = [n for n in os.listdir(wd) if n.startswith(".tmp-")]
  leftovers += [n for n in os.listdir(checkpoint_lib.directory(wd)) if "tmp" in n]
  assert not leftovers


def test_a_read_only_workdir_is_one_line(small_disk):
  wd = str(small_disk / "run")
  code, err = _run(wd, "--config.steps=10")
  assert code == 0, err[-2000:]
  subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
  code, err = _run(wd, "--resume")
  assert code == 1 and _lines(err) == [f"error: cannot lock {wd}/.lock: Read-only file system"], (
    err[-2000:]
  )


class _NoFlock(filelock.FileLock):
  """A filesystem that refuses flock (some NFS mounts)."""

  def acquire(self, *args, **kwargs):
    raise OSError(errno.ENOLCK, "No locks available")


_NO_FLOCK = """
import errno, filelock


class NoFlock(filelock.FileLock):
  def acquire(self, *args, **kwargs):
    raise OSError(errno.ENOLCK, "No locks available")


filelock.FileLock = NoFlock
"""


@pytest.mark.parametrize("holder", ["alive", "killed"])
def test_without_flock_a_live_holder_is_named_and_a_dead_ones_lock_taken_over(
  tmp_path, monkeypatch, holder
):
  """On a filesystem that refuses flock (ENOLCK), the lock is filelock's marker file."""
  monkeypatch.setattr(filelock, "FileLock", _NoFlock)
  wd = str(tmp_path / "run")
  end = "time.sleep(600)" if holder == "alive" else "os.kill(os.getpid(), signal.SIGKILL)"
  child = _NO_FLOCK + (
    "import os, signal, sys, time\n"
    "from wd_jax.engine import workdir\n"
    f"lock = workdir.WorkdirLock({wd!r}).acquire()\n"
    "print('held', flush=True)\n" + end + "\n"
  )
  p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
  try:
    assert p.stdout.readline() == "held\n"
    if holder == "alive":
      with pytest.raises(workdir.WorkdirBusy, match=f"in use by process {p.pid} on"):
        workdir.WorkdirLock(wd).acquire()
    else:
      p.wait(60)
      lock = workdir.WorkdirLock(wd).acquire()  # the marker of a dead pid on this host
      lock.release()
  finally:
    p.kill()
    p.wait(60)
    p.stdout.close()
