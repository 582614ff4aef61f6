"""Sweeps that survive: kill -9 then resume (each strategy), SIGTERM writes the runs done, a
seeded chain of 30 random kills, and shards in separate processes merged into one sweep.

Kills are deterministic fault points (`wd_jax.engine.runlog.fault`: ``WD_JAX_FAULT=<site>:<n>``
SIGKILLs the process the n-th time it reaches a site). Each launch is a process forked from a
forkserver that has imported wd_jax already, with JAX's persistent compilation cache, so a
launch costs seconds, not an interpreter start and a compilation. "Equal" is bitwise: the
tables (results.csv, results.md), every run's final state and the selected run's per-item test
outcomes of the resumed sweep are those of the same sweep run without interruption.
"""

import gc
import json
import multiprocessing
import os
import random
import signal
import subprocess
import time
import warnings

import numpy as np
import pytest
import studies

from wd_jax.engine import config, runlog, sweep
from wd_jax.engine.sweep import records, shards, tuning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = {"learning_rate": [1e-3, 3e-3, 1e-2], "seed": [0, 1]}  # 6 cells
STEPS = 12  # per run; records at steps 6 and 12
OPTIONS = {
  "vmap": {"strategy": "vmap", "chunk_size": 2},  # 3 chunks of 2
  "sequential": {"strategy": "sequential"},
  "processes": {"strategy": "processes", "num_workers": 2},
}


def _config():
  """A tiny classification sweep with a validation split: selection, and one test read."""
  c = config.base_config()
  c.dataset.name, c.dataset.kwargs = "teacher_student", {"num_examples": 512}
  c.dataset.validation_fraction = 0.25
  c.model.name, c.model.kwargs = "mlp", {"widths": (8,)}
  c.steps, c.batch_size, c.eval_batch_size = STEPS, 16, 128
  c.log_every, c.eval_every, c.diagnostics_every = 6, 12, 0
  return c


