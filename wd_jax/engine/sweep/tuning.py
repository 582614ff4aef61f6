"""Choosing a strategy by measuring it (``auto``), and worker processes (``processes``).

CPU-only helpers kept apart from the sweep's core: the core (`wd_jax.engine.sweep.group`) trains
a group by vmap or one run at a time through the one training loop; this module times those
strategies on the machine at hand and can spread the runs over processes pinned to cores.

``auto`` compiles and times a few steps of ``vmap``, then of ``sequential`` (skipped when vmap
has less left to run than a compilation costs), on the group with the most work, and
extrapolates both to the whole sweep. The winner's compilation is reused, and so are its
measured steps when they all come before the first logging step (the winner's runs continue
from the measured state, bitwise as if it had not been measured); the loser's compilation and
~0.2 s of steps are the price of measuring. For ``processes`` it adds an optimistic estimate
(this process's build + compile time, plus the measured CPU time of the work shared over the
workers); only when that could win are the workers started to time their own steps, and kept
if they win. The choice and every measurement go to ``strategy.json`` and ``summary.md``. The
choice is also recorded per sweep shape (`auto_cache_key`: jax/jaxlib versions, backend, device
kind and count, usable cores, every group's program and size) in `auto_cache_path()`, like an
autotuning cache: a later sweep of the same shape takes it without measuring
(``remeasure=True`` measures again; ``WD_JAX_AUTO_CACHE=off`` disables the record); concurrent
sweeps serialise their writes on a `filelock.FileLock`. Every timing comes from `time_steps`,
the one place a test replaces to steer the choice without reading the clock.

Worker processes are `concurrent.futures.ProcessPoolExecutor` s (``spawn``), one per worker so
that each has its own cores: the pool's initializer pins the worker
(``os.sched_setaffinity``), sizes XLA:CPU's thread pool to its cores (``PJRT_NPROC``, and
``--xla_cpu_multi_thread_eigen=false`` on one core) before JAX starts its backend, and watches
two things on a thread: the sweep's stop message (the worker then stops after its current step,
as the sweep does on SIGTERM) and the sweep process itself (``multiprocessing.parent_process``:
a worker exits at once when the sweep dies, even by SIGKILL). Workers write their runs' files
themselves; the sweep reads the finished rows from the runs' completion records.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import filelock
import jax
import ml_collections

from wd_jax.engine import loop as loop_lib
from wd_jax.engine import runlog
from wd_jax.engine.runlog import write_atomic
from wd_jax.engine.sweep import records
from wd_jax.engine.sweep.grid import Run, group_key
from wd_jax.engine.sweep.group import Group, Output, build_groups, run_sequential

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

_worker: dict[str, Any] = {}  # in a worker process: its stop flag, cores and built groups


def xla_env(num_cores: int) -> dict[str, str]:
  """The environment that sizes XLA:CPU to `num_cores` cores of one device."""
  flags = [
    f
    for f in os.environ.get("XLA_FLAGS", "").split()
    if not f.startswith(("--xla_force_host_platform_device_count", "--xla_cpu_multi_thread_eigen"))
  ]
  if num_cores == 1:
    flags.append("--xla_cpu_multi_thread_eigen=false")
  return {
    "XLA_FLAGS": " ".join(flags),
    "PJRT_NPROC": str(num_cores),  # sizes XLA:CPU's intra-op thread pool
    "OMP_NUM_THREADS": str(num_cores),
    "JAX_PLATFORMS": "cpu",
  }


def _init_worker(cores: Sequence[int], stop_messages: Any, launched: float) -> None:
  """The pool's initializer, in the worker before JAX starts its backend: pin, size, watch.
  `launched`: when the sweep created the worker's pool (time.time())."""
  os.sched_setaffinity(0, cores)
  os.environ.update(xla_env(len(cores)))
  jax.config.update("jax_platforms", "cpu")
  stop = threading.Event()
  for s in (signal.SIGTERM, signal.SIGINT):  # a terminal's Ctrl-C reaches the workers too
    signal.signal(s, lambda *_: stop.set())
  parent = multiprocessing.parent_process()
  threading.Thread(target=_watch, args=(parent.sentinel, stop_messages, stop), daemon=True).start()
  _worker.update(stop=stop, cores=sorted(cores), import_sec=time.time() - launched)


def _watch(parent_sentinel: Any, stop_messages: Any, stop: threading.Event) -> None:
  """Exits the worker when the sweep process dies; sets `stop` when the sweep sends "stop"."""
  waiting = [parent_sentinel, stop_messages]
  while True:
    ready = multiprocessing.connection.wait(waiting)
    if parent_sentinel in ready:
      os._exit(1)
    with contextlib.suppress(EOFError, OSError):
      stop_messages.recv()
    stop.set()
    waiting = [parent_sentinel]


