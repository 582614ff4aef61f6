"""Choosing a strategy by measuring it (``auto``), and worker processes (``processes``).

CPU-only helpers kept apart from the sweep's core: the core (`wd_jax.engine.sweep.group`) trains a
group by vmap or one run at a time through the one training loop; this module times those
strategies on the machine at hand and can spread the runs over processes pinned to cores.

``auto`` compiles and times a few steps of ``vmap``, then of ``sequential`` (skipped when vmap has
less left to run than a compilation costs), on the group with the most work, and extrapolates both
to the whole sweep. The winner's compilation is reused, and so are its measured steps when they
all come before the first logging step (the winner's runs continue from the measured state,
bitwise as if it had not been measured); the loser's compilation and ~0.2 s of steps are the
price of measuring. For ``processes`` it adds an optimistic estimate (this process's build +
compile time, plus the measured CPU time of the work shared over the workers); only when that
could win are the workers started in standby to time their own steps, and kept if they win. The
choice and every measurement go to ``strategy.json`` and ``summary.md``. The choice is also
recorded per sweep shape (`auto_cache_key`: jax/jaxlib versions, backend, device kind and
count, usable cores, every group's program and size) in `auto_cache_path()`, like an autotuning
cache: a later sweep of the same shape takes it without measuring (``remeasure=True`` measures
again; ``WD_JAX_AUTO_CACHE=off`` disables the record). Every timing comes from `time_steps`, the
one place a test replaces to steer the choice without reading the clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from wd_jax.engine import loop as loop_lib
from wd_jax.engine.runlog import write_atomic
from wd_jax.engine.sweep.grid import Run, group_key
from wd_jax.engine.sweep.group import (
  Group,
  build_groups,
  default_chunk_size,
  run_sequential,
  split_evenly,
)

# auto: time each candidate for at least this long (and at least _MIN_TIMED_STEPS steps).
_MEASURE_SECONDS = 0.2
_MIN_TIMED_STEPS = 3


def time_steps(fn, state, source, limit: int) -> tuple[float, float, float, int, Any]:
  """(compile + first step seconds, wall s per step, CPU s per step, steps timed, final state).

  Times at least `_MIN_TIMED_STEPS` steps, then stops after `_MEASURE_SECONDS` or when `limit`
  steps (the first, untimed one included) have run. `source(step)` is the step's batch
  argument. `auto` takes its measurements only from here, so a test can inject them.
  """
  t0 = time.perf_counter()
  state, _ = fn(state, source(0))
  jax.block_until_ready(state)
  first = time.perf_counter() - t0
  n, t1, c1 = 0, time.perf_counter(), time.process_time()
  while n < _MIN_TIMED_STEPS or (time.perf_counter() - t1 < _MEASURE_SECONDS and n + 1 < limit):
    state, _ = fn(state, source(n + 1))
    n += 1
    if n % 4 == 0:
      jax.block_until_ready(state)
  jax.block_until_ready(state)
  wall, cpu = time.perf_counter() - t1, time.process_time() - c1
  return first, wall / n, cpu / n, n, state


def _reusable_steps(config: ml_collections.ConfigDict) -> int:
  """Steps `auto` may time and then keep as training: all before the first step that logs,
  runs diagnostics or ends the run (those need the training loop's bookkeeping)."""
  return loop_lib.Cadence.from_config(config).first_bookkeeping_step() - 1


# ----------------------------------------------------------------------------------------------
# Worker processes.

_WORKER_BOOT = (
  "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(',')}); "
  "from wd_jax.engine.sweep import tuning; tuning.die_with_parent(int(sys.argv[3])); "
  "sys.exit(tuning.worker_main(sys.argv[1]))"
)


def die_with_parent(parent: int) -> None:
  """A worker exits when the sweep process that started it dies, even by SIGKILL (Linux
  ``PR_SET_PDEATHSIG``); if the parent is already gone, it exits at once."""
  import ctypes
  import signal as signal_lib

  with contextlib.suppress(OSError, AttributeError):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal_lib.SIGKILL)  # PR_SET_PDEATHSIG = 1
  if os.getppid() != parent:  # the parent died before prctl took effect
    os._exit(1)