def _launch(workdir, fault, options, cache):
  """A launch of the sweep, with ``resume=True`` (a fresh workdir simply starts), in a forked
  process: exit 0 done, 143 preempted, -9 killed by the fault."""
  if fault:
    os.environ[runlog.FAULT_ENV] = fault
  # Worker processes (spawned) read these when they import JAX; this process sets them here.
  os.environ.update(
    JAX_COMPILATION_CACHE_DIR=cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  import jax

  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  try:
    sweep.run_sweep(_config(), GRID, workdir, resume=True, verbose=False, **options)
  except runlog.Interrupted:
    os._exit(143)
  os._exit(0)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
  """``launch(workdir, fault=None, options=...) -> exit code`` in a process forked from a
  forkserver that imported wd_jax (and this module) once."""
  ctx = multiprocessing.get_context("forkserver")
  ctx.set_forkserver_preload(["wd_jax.engine.sweep", __name__])
  cache = str(tmp_path_factory.mktemp("jax_cache"))

  def start(workdir, fault=None, options=OPTIONS["vmap"]):
    p = ctx.Process(target=_launch, args=(str(workdir), fault, options, cache))
    p.start()
    return p

  def launch(workdir, fault=None, options=OPTIONS["vmap"]):
    p = start(workdir, fault, options)
    p.join()
    return p.exitcode

  launch.start = start
  return launch


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """strategy -> the workdir of the uninterrupted sweep (run in this process, on demand)."""
  done = {}

  def get(strategy):
    if strategy not in done:
      wd = str(tmp_path_factory.mktemp(f"reference_{strategy}") / "sweep")
      sweep.run_sweep(_config(), GRID, wd, verbose=False, **OPTIONS[strategy])
      done[strategy] = wd
    return done[strategy]

  return get


def _names():
  return [r.name for r in sweep.expand_grid(_config(), GRID)]


def _done(workdir):
  return sorted(records.finished_rows(str(workdir), _names()))


def _assert_same_sweep(got, want):
  """Tables byte for byte; every run's final state and the per-item test outcomes bitwise."""
  for name in ("results.csv", "results.md"):
    with open(os.path.join(got, name)) as a, open(os.path.join(want, name)) as b:
      assert a.read() == b.read(), name
  for name in _names():
    for kind in (records.FINAL_STATE, records.TEST_ITEMS):
      path_a, path_b = (os.path.join(w, "runs", name, kind) for w in (got, want))
      assert os.path.exists(path_a) == os.path.exists(path_b), (name, kind)
      if os.path.exists(path_b):
        with np.load(path_a) as a, np.load(path_b) as b:
          assert sorted(a) == sorted(b)
          for key in b:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {kind} {key}")


def _status(workdir):
  with open(os.path.join(workdir, "strategy.json")) as f:
    return json.load(f)


# A kill inside the second run (sequential, processes' workers) or the second chunk (vmap).
MID_SECOND = f"sweep:step:{STEPS + STEPS // 2}"


@pytest.mark.parametrize(
  "strategy, exit_code, done_after_kill",
  [
    ("vmap", -signal.SIGKILL, 2),  # chunk 1 finished, chunk 2 half-written
    ("sequential", -signal.SIGKILL, 1),  # run 1 finished, run 2 half-written
    # Each of the 2 workers (3 runs each) is killed inside its second run; the sweep then
    # fails naming it (tests/test_faults.py kills the sweep process: its workers die with it).
    ("processes", 1, 2),
  ],
)
def test_kill_9_mid_sweep_then_resume_gives_the_uninterrupted_sweep(
  tmp_path, launcher, reference, strategy, exit_code, done_after_kill
):
  wd = tmp_path / "sweep"
  assert launcher(wd, MID_SECOND, OPTIONS[strategy]) == exit_code
  done = _done(wd)
  assert len(done) == done_after_kill
  assert not os.path.exists(wd / "results.csv")
  half_written = [n for n in os.listdir(wd / "runs") if n not in done]
  assert half_written  # the interrupted runs' directories, without a completion record
  assert launcher(wd, None, OPTIONS[strategy]) == 0
  # The finished runs were kept as they were; the half-written ones trained again from step 0.
  info = _status(str(wd))
  assert info["status"] == "completed" and info["runs_done_before"] == len(done)
  for name in half_written:
    steps = [r["step"] for r in runlog.read_metrics(str(wd / "runs" / name / "metrics.jsonl"))]
    assert steps == [6, 12]  # one clean run, nothing merged from the killed one
  _assert_same_sweep(str(wd), reference(strategy))


@pytest.mark.parametrize(
  "strategy, signum",
  [("vmap", signal.SIGTERM), ("sequential", signal.SIGINT), ("auto", signal.SIGTERM)],
)
def test_sigterm_or_sigint_writes_the_runs_done_and_resume_finishes_the_sweep(
  tmp_path, monkeypatch, reference, strategy, signum
):
  """The signal arrives once the first run is recorded; training stops after the current step
  and the runs finished by then are the tables' rows (a vmap chunk finishes together)."""
  if strategy == "auto":  # steer auto to vmap without reading the clock (see test_sweep.py)
    timer = tuning.time_steps

    def injected(fn, state, source, limit):
      _, _, _, n, state = timer(fn, state, source, limit)
      step = 1e-3 if np.ndim(state.step) == 1 else 1.0
      return 0.01, step, step, n, state

    monkeypatch.setattr(tuning, "time_steps", injected)
    monkeypatch.setenv(sweep.AUTO_CACHE_ENV, "off")
  write = records.write_completion

  def then_signal(directory, row):
    write(directory, row)
    os.kill(os.getpid(), signum)

  monkeypatch.setattr(records, "write_completion", then_signal)
  wd = str(tmp_path / "sweep")
  options = dict(OPTIONS.get(strategy, {"strategy": "auto", "num_workers": 1}))
  if strategy == "auto":
    options["chunk_size"] = 2
  with pytest.raises(runlog.Interrupted) as stopped:
    sweep.run_sweep(_config(), GRID, wd, verbose=False, **options)
  assert stopped.value.signal == signum
  assert runlog.exit_code(stopped.value.signal) == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum]
  expected = 1 if strategy == "sequential" else 2  # one run, or one chunk of two
  info = _status(wd)
  assert info["status"] == "preempted" and info["runs_done"] == expected
  assert info["signal"] == signum and info["configurations"] == 6
  with open(os.path.join(wd, "results.csv")) as f:
    assert len(f.read().splitlines()) == 1 + expected
  with open(os.path.join(wd, "summary.md")) as f:
    assert f"**preempted** (interrupted by signal {int(signum)}): {expected} of 6 runs" in f.read()
  monkeypatch.setattr(records, "write_completion", write)
  sweep.run_sweep(_config(), GRID, wd, verbose=False, resume=True, **options)
  assert _status(wd)["status"] == "completed"
  _assert_same_sweep(wd, reference("sequential" if strategy == "sequential" else "vmap"))


