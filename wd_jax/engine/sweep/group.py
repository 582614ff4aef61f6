"""The core of a sweep: a group of runs that share one compiled program, trained through the one
training loop (`wd_jax.engine.loop.run_loop`) either stacked under ``jax.vmap`` or one at a time,
each finished run recorded in its directory (`wd_jax.engine.sweep.records`)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wd_jax.engine import config as config_lib
from wd_jax.engine import experiment, runlog
from wd_jax.engine import loop as loop_lib
from wd_jax.engine.runlog import MetricWriter, write_atomic
from wd_jax.engine.sweep import records as records_lib
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


@dataclasses.dataclass
class Output:
  """Where and how a sweep's runs are recorded.

  Attributes:
    workdir: the sweep's directory (runs go to ``runs/<name>/``).
    tensorboard: also write TensorBoard event files.
    report: a `wd_jax.engine.progress.Task` advanced by the configuration-steps done, or None.
    stop: true once training should end after the current step (a preemption signal).
    shard: the shard that trains these runs (``"i/n"``), noted in their completion records.
  """

  workdir: str
  tensorboard: bool = False
  report: Any = None
  stop: Callable[[], bool] | None = None
  shard: str | None = None

  def stopped(self) -> bool:
    return self.stop is not None and self.stop()


class Group:
  """Runs that differ only in lr, λ and seed: one Experiment and one compiled program for all.

  The peak lr and λ live in `optax.inject_hyperparams` state
  (`wd_jax.engine.config.build_injectable_optimizer`) and the seed in the initial parameters and
  the batch key, so one step serves every run of the group, stacked or one at a time.
  """

  def __init__(self, runs: Sequence[Run], user: UserParts = BY_NAME):
    self.runs = list(runs)
    self.config = config = self.runs[0].config
    t0 = time.perf_counter()
    base = experiment.build(config, model=user.model, data=user.data, optimizer=user.optimizer)
    self.optimizer = config_lib.build_injectable_optimizer(config, recipe=user.optimizer)
    self.exp = dataclasses.replace(base, optimizer=self.optimizer)
    self.programs = {b: loop_lib.Program(self.exp, batched=b) for b in (False, True)}
    self._memory: tuple[int, int] | None = None
    self.build_seconds = time.perf_counter() - t0

  @property
  def work(self) -> int:
    """Configuration-steps this group trains."""
    return len(self.runs) * self.config.steps

  def memory_bytes(self) -> tuple[int, int]:
    """(shared, per configuration) bytes of the group's vmapped step, cached.

    From XLA's memory analysis of the step compiled for all the group's configurations
    (``jax.jit(...).lower(...).compile().memory_analysis()``: arguments + outputs − donated
    aliases + temporaries); the batch source's arrays (the dataset on the device) are shared,
    the rest is divided evenly. That compilation is the one a single-chunk vmap sweep then
    runs (JAX reuses the executable), so it costs nothing extra there.
    """
    if self._memory is None:
      k = len(self.runs)
      one = self.init_state(self.runs[0])
      stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((k, *np.shape(x)), x.dtype), one)
      source = self.source(0)(0)
      compiled = self.programs[True].step().lower(stacked, source).compile()
      stats = compiled.memory_analysis()
      total = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
      )
      shared = _tree_bytes(source)
      self._memory = shared, max(1, math.ceil((total - shared) / k))
    return self._memory

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

  def final_state(self, workdir: str, run: Run) -> experiment.TrainState:
    """The final state a finished run recorded (host arrays)."""
    init = self.exp.init_state
    like = init._replace(opt_state=jax.eval_shape(self.optimizer.init, init.params))
    return records_lib.read_final_state(records_lib.run_dir(workdir, run.name), like)

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
    out: Output,
    *,
    batched: bool,
    strategy: str,
    recorded: Collection[str] = (),
    warm: tuple[Any, int] | None = None,
  ) -> None:
    """Trains `runs` (one, or stacked if `batched`) through `loop.run_loop` and records each run
    that finished (all its steps, or diverged) in its directory: metrics, final state, then
    its completion record. A run that `out.stop()` interrupted gets no completion record.

    `recorded`: names of runs already recorded by an earlier launch, trained again only as
    members of their vmap chunk (the chunk keeps its composition, so the other runs' bits are
    those of an uninterrupted sweep); their files are not touched. `warm` = (state, steps):
    continue from the state `auto` measured, `steps` steps in, instead of from step 0.
    """
    num, program = len(runs), self.programs[batched]
    if not batched and num != 1:
      raise ValueError(f"an unbatched call trains one run, got {num}.")
    records = [self._record(run, out, program, run.name in recorded) for run in runs]
    state, start = warm if warm is not None else (self.init_states(runs, batched), 0)
    progress = _Progress(out.report, start, num, program.eval_split)
    try:
      state = loop_lib.run_loop(
        program,
        state,
        records,
        cadence=loop_lib.Cadence.from_config(self.config, checkpoints=False),
        source=self.source(start),
        start=start,
        progress=progress if out.report is not None else None,
        stop=lambda: _step_done(out),
      )
    finally:
      for record in records:
        record.close()
    steps_done = np.broadcast_to(np.asarray(jax.device_get(state.step)), (num,))
    if not out.stopped():
      progress.finish(self.config.steps)  # runs that ended early (diverged)
    host = jax.device_get(state)
    for i, (run, record) in enumerate(zip(runs, records)):
      finished = record.diverged_at is not None or int(steps_done[i]) >= self.config.steps
      if run.name in recorded or not finished:
        continue
      row = run_row(run, record, int(steps_done[i]), strategy, program.eval_split)
      if out.shard is not None:
        row["shard"] = out.shard
      directory = records_lib.run_dir(out.workdir, run.name)
      records_lib.write_final_state(
        directory, jax.tree.map(lambda x, i=i: x[i], host) if batched else host
      )
      records_lib.write_completion(directory, row)

  def _record(self, run: Run, out: Output, program, passenger: bool) -> loop_lib.RunRecord:
    select = f"{program.eval_split}_accuracy"
    if passenger:  # recorded already: computed again, written nowhere
      return loop_lib.RunRecord(self.run_experiment(run), None, select_metric=select)
    directory = records_lib.run_dir(out.workdir, run.name)
    shutil.rmtree(directory, ignore_errors=True)  # a run's files are never merged with old ones
    os.makedirs(directory)
    write_atomic(
      os.path.join(directory, "config.json"),
      run.config.to_json_best_effort(indent=2, sort_keys=True) + "\n",
    )
    writer = MetricWriter(directory, tensorboard=out.tensorboard)
    return loop_lib.RunRecord(self.run_experiment(run), writer, select_metric=select)


def _step_done(out: Output) -> bool:
  """After every training step of a sweep: a fault point for the kill tests, then the stop."""
  runlog.fault("sweep:step")
  return out.stopped()


class _Progress:
  """The loop's progress callback: advances `report` by the configuration-steps done."""

  def __init__(self, report, start: int, num: int, split: str):
    self.report, self.done, self.num, self.split = report, start, num, split

  def __call__(self, nxt: int, recs, rate: float) -> None:
    live = [r for r in recs if not r.done]
    self.report.advance((nxt - self.done) * self.num, _status_line(live, self.num, self.split))
    self.done = nxt

  def finish(self, steps: int) -> None:
    if self.report is not None and self.done < steps:
      self.report.advance((steps - self.done) * self.num)
      self.done = steps


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
  groups: Sequence[Group],
  chunks: Sequence[Sequence[int]],
  out: Output,
  recorded: Collection[str] = (),
  warm: dict | None = None,
) -> None:
  """The `chunks` (lists of run indices, each within one group) stacked under vmap, skipping
  chunks whose runs are all recorded. `warm`: {(group index, first run index of the chunk):
  (state, steps)} from `auto`."""
  warm = warm or {}
  where = {run.index: (g, run) for g, group in enumerate(groups) for run in group.runs}
  for chunk in chunks:
    g, first = where[chunk[0]]
    runs = [where[i][1] for i in chunk]
    if all(run.name in recorded for run in runs):
      continue
    groups[g].train(
      runs,
      out,
      batched=True,
      strategy="vmap",
      recorded=recorded,
      warm=warm.get((g, first.index)),
    )
    if out.stopped():
      return