def _assign(runs: Sequence[Run], num_workers: int) -> list[list[Run]]:
  """Runs dealt to workers by total steps (longest first), each worker's runs kept in order."""
  loads = [0] * num_workers
  shares: list[list[Run]] = [[] for _ in range(num_workers)]
  for run in sorted(runs, key=lambda r: (-r.config.steps, r.index)):
    w = loads.index(min(loads))
    shares[w].append(run)
    loads[w] += run.config.steps
  return [sorted(s, key=lambda r: r.index) for s in shares if s]


def _worker_env(cores: Sequence[int]) -> dict[str, str]:
  env = dict(os.environ)
  flags = [
    f
    for f in env.get("XLA_FLAGS", "").split()
    if not f.startswith(("--xla_force_host_platform_device_count", "--xla_cpu_multi_thread_eigen"))
  ]
  if len(cores) == 1:
    flags.append("--xla_cpu_multi_thread_eigen=false")
  env["XLA_FLAGS"] = " ".join(flags)
  env["PJRT_NPROC"] = str(len(cores))  # sizes XLA:CPU's intra-op thread pool
  env["OMP_NUM_THREADS"] = str(len(cores))
  env["JAX_PLATFORMS"] = "cpu"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  return env


class Workers:
  """`num_workers` worker processes, each pinned to its own cores, running shares of the runs."""

  def __init__(self, runs, workdir, num_workers, *, standby, tensorboard, return_states):
    # Inside the workdir, so that even a SIGKILLed sweep leaves nothing behind elsewhere.
    self.tmp = tempfile.mkdtemp(prefix=".workers-", dir=workdir)
    cores = sorted(os.sched_getaffinity(0))
    shares = _assign(runs, num_workers)
    self.procs, self.logs, self.shares = [], [], shares
    self.t0 = time.perf_counter()
    for w, share in enumerate(shares):
      mine = cores[w :: len(shares)] or [cores[w % len(cores)]]
      spec = {
        "runs": share,
        "workdir": os.path.abspath(workdir),
        "standby": standby,
        "tensorboard": tensorboard,
        "return_states": return_states,
        "ready": os.path.join(self.tmp, f"ready-{w}.json"),
        "out": os.path.join(self.tmp, f"out-{w}.pkl"),
        "launched_at": time.time(),
      }
      spec_path = os.path.join(self.tmp, f"spec-{w}.pkl")
      with open(spec_path, "wb") as f:
        pickle.dump(spec, f)
      log_path = os.path.join(self.tmp, f"worker-{w}.log")
      log = open(log_path, "w")  # closed in close()
      self.logs.append((log, log_path, spec))
      self.procs.append(
        subprocess.Popen(
          [
            sys.executable,
            "-c",
            _WORKER_BOOT,
            spec_path,
            ",".join(map(str, mine)),
            str(os.getpid()),
          ],
          stdin=subprocess.PIPE,
          stdout=log,
          stderr=subprocess.STDOUT,
          env=_worker_env(mine),
          text=True,
        )
      )

  def _failed(self, w: int) -> RuntimeError:
    self.logs[w][0].flush()
    with open(self.logs[w][1]) as f:
      tail = f.read()[-3000:]
    return RuntimeError(f"sweep worker {w} exited with {self.procs[w].returncode}:\n{tail}")

  def wait_ready(self) -> list[dict[str, Any]]:
    """Each worker's measurement (standby mode), once all have built and timed their step."""
    out: list[dict[str, Any] | None] = [None] * len(self.procs)
    while any(o is None for o in out):
      for w, (_, _, spec) in enumerate(self.logs):
        if out[w] is None and os.path.exists(spec["ready"]):
          with open(spec["ready"]) as f:
            out[w] = json.load(f) | {"startup_sec": time.perf_counter() - self.t0}
        elif out[w] is None and self.procs[w].poll() is not None:
          raise self._failed(w)
      time.sleep(0.02)
    return out  # type: ignore[return-value]

  def send(self, word: str) -> None:
    for p in self.procs:
      with contextlib.suppress(BrokenPipeError, OSError):
        p.stdin.write(word + "\n")
        p.stdin.flush()
        p.stdin.close()

  def join(self, say, stop=None) -> tuple[list[dict], list[dict]]:
    """Every worker's rows and info, once all have finished; with `stop()` true (a signal),
    the workers are killed and the rows finished so far are not returned."""
    rows, infos = [], []
    for w, p in enumerate(self.procs):
      while p.poll() is None:
        if stop is not None and stop():
          self.close()
          return rows, infos
        time.sleep(0.05)
      if p.returncode != 0:
        raise self._failed(w)
      with open(self.logs[w][2]["out"], "rb") as f:
        out = pickle.load(f)
      rows += out["rows"]
      infos.append(out["info"])
      if say:
        say(f"[processes] worker {w} done: {len(out['rows'])} runs on cores {out['info']['cores']}")
    return rows, infos

  def close(self) -> None:
    for p in self.procs:
      if p.poll() is None:
        p.kill()
        p.wait()
      if p.stdin and not p.stdin.closed:
        with contextlib.suppress(OSError):
          p.stdin.close()
    for log, _, _ in self.logs:
      log.close()
    shutil.rmtree(self.tmp, ignore_errors=True)