def _built(runs: Sequence[Run]) -> list[Group]:
  """The worker's groups for `runs`, built once (a measurement's compilation is kept)."""
  key = tuple(r.name for r in runs)
  if _worker.get("key") != key:
    t0 = time.time()
    _worker.update(key=key, groups=build_groups(runs), build_sec=time.time() - t0)
  return _worker["groups"]


def _measure_in_worker(runs: Sequence[Run]) -> dict[str, Any]:
  """A worker's measurement (for `auto`): its step's compile and step times."""
  groups = _built(runs)
  g = max(groups, key=lambda g: g.work)
  state = g.init_states(g.runs[:1], batched=False)
  first, step_sec, cpu_sec, n, _ = time_steps(
    g.programs[False].step(), state, g.source(0), g.config.steps
  )
  return {
    "compile_sec": first,
    "step_sec": step_sec,
    "cpu_sec_per_step": cpu_sec,
    "timed_steps": n,
    "work": sum(x.work for x in groups),
  }


def _train_in_worker(runs: Sequence[Run], out: Output, recorded: Sequence[str]) -> dict[str, Any]:
  """A worker's share: its runs one after another, each recorded in its directory."""
  t0 = time.time()
  groups = _built(runs)
  out.stop = _worker["stop"].is_set
  run_sequential(groups, out, frozenset(recorded), "processes")
  return {
    "cores": _worker["cores"],
    "devices": jax.local_device_count(),
    "import_sec": _worker["import_sec"],  # start, interpreter, jax and wd_jax
    "build_sec": _worker.get("build_sec"),  # dataset and model
    "train_sec": time.time() - t0,  # compilation included
    "compiles": [g.compile_counts() for g in groups],
    "stopped": out.stopped(),
  }


def _assign(runs: Sequence[Run], num_workers: int) -> list[list[Run]]:
  """Runs dealt to workers by total steps (longest first), each worker's runs kept in order;
  a worker may get none."""
  loads = [0] * num_workers
  shares: list[list[Run]] = [[] for _ in range(num_workers)]
  for run in sorted(runs, key=lambda r: (-r.config.steps, r.index)):
    w = loads.index(min(loads))
    shares[w].append(run)
    loads[w] += run.config.steps
  return [sorted(s, key=lambda r: r.index) for s in shares]


class _Seen:
  """Called while the workers train: each run they finished (its completion record exists)
  advances the progress report; a fault point for the kill tests follows each."""

  def __init__(self, runs: Sequence[Run], out: Output):
    self.runs, self.out = list(runs), out

  def __call__(self) -> None:
    for run in list(self.runs):
      if os.path.exists(
        os.path.join(records.run_dir(self.out.workdir, run.name), records.COMPLETION)
      ):
        self.runs.remove(run)
        if self.out.report is not None:
          self.out.report.advance(run.config.steps)
        runlog.fault("sweep:run_seen")


