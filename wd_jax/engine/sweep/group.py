"""The core of a sweep: a group of runs that share one compiled program, trained through the one
training loop (`wd_jax.engine.loop.run_loop`) either stacked under ``jax.vmap`` or one at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np

from wd_jax.engine import config as config_lib
from wd_jax.engine import experiment
from wd_jax.engine import loop as loop_lib
from wd_jax.engine.runlog import MetricWriter, write_atomic
from wd_jax.engine.sweep.grid import ALIASES, BY_NAME, Run, UserParts, group_runs

# Share of the free host memory one vmapped chunk may use (accelerators: of the free device memory).
HOST_MEMORY_FRACTION = 0.25
DEVICE_MEMORY_FRACTION = 0.5
_COLUMN_OF_PATH = {
  "optimizer.name": "optimizer",
  "optimizer.learning_rate": "learning_rate",
  "optimizer.weight_decay": "weight_decay",
  "seed": "seed",
}


class Group:
  """Runs that differ only in lr, λ and seed: one Experiment and one compiled program for all.

  The peak lr and λ live in `optax.inject_hyperparams` state
  (`wd_jax.engine.config.build_injectable_optimizer`) and the seed in the initial parameters and the
  batch key, so one step serves every run of the group, stacked or one at a time.
  """

  def __init__(self, runs: Sequence[Run], user: UserParts = BY_NAME):
    self.runs = list(runs)
    self.config = config = self.runs[0].config
    t0 = time.perf_counter()
    base = experiment.build(config, model=user.model, data=user.data, optimizer=user.optimizer)
    self.optimizer = config_lib.build_injectable_optimizer(config, recipe=user.optimizer)
    self.exp = dataclasses.replace(base, optimizer=self.optimizer)
    self.programs = {b: loop_lib.Program(self.exp, batched=b) for b in (False, True)}
    self._bytes_per_config: int | None = None
    self.build_seconds = time.perf_counter() - t0

  @property
  def work(self) -> int:
    """Configuration-steps this group trains."""
    return len(self.runs) * self.config.steps

  def bytes_per_config(self) -> int:
    """Memory one configuration needs in a vmapped step (see `default_chunk_size`), cached."""
    if self._bytes_per_config is None:
      state = self.init_states(self.runs[:1], batched=False)
      source = self.source(0)
      closed = jax.make_jaxpr(experiment.make_train_step(self.exp))(state, source(0))
      self._bytes_per_config = 3 * _tree_bytes(state) + _jaxpr_bytes(closed.jaxpr)
    return self._bytes_per_config

  def init_state(self, run: Run) -> experiment.TrainState:
    """`experiment.build(run.config).init_state`, with the injectable optimizer's state."""
    o = run.config.optimizer
    return self.exp.initial_state(
      run.config.seed,
      opt_state_fn=lambda params: config_lib.set_hyperparams(
        self.optimizer.init(params), learning_rate=o.learning_rate, weight_decay=o.weight_decay
      ),
    )

  def init_states(self, runs: Sequence[Run], batched: bool):
    states = [self.init_state(r) for r in runs]
    if batched:
      return jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    (state,) = states
    return state

  def source(self, start: int):
    """The batch argument of the step from `start` on (every run of a group sees the same)."""
    return experiment.batch_source(self.exp, self.config.batch_size, start, place=lambda x: x)

  def run_experiment(self, run: Run) -> experiment.Experiment:
    """The group's Experiment seen from one run: its own config and lr/λ schedules."""
    cfg = run.config
    return dataclasses.replace(
      self.exp,
      config=cfg,
      lr_schedule=config_lib.learning_rate_schedule(cfg),
      wd_schedule=config_lib.weight_decay_schedule(cfg),
    )

  def compile_counts(self) -> dict[str, int]:
    """Compiled executables of every jitted function of this group (1 each: no recompilation)."""
    out = {}
    for program in self.programs.values():
      out.update(program.compile_counts())
    return out

  def train(
    self,
    runs: Sequence[Run],
    workdir: str,
    *,
    batched: bool,
    strategy: str,
    tensorboard: bool = False,
    report: Any = None,
    return_states: bool = False,
    warm: tuple[Any, int] | None = None,
    stop: Callable[[], bool] | None = None,
  ) -> list[dict[str, Any]]:
    """Trains `runs` (one at a time, or stacked if `batched`) through `loop.run_loop`,
    writing their run directories; returns their rows. `stop()` true ends the loop after the
    current step (a preemption signal). `report` (a `wd_jax.engine.progress.Task`) is advanced by
    the
    configuration-steps done.

    `warm` = (state, steps): continue from the state `auto` measured, `steps` steps in (none of
    them a logging or diagnostics step), instead of from step 0.
    """
    config = self.config
    num = len(runs)
    if not batched and num != 1:
      raise ValueError(f"an unbatched call trains one run, got {num}.")
    program = self.programs[batched]
    records = [self._record(run, workdir, tensorboard, program) for run in runs]
    state, start = warm if warm is not None else (self.init_states(runs, batched), 0)
    cadence = loop_lib.Cadence.from_config(config, checkpoints=False)
    reported = [start]

    def progress(nxt: int, recs, rate: float) -> None:
      live = [r for r in recs if not r.done]
      report.advance((nxt - reported[0]) * num, _status_line(live, num, program.eval_split))
      reported[0] = nxt

    try:
      state = loop_lib.run_loop(
        program,
        state,
        records,
        cadence=cadence,
        source=self.source(start),
        start=start,
        progress=progress if report is not None else None,
        stop=stop,
      )
      steps_done = np.broadcast_to(np.asarray(jax.device_get(state.step)), (num,))
    finally:
      for record in records:
        record.close()
    if report is not None and reported[0] < config.steps:  # runs that ended early (diverged)
      report.advance((config.steps - reported[0]) * num)
    host_state = jax.device_get(state) if return_states else None
    rows = []
    for i, (run, record) in enumerate(zip(runs, records)):
      row = run_row(run, record, int(steps_done[i]), strategy, program.eval_split)
      if return_states:
        row["state"] = jax.tree.map(lambda x, i=i: x[i], host_state) if batched else host_state
      rows.append(row)
    return rows

  def _record(self, run: Run, workdir: str, tensorboard: bool, program) -> loop_lib.RunRecord:
    run_dir = os.path.join(workdir, "runs", run.name)
    os.makedirs(run_dir, exist_ok=True)
    write_atomic(
      os.path.join(run_dir, "config.json"),
      run.config.to_json_best_effort(indent=2, sort_keys=True) + "\n",
    )
    return loop_lib.RunRecord(
      self.run_experiment(run),
      MetricWriter(run_dir, tensorboard=tensorboard),
      select_metric=f"{program.eval_split}_accuracy",
    )