def worker_main(spec_path: str) -> int:
  """A worker process: builds its groups, optionally times its step and waits for go/stop,
  then trains its share sequentially and pickles its rows."""
  started = time.time()
  with open(spec_path, "rb") as f:
    spec = pickle.load(f)
  groups = build_groups(spec["runs"])
  info: dict[str, Any] = {
    "cores": sorted(os.sched_getaffinity(0)),
    "import_sec": started - spec["launched_at"],  # interpreter, jax and wd_jax
    "build_sec": time.time() - started,  # dataset and model
  }
  if spec["standby"]:
    g = max(groups, key=lambda g: g.work)
    state = g.init_states(g.runs[:1], batched=False)
    step = g.programs[False].step()
    first, step_sec, cpu_sec, n, _ = time_steps(step, state, g.source(0), g.config.steps)
    write_atomic(
      spec["ready"],
      json.dumps(
        {
          "compile_sec": first,
          "step_sec": step_sec,
          "cpu_sec_per_step": cpu_sec,
          "timed_steps": n,
          "work": sum(x.work for x in groups),
        }
      ),
    )
    if sys.stdin.readline().strip() != "go":
      return 0
  t_run = time.time()
  rows = run_sequential(
    groups, spec["workdir"], spec["tensorboard"], None, spec["return_states"], "processes"
  )
  info["train_sec"] = time.time() - t_run  # compilation included
  info["compiles"] = [g.compile_counts() for g in groups]
  tmp = spec["out"] + ".tmp"
  with open(tmp, "wb") as f:
    pickle.dump({"rows": rows, "info": info}, f)
  os.replace(tmp, spec["out"])
  return 0


# ----------------------------------------------------------------------------------------------
# auto.