class Workers:
  """`num_workers` worker processes, worker w pinned to cores[w::num_workers], each with its
  share of `runs` (`_assign`); workers without runs are not started."""

  def __init__(self, runs: Sequence[Run], num_workers: int):
    cores = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")
    self.t0 = time.perf_counter()
    self.slots = []  # (worker index, its runs, its pool, the end that sends it "stop")
    for w, share in enumerate(_assign(runs, num_workers)):
      if share:
        mine = cores[w::num_workers] or [cores[w % len(cores)]]
        receive, send = ctx.Pipe(duplex=False)
        pool = concurrent.futures.ProcessPoolExecutor(
          1, mp_context=ctx, initializer=_init_worker, initargs=(mine, receive, time.time())
        )
        self.slots.append((w, share, pool, send))

  def _gather(self, futures: dict, stop: Callable[[], bool] | None, poll=None) -> list[Any]:
    """Each future's result once all are done; `stop()` true sends the workers "stop";
    `poll()` is called about every half second meanwhile."""
    pending, stopped, ticks = set(futures), False, 0
    while pending:
      _, pending = concurrent.futures.wait(pending, timeout=0.05)
      ticks += 1
      if poll is not None and (ticks % 10 == 0 or not pending):
        poll()
      if stop is not None and stop() and not stopped:
        self.stop()
        stopped = True
    out = []
    for future, w in futures.items():
      try:
        out.append(future.result())
      except BrokenProcessPool as e:
        raise RuntimeError(
          f"sweep worker {w} died (killed, out of memory, or started by a script that calls "
          "run_sweep without `if __name__ == '__main__':`, which worker processes import)."
        ) from e
      except Exception as e:
        raise RuntimeError(f"sweep worker {w} failed: {type(e).__name__}: {e}") from e
    return out

  def measure(self) -> list[dict[str, Any]]:
    """Each worker's measurement, once all have built and timed their step."""
    futures = {pool.submit(_measure_in_worker, share): w for w, share, pool, _ in self.slots}
    measured = self._gather(futures, None)
    ready = time.perf_counter() - self.t0  # start, imports, build, compilation and timing
    return [m | {"startup_sec": ready} for m in measured]

  def train(self, out: Output, recorded, stop, say) -> list[dict[str, Any]]:
    """Every worker's share trained and recorded; returns each worker's info. Meanwhile the
    runs the workers finish advance `out.report`."""
    mine = Output(out.workdir, out.tensorboard, shard=out.shard)  # no report, own stop
    futures = {
      pool.submit(_train_in_worker, share, mine, sorted(recorded)): w
      for w, share, pool, _ in self.slots
    }
    infos = self._gather(futures, stop, _Seen([r for s in self.slots for r in s[1]], out))
    if say:
      for (w, share, _, _), info in zip(self.slots, infos):
        say(f"[processes] worker {w} done: {len(share)} runs on cores {info['cores']}")
    return infos

  def stop(self) -> None:
    """Asks every worker to stop after its current step."""
    for *_, send in self.slots:
      with contextlib.suppress(OSError):
        send.send("stop")

  def close(self) -> None:
    self.stop()
    for *_, pool, send in self.slots:
      pool.shutdown(wait=True, cancel_futures=True)
      send.close()


# ----------------------------------------------------------------------------------------------
# auto.


class _Bench:
  """`auto`'s measurements on the group with the most work, into `m`; `warm[strategy]` keeps
  the measured state of a strategy whose timed steps all come before the first logging step."""

  def __init__(self, groups: Sequence[Group], m: dict[str, Any]):
    self.gi = max(range(len(groups)), key=lambda i: groups[i].work)
    self.g, self.m, self.groups = groups[self.gi], m, groups
    self.total_work = sum(x.work for x in groups)
    self.reusable = _reusable_steps(self.g.config)
    # Never time more steps than one run trains; keep them if the loop need not have seen them.
    self.limit = self.reusable if self.reusable >= _MIN_TIMED_STEPS + 1 else self.g.config.steps
    self.warm: dict[str, dict] = {}
    m.update(measured_on_group_with_configs=len(self.g.runs), config_steps=self.total_work)

  def _keep(self, name: str, first_run: int, state: Any, n: int) -> int:
    if n + 1 <= self.reusable:
      self.warm[name] = {(self.gi, first_run): (state, n + 1)}
      return n + 1
    return 0

  def vmap(self, chunks: Sequence[Sequence[int]]) -> float:
    """Times the group's first vmap chunk; returns CPU seconds per configuration-step."""
    g = self.g
    mine = [c for c in chunks if c[0] in {r.index for r in g.runs}]
    runs = [r for r in g.runs if r.index in set(mine[0])]
    state = g.init_states(runs, batched=True)
    first, step, cpu, n, state = time_steps(g.programs[True].step(), state, g.source(0), self.limit)
    kept = self._keep("vmap", runs[0].index, state, n)
    per_config = step / len(runs)
    extra_compiles = len({len(c) for c in mine}) - 1 + len(self.groups) - 1
    self.m["vmap"] = {
      "chunk_size": len(runs),
      "compile_sec": first,
      "step_sec": step,
      "step_sec_per_config": per_config,
      "timed_steps": n,
      "steps_kept": kept,
      "predicted_sec": (self.total_work - kept * len(runs)) * per_config + extra_compiles * first,
    }
    return cpu / len(runs)

  def sequential(self) -> float:
    """Times one run of the group; returns CPU seconds per configuration-step."""
    g = self.g
    state = g.init_states(g.runs[:1], batched=False)
    first, step, cpu, n, state = time_steps(
      g.programs[False].step(), state, g.source(0), self.limit
    )
    kept = self._keep("sequential", g.runs[0].index, state, n)
    self.m["sequential"] = {
      "compile_sec": first,
      "step_sec": step,
      "cpu_sec_per_step": cpu,
      "timed_steps": n,
      "steps_kept": kept,
      "predicted_sec": (self.total_work - kept) * step + (len(self.groups) - 1) * first,
    }
    return cpu