def run_row(
  run: Run, record: loop_lib.RunRecord, steps_done: int, strategy: str, split: str
) -> dict[str, Any]:
  """One row of results.csv: the run's hyperparameters, final metrics and where it diverged."""
  cfg = run.config
  row: dict[str, Any] = {
    "index": run.index,
    "name": run.name,
    "optimizer": cfg.optimizer.name,
    "learning_rate": cfg.optimizer.learning_rate,
    "weight_decay": cfg.optimizer.weight_decay,
    "seed": cfg.seed,
  }
  for field, value in run.overrides.items():
    row.setdefault(_COLUMN_OF_PATH.get(ALIASES.get(field, field), field), value)
  diverged = record.diverged_at is not None
  final = {} if diverged else record.final
  for k in ("loss", "accuracy", f"{split}_loss", f"{split}_accuracy"):
    row[k] = final.get(k, math.nan)
  row[f"best_{split}_accuracy"] = math.nan if record.best is None else record.best
  row[f"best_{split}_step"] = record.best_step
  row["diverged"] = diverged
  row["diverged_at_step"] = record.diverged_at
  row["steps"] = record.diverged_at if diverged else steps_done  # train.fit stops there too
  row["strategy"] = strategy
  row["run_dir"] = os.path.join("runs", run.name)
  row["wall_time_sec"] = time.perf_counter() - record.t0
  return row


def _status_line(live, num: int, split: str) -> str:
  """The sweep's progress info: runs still training, and their loss and accuracy ranges."""
  losses = [r.final.get("loss", math.nan) for r in live]
  text = f"running {len(live)}/{num}"
  if losses:
    text += f"  loss {min(losses):.4f}..{max(losses):.4f}"
  key = f"{split}_accuracy"
  accs = [r.final[key] for r in live if key in r.final]
  if accs:
    text += f"  {key} {min(accs):.4f}..{max(accs):.4f}"
  return text


def build_groups(runs: Sequence[Run], user: UserParts = BY_NAME) -> list[Group]:
  """One `Group` per compiled program; builds (and so checks) every model and optimizer."""
  groups = []
  for rs in group_runs(runs):
    try:
      groups.append(Group(rs, user))
    except (TypeError, ValueError) as e:
      fields = sorted({f for r in rs for f in r.overrides})
      names = ", ".join(r.name for r in rs[:3]) + (" ..." if len(rs) > 3 else "")
      raise ValueError(
        f"sweep configurations {names} (grid fields {fields}) fail to build: {e}"
      ) from e
  return groups