def _choose(
  groups, chunk_size, num_workers, say, workdir, tensorboard, return_states, allow_processes=True
) -> tuple[str, dict[str, Any], Any, dict[str, dict]]:
  """Measures the candidates; returns (strategy, measurements, workers kept in standby, warm).

  Predictions are of the time still to spend (the compilation a measurement did is reused by
  the strategy chosen), for the whole sweep, extrapolated from the group with the most work.
  The measured steps are real training steps when none of them has to log (`_reusable_steps`):
  ``warm[strategy]`` then holds the measured state, which that strategy continues from.
  """
  gi = max(range(len(groups)), key=lambda i: groups[i].work)
  g = groups[gi]
  total_work = sum(x.work for x in groups)
  m: dict[str, Any] = {"measured_on_group_with_configs": len(g.runs), "config_steps": total_work}
  reusable = _reusable_steps(g.config)
  # Never time more steps than one run trains; keep them if the loop need not have seen them.
  limit = reusable if reusable >= _MIN_TIMED_STEPS + 1 else g.config.steps
  warm: dict[str, dict] = {}

  def keep(name, key, state, n) -> int:
    if n + 1 <= reusable:
      warm[name] = {key: (state, n + 1)}
      return n + 1
    return 0

  def measure_vmap() -> float:
    size = chunk_size or default_chunk_size(g)
    chunks = split_evenly(g.runs, size)
    state = g.init_states(chunks[0], batched=True)
    first, step, cpu, n, state = time_steps(g.programs[True].step(), state, g.source(0), limit)
    kept = keep("vmap", (gi, chunks[0][0].index), state, n)
    per_config = step / len(chunks[0])
    extra_compiles = len({len(c) for c in chunks}) - 1 + len(groups) - 1
    m["vmap"] = {
      "chunk_size": len(chunks[0]),
      "compile_sec": first,
      "step_sec": step,
      "step_sec_per_config": per_config,
      "timed_steps": n,
      "steps_kept": kept,
      "predicted_sec": (total_work - kept * len(chunks[0])) * per_config + extra_compiles * first,
    }
    return cpu / len(chunks[0])

  def measure_sequential() -> float:
    state = g.init_states(g.runs[:1], batched=False)
    first, step, cpu, n, state = time_steps(g.programs[False].step(), state, g.source(0), limit)
    kept = keep("sequential", (gi, g.runs[0].index), state, n)
    m["sequential"] = {
      "compile_sec": first,
      "step_sec": step,
      "cpu_sec_per_step": cpu,
      "timed_steps": n,
      "steps_kept": kept,
      "predicted_sec": (total_work - kept) * step + (len(groups) - 1) * first,
    }
    return cpu

  if max(len(x.runs) for x in groups) > 1:
    cpu_per_config_step = measure_vmap()
    # Measuring sequential costs a compilation (about vmap's; compiling it on another thread
    # meanwhile saved nothing here: XLA's compilations did not overlap): only worth it when vmap
    # has more than that left to run.
    if m["vmap"]["predicted_sec"] > m["vmap"]["compile_sec"]:
      cpu_per_config_step = measure_sequential()
    else:
      m["sequential"] = {"skipped": "vmap has less left to run than sequential would compile"}
  else:
    cpu_per_config_step = measure_sequential()
  measured = [s for s in ("vmap", "sequential") if "predicted_sec" in m.get(s, {})]
  best = min(measured, key=lambda s: m[s]["predicted_sec"])
  best_sec = m[best]["predicted_sec"]
  first = m[best]["compile_sec"]
  workers = None
  nw = min(num_workers or len(os.sched_getaffinity(0)), sum(len(x.runs) for x in groups))
  if allow_processes and nw >= 2 and jax.default_backend() == "cpu":
    # Workers build and compile what we did (after importing jax), then share the work, whose
    # CPU time is roughly conserved: an optimistic estimate, so losing candidates cost nothing.
    optimistic = g.build_seconds + first + total_work * cpu_per_config_step / nw
    m["processes"] = {"num_workers": nw, "optimistic_sec": optimistic}
    if optimistic < best_sec:
      if say:
        say(f"[auto] timing {nw} worker processes ({optimistic:.1f}s possible < {best_sec:.1f}s)")
      workers = Workers(
        [r for x in groups for r in x.runs],
        workdir,
        nw,
        standby=True,
        tensorboard=tensorboard,
        return_states=return_states,
      )
  return best, m, workers, warm


# A recorded choice per sweep shape, so that repeating a sweep does not pay for measuring again.
AUTO_CACHE_ENV = "WD_JAX_AUTO_CACHE"
_AUTO_CACHE_ENTRIES = 200


def auto_cache_path() -> str | None:
  """Where `auto` records its choices: ``$WD_JAX_AUTO_CACHE`` (``off`` or empty disables it),
  else ``$XDG_CACHE_HOME/wd_jax/sweep_auto.json`` (default ``~/.cache/wd_jax/...``)."""
  value = os.environ.get(AUTO_CACHE_ENV)
  if value is not None:
    return None if value.strip().lower() in ("", "0", "off", "false", "no") else value
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "wd_jax", "sweep_auto.json")