def test_sigterm_on_a_processes_sweep_writes_the_runs_its_workers_finished(tmp_path):
  """experiments/sweep.py, 2 workers: each trains a 40-step run, then a 10^7-step one; the
  signal comes once both short runs are recorded. Exit 143, their two rows written."""
  wd = tmp_path / "sweep"
  cmd = studies.script_cmd(
    "sweep.py",
    "sweep_mnist1d_mlp.py:smoke",
    wd,
    "--config.sweep.strategy=processes",
    "--config.sweep.num_workers=2",
    "--config.base.diagnostics_every=0",
    "--config.grid.learning_rate=(1e-3,)",
    "--config.grid.steps=(40,10000000)",  # fields in name order: cells 0 and 1 are short
  )
  p = subprocess.Popen(cmd, env=dict(os.environ, JAX_PLATFORMS="cpu"), stderr=subprocess.PIPE)
  names = ["0-lr=0.001_steps=40_wd=0.0001", "1-lr=0.001_steps=40_wd=0.1"]
  short = [wd / "runs" / name / records.COMPLETION for name in names]
  while not all(path.exists() for path in short):
    assert p.poll() is None, p.stderr.read().decode()[-3000:]
    time.sleep(0.1)
  p.send_signal(signal.SIGTERM)
  _, err = p.communicate(timeout=300)
  assert p.returncode == 143, err.decode()[-3000:]
  info = _status(str(wd))
  assert info["status"] == "preempted" and info["runs_done"] == 2 and info["signal"] == 15
  assert all(w["stopped"] for w in info["workers"])
  with open(wd / "results.csv") as f:
    assert [line.split(",")[1] for line in f.read().splitlines()[1:]] == names


# ----------------------------------------------------------------------------------------------
# A seeded chain of random kills.

# Fault points a launch reaches while it trains a vmap chunk, how often it draws each, and how
# many times each is reached per run of the chunk it trains: each of its steps (once for the
# chunk); each metrics record (2 per run: torn lines); the final state and the completion record
# between their temporary file and its rename; the moment after each completion record.
TRAINING_SITES = {
  "sweep:step": (0.45, 0),
  "metrics": (0.2, 2),
  "write:final_state.npz": (0.1, 1),
  "write:done.json": (0.1, 1),
  "sweep:recorded": (0.15, 1),
}
# ... once every run is recorded: the selected run's test outcomes and the tables.
FINISHING_SITES = [
  "write:test_items.npz",
  "write:results.csv",
  "write:results.md",
  "write:strategy.json",
  "write:summary.md",
]


def _random_fault(rng, done, first):
  """A fault the next launch reaches: mostly inside the first chunk it trains (no run
  finishes, or one of two records), sometimes in the chunk after (the first one finishes)."""
  names = _names()
  todo = [[n for n in names[i : i + 2] if n not in done] for i in range(0, 6, 2)]
  todo = [chunk for chunk in todo if chunk]
  if not todo:
    return f"{rng.choice(FINISHING_SITES)}:1"
  if first and rng.random() < 0.3:
    return rng.choice(["write:config.json:1", "write:plan.json:1"])
  sites = list(TRAINING_SITES)
  site = rng.choices(sites, weights=[TRAINING_SITES[s][0] for s in sites])[0]
  per_run = TRAINING_SITES[site][1]
  reached = [per_run * len(chunk) or STEPS for chunk in todo]  # times per chunk
  n = rng.randint(1, reached[0])
  if len(todo) > 1 and rng.random() < 0.08:
    n += reached[0]  # the first chunk finishes
  return f"{site}:{n}"