def run_vmap(
  groups, workdir, chunk_size, tensorboard, report, return_states, warm=None, stop=None
) -> list[dict]:
  """Every group in chunks of stacked configurations. `warm`: {(group index, first run index of
  the chunk): (state, steps)} from `auto`."""
  warm = warm or {}
  rows = []
  for g, group in enumerate(groups):
    size = chunk_size or default_chunk_size(group)
    chunks = split_evenly(group.runs, size)
    for chunk in chunks:
      rows += group.train(
        chunk,
        workdir,
        batched=True,
        strategy="vmap",
        tensorboard=tensorboard,
        report=report,
        return_states=return_states,
        warm=warm.get((g, chunk[0].index)),
        stop=stop,
      )
      if stop is not None and stop():
        return rows
  return rows


def run_sequential(
  groups,
  workdir,
  tensorboard,
  report,
  return_states,
  strategy: str = "sequential",
  warm=None,
  stop=None,
) -> list[dict]:
  """Every run one after another through its group's one compiled step. `warm`:
  {(group index, run index): (state, steps)} from `auto`."""
  warm = warm or {}
  rows = []
  for g, group in enumerate(groups):
    for run in group.runs:
      rows += group.train(
        [run],
        workdir,
        batched=False,
        strategy=strategy,
        tensorboard=tensorboard,
        report=report,
        return_states=return_states,
        warm=warm.get((g, run.index)),
        stop=stop,
      )
      if stop is not None and stop():
        return rows
  return rows


# ----------------------------------------------------------------------------------------------
# How many configurations fit one vmapped program.


def _tree_bytes(tree) -> int:
  return sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _itemsize(dtype: Any) -> int:
  try:
    return np.dtype(dtype).itemsize
  except TypeError:  # extended dtypes (PRNG keys)
    return int(getattr(dtype, "itemsize", 8))


def _jaxpr_bytes(jaxpr: jex_core.Jaxpr) -> int:
  """Σ of the sizes of every value a jaxpr computes (recursively): an upper bound of its live
  memory, since XLA fuses and reuses buffers."""
  total = 0
  for eqn in jaxpr.eqns:
    for v in eqn.outvars:
      aval = v.aval
      if hasattr(aval, "shape") and hasattr(aval, "dtype"):
        total += int(np.prod(aval.shape)) * _itemsize(aval.dtype)
    for sub in jex_core.jaxprs_in_params(eqn.params):
      total += _jaxpr_bytes(sub)
  return total


def memory_budget_bytes() -> int:
  """Memory one vmapped chunk may use: `DEVICE_MEMORY_FRACTION` of the default device's free
  memory when it reports it (GPU/TPU), else `HOST_MEMORY_FRACTION` of the free host memory."""
  with contextlib.suppress(Exception):
    stats = jax.devices()[0].memory_stats()
    if stats and "bytes_limit" in stats:
      free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
      return int(DEVICE_MEMORY_FRACTION * free)
  free = None
  with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemAvailable:"):
        free = int(line.split()[1]) * 1024
  if free is None:
    try:
      free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
      free = 4 << 30
  return int(HOST_MEMORY_FRACTION * free)


def split_evenly(items: Sequence[Any], size: int) -> list[list[Any]]:
  """`items` in ceil(len/size) chunks of balanced sizes (at most two distinct sizes)."""
  n = max(1, math.ceil(len(items) / max(1, size)))
  base, extra = divmod(len(items), n)
  out, start = [], 0
  for i in range(n):
    stop = start + base + (1 if i < extra else 0)
    out.append(list(items[start:stop]))
    start = stop
  return out


def default_chunk_size(group: Group, budget_bytes: int | None = None) -> int:
  """Configurations per vmapped program that fit the memory budget.

  Bytes per configuration: its TrainState three times (input, output, gradients/updates) plus
  every value the step computes (Σ of the sizes in its jaxpr: an upper bound, XLA fuses and
  reuses buffers). The budget is `memory_budget_bytes()` unless given. Never more than the
  group's number of configurations, never less than 1.
  """
  budget = memory_budget_bytes() if budget_bytes is None else budget_bytes
  return int(max(1, min(len(group.runs), budget // max(group.bytes_per_config(), 1))))