def auto_cache_key(groups: Sequence[Group], chunk_size, num_workers) -> str:
  """What `auto`'s choice depends on: software, hardware, and every group's program and size."""
  import jaxlib

  dev = jax.devices()[0]
  parts = {
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
    "device_kind": dev.device_kind,
    "devices": jax.device_count(),
    "usable_cores": len(os.sched_getaffinity(0)),
    "groups": [[group_key(g.config), len(g.runs)] for g in groups],
    "chunk_size": chunk_size,
    "num_workers": num_workers,
  }
  return json.dumps(parts, sort_keys=True)


_CHOICES = ("vmap", "sequential", "processes")


def _valid_entry(entry: Any) -> bool:
  """A recorded choice has the shape `_write_auto_cache` writes; anything else is ignored."""
  return (
    isinstance(entry, dict)
    and entry.get("chosen") in _CHOICES
    and isinstance(entry.get("measured_at"), (int, float))
    and isinstance(entry.get("measurements"), dict)
  )


def _read_auto_cache(path: str | None) -> dict[str, Any]:
  """The recorded choices, key -> entry; unreadable files and malformed entries are dropped."""
  if not path or not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      table = json.load(f)
  except (OSError, ValueError):  # unreadable or corrupt: measure again (and rewrite it)
    return {}
  if not isinstance(table, dict):
    return {}
  return {k: v for k, v in table.items() if isinstance(k, str) and _valid_entry(v)}


@contextlib.contextmanager
def _locked(path: str):
  """An exclusive ``flock`` on ``path + ".lock"`` for a read-modify-write of the record."""
  import fcntl

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # closing releases the lock


def _write_auto_cache(path: str | None, key: str, chosen: str, measurements) -> None:
  """Adds one choice to the record; concurrent sweeps serialise on a file lock, so none of
  their entries is lost."""
  if not path:
    return
  try:
    with _locked(path):
      table = _read_auto_cache(path)
      table.pop(key, None)
      table[key] = {"chosen": chosen, "measured_at": time.time(), "measurements": measurements}
      keep = dict(list(table.items())[-_AUTO_CACHE_ENTRIES:])  # oldest entries go first
      write_atomic(path, json.dumps(keep, default=str) + "\n")
  except OSError:  # a read-only home directory must not fail the sweep
    pass


def _decide_processes(workers, m, best, say) -> str:
  ready = workers.wait_ready()
  remaining = max(r["work"] * r["step_sec"] for r in ready)
  m["processes"].update(
    startup_sec=max(r["startup_sec"] for r in ready),
    step_sec=[r["step_sec"] for r in ready],
    predicted_sec=remaining,
  )
  if remaining < m[best]["predicted_sec"]:
    return "processes"
  return best


def choose(
  groups,
  workdir,
  *,
  chunk_size,
  num_workers,
  remeasure,
  say,
  tensorboard,
  return_states,
  allow_processes,
) -> tuple[str, dict[str, Any], Any, dict]:
  """``auto``: the recorded choice for this sweep's shape, or a measured one.

  Returns (strategy, info to record in strategy.json, worker processes kept in standby or
  None, the chosen strategy's measured states to continue from).
  """
  info: dict[str, Any] = {}
  cache_path = auto_cache_path()
  key = auto_cache_key(groups, chunk_size, num_workers)
  recorded = None if remeasure else _read_auto_cache(cache_path).get(key)
  info["auto_cache"] = cache_path
  if recorded is not None:
    chosen = recorded["chosen"]
    info["recorded_choice"] = {
      "measured_at": recorded.get("measured_at"),
      "measurements": recorded.get("measurements"),
    }
    if say:
      say(
        f"[auto] {chosen}, as recorded for this sweep's shape in {cache_path} (remeasure=True"
        " measures again)"
      )
    return chosen, info, None, {}
  chosen, info["measurements"], workers, warm = _choose(
    groups, chunk_size, num_workers, say, workdir, tensorboard, return_states, allow_processes
  )
  if workers is not None:
    chosen = _decide_processes(workers, info["measurements"], chosen, say)
    if chosen != "processes":
      workers.send("stop")
      workers.close()
      workers = None
  _write_auto_cache(cache_path, key, chosen, info["measurements"])
  if say:
    say(f"[auto] chose {chosen}: " + json.dumps(info["measurements"], default=str))
  return chosen, info, workers, warm.get(chosen, {})  # frees the other strategy's states