def test_a_chain_of_30_random_kills_resumes_to_the_uninterrupted_sweep(
  tmp_path, launcher, reference
):
  rng = random.Random(2)  # 24 kills while training (all 6 runs), then 6 in the final writes
  wd = tmp_path / "sweep"
  kills, while_training, launches = 0, 0, 0
  while kills < 30:
    done = _done(wd) if wd.exists() else []
    trained_all = len(done) == 6
    fault = _random_fault(rng, done, first=not wd.exists())
    code = launcher(wd, fault)
    launches += 1
    assert code in (-signal.SIGKILL, 0), (fault, code)
    kills += code == -signal.SIGKILL
    while_training += code == -signal.SIGKILL and not trained_all
    if code == 0:  # the fault lay beyond this launch's work: the sweep is complete
      break
  assert launcher(wd) == 0
  assert kills >= 30 and 20 <= while_training < kills, (kills, while_training, launches)
  _assert_same_sweep(str(wd), reference("vmap"))


# ----------------------------------------------------------------------------------------------
# Shards: parts of the grid as independent jobs into one workdir, then one merge.

SEQUENTIAL = OPTIONS["sequential"]


def test_a_shard_is_part_i_of_n_or_the_slurm_array_task():
  assert sweep.Shard.parse("2/8") == sweep.Shard.parse((2, 8)) == sweep.Shard(2, 8)
  assert sweep.Shard.parse(None) == sweep.Shard(0, 1) and sweep.Shard(0, 1).label is None
  env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"}
  assert shards.from_slurm(env) == sweep.Shard(4, 8)  # an array 1-8: task 5 is part 4 of 8
  for bad in ("8/8", "-1/2", (1,), "a/b", (True, 2), 3):
    with pytest.raises(ValueError, match="shard must be"):
      sweep.Shard.parse(bad)
  with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID"):
    shards.from_slurm({})


def test_three_shard_processes_one_killed_and_resumed_merge_into_the_one_machine_sweep(
  tmp_path, launcher, reference
):
  wd = tmp_path / "sweep"
  # Three jobs at once into one workdir; shard 1 (cells 1 and 4) is killed inside cell 4.
  jobs = [
    launcher.start(wd, MID_SECOND if i == 1 else None, {**SEQUENTIAL, "shard": (i, 3)})
    for i in range(3)
  ]
  for job in jobs:
    job.join()
  assert [job.exitcode for job in jobs] == [0, -signal.SIGKILL, 0]
  missing = sweep.expand_grid(_config(), GRID)[4].name
  with pytest.raises(
    ValueError, match=rf"1 of 6 cells have not finished \({missing}\); resume 1/3"
  ):
    sweep.merge(str(wd), verbose=False)
  assert launcher(wd, None, {**SEQUENTIAL, "shard": (1, 3)}) == 0
  rows = sweep.merge(str(wd), verbose=False)
  assert [r["name"] for r in rows] == _names()
  _assert_same_sweep(str(wd), reference("sequential"))
  info = _status(str(wd))
  assert [s["shard"] for s in info["merged_shards"]] == ["0/3", "1/3", "2/3"]
  # The workdir holds a 3-way split: another split, or the whole grid at once, is refused.
  for shard in ((0, 2), None):
    with pytest.raises(ValueError, match=r"differs in \['shards'\]"):
      sweep.run_sweep(
        _config(), GRID, str(wd), shard=shard, resume=True, verbose=False, **SEQUENTIAL
      )


def test_submitit_runs_the_shards_as_a_job_array_that_merges_into_the_one_machine_sweep(
  tmp_path, reference
):
  submitit = pytest.importorskip("submitit")
  wd = str(tmp_path / "sweep")
  executor = submitit.DebugExecutor(folder=str(tmp_path / "jobs"))  # the jobs, in this process
  jobs = sweep.submit(_config(), GRID, wd, 2, executor, verbose=False, **SEQUENTIAL)
  with warnings.catch_warnings():  # submitit's debug jobs leave their log files to the collector
    warnings.simplefilter("ignore", ResourceWarning)
    names = [[r["name"] for r in job.result()] for job in jobs]
    gc.collect()
  assert names == [_names()[0::2], _names()[1::2]]
  job = jobs[1].submission().function
  assert isinstance(job, sweep.ShardJob) and job.shard == sweep.Shard(1, 2)
  assert job.checkpoint().function is job  # preempted: requeued as itself, and it resumes
  sweep.merge(wd, verbose=False)
  _assert_same_sweep(wd, reference("sequential"))