def run_sequential(
  groups: Sequence[Group],
  out: Output,
  recorded: Collection[str] = (),
  strategy: str = "sequential",
  warm: dict | None = None,
) -> None:
  """Every run not yet recorded, one after another through its group's one compiled step.
  `warm`: {(group index, run index): (state, steps)} from `auto`."""
  warm = warm or {}
  for g, group in enumerate(groups):
    for run in group.runs:
      if run.name in recorded:
        continue
      group.train([run], out, batched=False, strategy=strategy, warm=warm.get((g, run.index)))
      if out.stopped():
        return


# ----------------------------------------------------------------------------------------------
# How many configurations fit one vmapped program.


def _tree_bytes(tree) -> int:
  return sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def memory_budget_bytes() -> int:
  """Memory one vmapped chunk may use: `DEVICE_MEMORY_FRACTION` of the default device's free
  memory when it reports it (GPU/TPU), else `HOST_MEMORY_FRACTION` of the free host memory
  (``os.sysconf``: pages not in use, the page cache not counted, so on the safe side)."""
  stats = jax.devices()[0].memory_stats()
  if stats and "bytes_limit" in stats:
    return int(DEVICE_MEMORY_FRACTION * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
  try:
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (AttributeError, OSError, ValueError):  # not POSIX (macOS has no SC_AVPHYS_PAGES)
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

  Bytes: the shared batch source plus, per configuration, its share of what XLA's memory
  analysis reports for the compiled step (`Group.memory_bytes`). The budget is
  `memory_budget_bytes()` unless given. Never more than the group's number of configurations,
  never less than 1.
  """
  budget = memory_budget_bytes() if budget_bytes is None else budget_bytes
  shared, per_config = group.memory_bytes()
  return int(max(1, min(len(group.runs), (budget - shared) // per_config)))


def plan_chunks(groups: Sequence[Group], chunk_size: int | None) -> list[list[int]]:
  """The vmap chunks of a sweep (run indices): each group split evenly into chunks of at most
  `chunk_size` configurations (default: `default_chunk_size`)."""
  chunks = []
  for group in groups:
    size = chunk_size or default_chunk_size(group)
    chunks += [[run.index for run in c] for c in split_evenly(group.runs, size)]
  return chunks