def _choose(groups, chunks, num_workers, say, allow_processes) -> tuple[str, dict, Any, dict]:
  """Measures the candidates; returns (strategy, measurements, workers kept, warm states).

  Predictions are of the time still to spend (the compilation a measurement did is reused by
  the strategy chosen), for the whole sweep, extrapolated from the group with the most work.
  """
  m: dict[str, Any] = {}
  bench = _Bench(groups, m)
  if max(len(x.runs) for x in groups) > 1:
    cpu_per_config_step = bench.vmap(chunks)
    # Measuring sequential costs a compilation (about vmap's; compiling it on another thread
    # meanwhile saved nothing here: XLA's compilations did not overlap): only worth it when vmap
    # has more than that left to run.
    if m["vmap"]["predicted_sec"] > m["vmap"]["compile_sec"]:
      cpu_per_config_step = bench.sequential()
    else:
      m["sequential"] = {"skipped": "vmap has less left to run than sequential would compile"}
  else:
    cpu_per_config_step = bench.sequential()
  measured = [s for s in ("vmap", "sequential") if "predicted_sec" in m.get(s, {})]
  best = min(measured, key=lambda s: m[s]["predicted_sec"])
  chosen, workers = best, None
  nw = min(num_workers or len(os.sched_getaffinity(0)), sum(len(x.runs) for x in groups))
  if allow_processes and nw >= 2 and jax.default_backend() == "cpu":
    # Workers build and compile what we did (after importing jax), then share the work, whose
    # CPU time is roughly conserved: an optimistic estimate, so losing candidates cost nothing.
    optimistic = bench.g.build_seconds + m[best]["compile_sec"]
    optimistic += bench.total_work * cpu_per_config_step / nw
    m["processes"] = {"num_workers": nw, "optimistic_sec": optimistic}
    if optimistic < m[best]["predicted_sec"]:
      if say:
        say(f"[auto] timing {nw} worker processes ({optimistic:.1f}s possible)")
      workers = Workers([r for x in groups for r in x.runs], nw)
      chosen = _decide_processes(workers, m, best)
      if chosen != "processes":
        workers.close()
        workers = None
  return chosen, m, workers, bench.warm.get(chosen, {})  # frees the other strategy's states


def _decide_processes(workers: Workers, m: dict[str, Any], best: str) -> str:
  ready = workers.measure()
  remaining = max(r["work"] * r["step_sec"] for r in ready)
  m["processes"].update(
    startup_sec=max(r["startup_sec"] for r in ready),
    step_sec=[r["step_sec"] for r in ready],
    predicted_sec=remaining,
  )
  return "processes" if remaining < m[best]["predicted_sec"] else best


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


def _write_auto_cache(path: str | None, key: str, chosen: str, measurements) -> None:
  """Adds one choice to the record; concurrent sweeps serialise on a file lock
  (`filelock.FileLock` on ``path + ".lock"``), so none of their entries is lost."""
  if not path:
    return
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with filelock.FileLock(path + ".lock"):
      table = _read_auto_cache(path)
      table.pop(key, None)
      table[key] = {"chosen": chosen, "measured_at": time.time(), "measurements": measurements}
      keep = dict(list(table.items())[-_AUTO_CACHE_ENTRIES:])  # oldest entries go first
      write_atomic(path, json.dumps(keep, default=str) + "\n")
  except OSError:  # a read-only home directory must not fail the sweep
    pass


def choose(
  groups, chunks, *, chunk_size, num_workers, remeasure, say, allow_processes
) -> tuple[str, dict[str, Any], Any, dict]:
  """``auto``: the recorded choice for this sweep's shape, or a measured one.

  `chunks` are the vmap chunks the sweep would run (`wd_jax.engine.sweep.group.plan_chunks`).
  Returns (strategy, info to record in strategy.json, worker processes that measured and won,
  or None, the chosen strategy's measured states to continue from).
  """
  cache_path = auto_cache_path()
  info: dict[str, Any] = {"auto_cache": cache_path}
  key = auto_cache_key(groups, chunk_size, num_workers)
  recorded = None if remeasure else _read_auto_cache(cache_path).get(key)
  if recorded is not None:
    info["recorded_choice"] = {
      "measured_at": recorded.get("measured_at"),
      "measurements": recorded.get("measurements"),
    }
    if say:
      say(
        f"[auto] {recorded['chosen']}, as recorded for this sweep's shape in {cache_path} "
        "(remeasure=True measures again)"
      )
    return recorded["chosen"], info, None, {}
  chosen, info["measurements"], workers, warm = _choose(
    groups, chunks, num_workers, say, allow_processes
  )
  _write_auto_cache(cache_path, key, chosen, info["measurements"])
  if say:
    say(f"[auto] chose {chosen}: " + json.dumps(info["measurements"], default=str))
  return chosen, info, workers, warm
