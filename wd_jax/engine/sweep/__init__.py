"""Hyperparameter sweeps: K configurations of one base config, trained as one compiled program,
resumable after a kill, spread over jobs if asked, selected on validation.

A sweep is a base run config (`wd_jax.engine.config.base_config` schema) plus either a grid (field
-> list of values, Cartesian product) or an explicit list of overrides::

  rows = run_sweep(config, {"learning_rate": [1e-3, 1e-2], "weight_decay": [1e-4, 1e-2]},
                   "runs/sweep", strategy="vmap")

A field is ``learning_rate`` or ``weight_decay`` (config.optimizer.learning_rate / weight_decay,
the peak of the lr schedule and λ), ``seed``, or any dotted config path
(``optimizer.kwargs.b1``, ``batch_size``, ``optimizer.name`` ...).

Configurations that differ only in the peak lr, λ and seed form a *group*: the lr and λ live in
`optax.inject_hyperparams` state (`wd_jax.engine.config.build_injectable_optimizer`) and the seed
in the initial parameters and the batch key, so the whole group shares one Experiment and one
compiled step. Any other difference (optimizer name, model, batch size, steps...) starts a new
group. Strategies, per group:

* ``vmap``: the group's TrainStates stacked on a leading axis and trained by
  ``jax.jit(jax.vmap(step, in_axes=(0, None)), donate_argnums=0)`` with the shared batch
  sampler, in chunks of `chunk_size` configurations (default: as many as fit the memory budget,
  `default_chunk_size`, from XLA's memory analysis of the compiled step).
* ``sequential``: the configurations one after another through ONE jitted step (the
  hyperparameters are state, not constants: no recompilation; `strategy.json` records the
  compile count of every jitted step, counted from JAX's compile events).
* ``processes``: `num_workers` worker processes (`concurrent.futures.ProcessPoolExecutor`),
  each pinned to its own cores with XLA:CPU sized to them, each running its share of the
  configurations with the sequential strategy and writing its runs' files itself.
* ``auto``: measures ``vmap`` and ``sequential`` (and, when they could win, worker processes)
  for a few steps on this machine and keeps the fastest; the choice is recorded per sweep shape
  (see `wd_jax.engine.sweep.tuning`, CPU-only helpers kept apart from this core).

Every run goes through the one training loop (`wd_jax.engine.loop.run_loop`), as `train.fit`
does: same step, logging cadence, evaluation, divergence handling and records. Your own model,
data and optimizer recipe (see `wd_jax.engine.train.build`) work here as in `train.fit` (not
with the ``processes`` strategy, whose workers rebuild runs from their configs).

**Selection on validation.** With a validation split (``config.dataset.validation_fraction >
0``) every run is evaluated on it, the best cell is the one with the best final validation
accuracy (validation loss for regression), and the test split is read once, for the rows
`select` picks from the validation rows (default: that best cell; a study passes its own
selection, `wd_jax.study.protocol.selector`): they get ``test_*`` metrics, and each test item's
outcome goes to ``<run_dir>/test_items.npz``. Without a validation split the runs are evaluated
on the test split (as `train.fit` does) and no cell is marked best: a best picked on test is
optimistic, so the sweep refuses to pick one and says so in summary.md. A sweep does not carve
a validation split itself: that would train on less data than `train.fit` of the same config.

**Resume.** Every finished run (all its steps, or diverged) leaves in ``runs/<name>/`` its
metrics, its final state (``final_state.npz``: parameters, model state, optimizer state, step
and batch key) and, written atomically after them, its completion record ``done.json``
(`wd_jax.engine.sweep.records`). ``resume=True`` (``--resume``) keeps every finished run
without training it again, deletes the directories of runs that were interrupted (never
merging their records) and trains them from step 0. ``plan.json``, written before anything is
trained, fixes the strategy, the vmap chunks and the number of workers of the first launch, and
a resumed sweep follows it: a vmap chunk with unfinished runs is trained again whole (its
finished members ride along, their files untouched), so every run's numbers are those of an
uninterrupted sweep bit for bit (tests/test_sweep_resume.py: tables and every run's final
parameters equal after 30 random kills). The unit of resumption is the run: a run interrupted
mid-way starts again from step 0.

**Preemption.** SIGTERM or SIGINT (any strategy, ``processes`` workers included) stops
training after the current step, writes the tables with the runs finished so far (status
"preempted", with counts, in summary.md and strategy.json) and raises `runlog.Interrupted`
(``experiments/sweep.py`` exits 143 / 130); continue with ``resume=True``.

**Shards.** ``shard=(i, n)`` trains part i of n of the grid (the configurations whose index is
i modulo n) into the same workdir as the other parts, as independent jobs that may run at the
same time and resume on their own (`wd_jax.engine.sweep.shards`; `submit` launches them as a
``submitit`` job array, e.g. on SLURM). `merge` then checks that every cell ran exactly once
and writes the tables (and does the selection) of a one-machine sweep. A study's tune and
confirm phases run sharded the same way: ``run_sweep(..., shard=(i, n))`` in each job, then
``merge(workdir, select=...)``.

Each configuration's run is `train.fit`'s run of the same config: same seed, same batches,
same records, up to float rounding: injected (traced) hyperparameters instead of constants and,
under vmap, batched matmuls change a few float32 roundings (max ``|Δθ|`` 3e-8 to 6e-8 after 40
steps, tests/test_sweep.py). Rounding differences grow chaotically at large learning rates:
at peak lr 3e-2 on MNIST-1D the losses agree to 1e-7 for 100 steps and differ by 1e-2 at step
130, so long runs agree only to within run-to-run noise (Δ final test accuracy up to 0.02 in
bench/sweep.py). The sequential strategy is bitwise `train.fit` with the injectable optimizer
(checked over 1000 steps at lr 3e-2); fit itself bakes lr and λ in as constants.

Every configuration trains on the default device (config.parallel must be ``"none"``); the
sweep writes no checkpoints. A configuration whose loss is non-finite at a logging step is
marked diverged there, as `wd_jax.engine.train.fit` marks it (the same code), and logs nothing
more; under vmap it keeps computing (NaNs stay in its own slice) until its chunk ends.

Outputs, all in ONE workdir and all written atomically: ``config.json`` (base config, grid,
configurations, requested strategy, number of shards), ``plan.json``, ``results.csv`` and
``results.md`` (one row per configuration), ``runs/<index>-<name>/`` (the records `train.fit`
writes, at the base config's log_every/eval_every, plus the final state and completion record;
no checkpoints), ``strategy.json`` and ``summary.md``; a shard's plan and tables go to
``shards/<i>-of-<n>/``. Bad input raises `ValueError` naming the field before anything is
written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from wd_jax.engine import progress, runlog
from wd_jax.engine.sweep import records, shards, tuning
from wd_jax.engine.sweep.grid import (
  ALIASES,
  BATCHED_FIELDS,
  Run,
  UserParts,
  expand_grid,
  group_key,
  group_runs,
)
from wd_jax.engine.sweep.group import (
  Group,
  Output,
  build_groups,
  default_chunk_size,
  memory_budget_bytes,
  plan_chunks,
  run_sequential,
  run_vmap,
)
from wd_jax.engine.sweep.outputs import best_row, jsonable_grid, write_outputs
from wd_jax.engine.sweep.shards import Shard, ShardJob, submit
from wd_jax.engine.sweep.tuning import AUTO_CACHE_ENV, auto_cache_key, auto_cache_path
from wd_jax.engine.workdir import WorkdirLock

STRATEGIES = ("auto", "vmap", "sequential", "processes")


@dataclasses.dataclass
class _Launch:
  """One launch of a sweep (or of one shard of it): what it trains, where, and how."""

  base_config: ml_collections.ConfigDict
  record: dict[str, Any]  # config.json: what the sweep is
  runs: list[Run]  # every configuration of the sweep
  mine: list[Run]  # the configurations of this launch (a shard's part), in sweep order
  groups: list[Group]  # their groups (a merge builds the ones it needs, `_Groups`)
  split: str  # "val" with a validation split, else "test"
  workdir: str
  shard: Shard
  say: Callable[[str], None] | None
  options: dict[str, Any] = dataclasses.field(default_factory=dict)
  t_start: float = dataclasses.field(default_factory=time.perf_counter)

  @property
  def dest(self) -> str:
    return self.shard.directory(self.workdir)


def run_sweep(
  base_config: ml_collections.ConfigDict,
  grid_or_list: Mapping[str, Any] | Sequence[Mapping[str, Any]],
  workdir: str,
  *,
  strategy: str = "auto",
  chunk_size: int | None = None,
  num_workers: int | None = None,
  verbose: bool = True,
  tensorboard: bool = False,
  return_states: bool = False,
  remeasure: bool = False,
  model: Any = None,
  data: Any = None,
  optimizer: Any = None,
  select: Callable[[list[dict[str, Any]]], Sequence[int]] | None = None,
  resume: bool = False,
  shard: tuple[int, int] | str | None = None,
) -> list[dict[str, Any]]:
  """Trains every configuration of a sweep and writes one workdir (see the module docstring).

  Args:
    base_config: a run config (`wd_jax.engine.config.base_config` schema).
    grid_or_list: dict field -> list of values (Cartesian product) or a list of dicts; fields
      are ``learning_rate``, ``weight_decay``, ``seed`` or dotted config paths.
    workdir: the output directory; it must not hold this sweep already unless `resume` (or
      another shard of it, with `shard`).
    strategy: ``"auto"``, ``"vmap"``, ``"sequential"`` or ``"processes"``.
    chunk_size: vmap only: configurations per compiled program (default `default_chunk_size`).
    num_workers: processes only: worker processes (default: the number of usable cores).
    verbose: print progress to stderr.
    tensorboard: also write TensorBoard event files in every run directory.
    return_states: add each run's final TrainState (host arrays) under ``"state"``.
    remeasure: auto only: measure even if `auto_cache_path()` records a choice for this sweep's
      shape (`auto_cache_key`); the new choice replaces the recorded one.
    model: your own ``nnx.Module`` or ``nnx.Rngs -> nnx.Module`` (see `wd_jax.engine.train.build`).
    data: your own `wd_jax.engine.data.Dataset` or `wd_jax.engine.train.BatchStream`.
    optimizer: your own optimizer recipe (see `wd_jax.engine.train.build`).
    select: with a validation split: called with the finished rows (validation metrics only),
      returns the indices of the rows whose test split is then read once. Default: the best
      row on validation (`best_row`). Not with `shard` (selection happens at `merge`).
    resume: continue the sweep in `workdir` (same base config, grid and options): its finished
      runs are kept, the others trained (again) from step 0, as its ``plan.json`` says.
    shard: ``(i, n)`` or ``"i/n"``: train only part i of n of the grid (the configurations whose
      index is i modulo n), as one of n independent jobs writing into `workdir`; ``"slurm"``:
      the part of this SLURM job-array task. Then `merge` the workdir.

  Returns:
    One dict per configuration trained here, in sweep order: the row of ``results.csv`` (index,
    name, optimizer, learning_rate, weight_decay, seed, the other grid fields, loss, accuracy,
    <split>_loss, <split>_accuracy, best_<split>_accuracy, best_<split>_step, diverged,
    diverged_at_step, steps, strategy, run_dir; <split> is ``val`` with a validation split,
    else ``test``) plus wall_time_sec, and test_loss/test_accuracy for selected rows.

  Raises:
    ValueError: bad grid input, strategy, chunk_size, num_workers or shard, a workdir that holds
      this sweep without `resume`, or a different sweep; raised before anything is written.
    runlog.Interrupted: SIGTERM/SIGINT stopped the sweep after writing the finished runs.

  Example:
    >>> import numpy as np
    >>> from wd_jax.engine import config, data, sweep
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 8)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)  # a task an MLP learns in a few steps
    >>> ds = data.from_arrays(x[:200], y[:200], x[200:], y[200:])
    >>> cfg = config.base_config()
    >>> cfg.model.name, cfg.model.kwargs = "mlp", {"widths": (16,)}
    >>> cfg.steps, cfg.batch_size, cfg.optimizer.learning_rate = 40, 32, 1e-2
    >>> cfg.log_every, cfg.diagnostics_every, cfg.eval_every, cfg.checkpoint_every = 20, 20, 40, 40
    >>> import os, tempfile
    >>> grid = {"weight_decay": [1e-4, 1e-2], "seed": [0, 1]}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   rows = sweep.run_sweep(cfg, grid, os.path.join(tmp, "sweep"), data=ds,
    ...                          strategy="vmap", verbose=False)
    ...   print(sorted(f for f in os.listdir(os.path.join(tmp, "sweep")) if f[0] != "."))
    ['config.json', 'plan.json', 'results.csv', 'results.md', 'runs', 'strategy.json', 'summary.md']
    >>> [(r["weight_decay"], r["seed"]) for r in rows]
    [(0.0001, 0), (0.0001, 1), (0.01, 0), (0.01, 1)]

  References:
    ``jax.vmap`` over stacked train states; ``optax.inject_hyperparams`` (the lr and λ as
    optimizer state, so one compiled step serves the whole group).
  """
  part = Shard.parse(shard)
  user = UserParts(model, data, optimizer)
  _check_options(strategy, chunk_size, num_workers, user, select, part)
  launch = _expand(base_config, grid_or_list, workdir, part, user)
  launch.say = _stderr if verbose else None
  launch.options.update(
    user=user,
    strategy=strategy,
    chunk_size=chunk_size,
    num_workers=num_workers,
    remeasure=remeasure,
    tensorboard=tensorboard,
    select=select,
    return_states=return_states,
  )
  launch.record.update(strategy=strategy, chunk_size=chunk_size, num_workers=num_workers)
  if select is not None and launch.split != "val":
    raise ValueError(
      "select needs a validation split to select on: set config.dataset.validation_fraction > 0."
    )
  with WorkdirLock(launch.dest), runlog.StopSignals() as stop:
    recorded = _prepare_workdir(launch, resume)
    plan, info, workers, warm = _choose_strategy(launch, recorded, user)
    info.update(_train(launch, plan, recorded, workers, warm, stop))
    done = records.finished_rows(workdir, [run.name for run in launch.mine])
    rows = [done[run.name] for run in launch.mine if run.name in done]
    return _finish(launch, rows, info, stop.requested)


def merge(
  workdir: str,
  *,
  select: Callable[[list[dict[str, Any]]], Sequence[int]] | None = None,
  return_states: bool = False,
  model: Any = None,
  data: Any = None,
  optimizer: Any = None,
  verbose: bool = True,
) -> list[dict[str, Any]]:
  """Merges a sharded sweep: checks every cell ran exactly once, then does what a one-machine
  sweep does at its end (selection on validation, the one test read, the tables).

  Reads the sweep from ``workdir/config.json`` and every cell's completion record; the tables
  (``results.csv``, ``results.md``, ``summary.md``, ``strategy.json`` in `workdir`) are those a
  one-machine sweep of the same grid writes, bit for bit when both ran ``sequential`` (a vmap
  chunk's float32 roundings depend on which configurations share it, and a shard's chunks hold
  other configurations: vmap results then agree to rounding, as vmap and sequential do).
  Merging a one-machine sweep rewrites its tables.

  Args:
    workdir: the sweep's shared workdir.
    select: as in `run_sweep` (default: the best row on validation).
    return_states: add each run's final TrainState (host arrays) under ``"state"``.
    model: the same own model the shards were given, if any (see `run_sweep`).
    data: the same own data the shards were given, if any.
    optimizer: the same own optimizer recipe the shards were given, if any.
    verbose: print what was merged to stderr.

  Returns:
    One row per configuration of the sweep, in sweep order, as `run_sweep` returns them.

  Raises:
    ValueError: `workdir` holds no sweep; cells that have not finished (named, with the shards
      that own them), cells recorded by a shard that does not own them, cells more than one
      shard reports, shard directories of another split; own parts that differ from the
      shards'.

  Example:
    >>> import numpy as np
    >>> from wd_jax.engine import config, data, sweep
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 8)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> ds = data.with_validation_split(data.from_arrays(x[:200], y[:200], x[200:], y[200:]), 0.2)
    >>> cfg = config.base_config()
    >>> cfg.model.name, cfg.model.kwargs = "mlp", {"widths": (16,)}
    >>> cfg.steps, cfg.batch_size, cfg.optimizer.learning_rate = 40, 32, 1e-2
    >>> cfg.log_every, cfg.diagnostics_every, cfg.eval_every = 20, 0, 40
    >>> import os, tempfile
    >>> grid = {"weight_decay": [1e-4, 1e-2], "seed": [0, 1]}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   for i in range(2):  # two jobs, e.g. two tasks of a SLURM job array
    ...     _ = sweep.run_sweep(cfg, grid, tmp, data=ds, strategy="sequential", shard=(i, 2),
    ...                         verbose=False)
    ...   rows = sweep.merge(tmp, data=ds, verbose=False)
    >>> [r["name"] for r in rows if "test_accuracy" in r]  # the best on validation, tested once
    ['0-wd=0.0001_seed=0']

  References:
    SLURM job arrays (``SLURM_ARRAY_TASK_ID``); ``submitit`` (`submit`).
  """
  user = UserParts(model, data, optimizer)
  with WorkdirLock(workdir):
    launch = _recorded_launch(workdir, user, verbose)
    done = shards.finished_cells(workdir, launch.runs, launch.record["shards"])
    rows = [done[run.name] for run in launch.runs]
    launch.split = "val" if "val_loss" in rows[0] else "test"
    if select is not None and launch.split != "val":
      raise ValueError("select needs a validation split to select on; this sweep has none.")
    launch.options.update(select=select, return_states=return_states)
    return _finish(launch, rows, _merged_info(launch), None)


def _recorded_launch(workdir: str, user: UserParts, verbose: bool) -> _Launch:
  """The sweep that ``workdir/config.json`` records, as a launch over all its cells."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"workdir {workdir!r} holds no sweep (it has no config.json).")
  with open(path) as f:
    record = json.load(f)
  given = [k for k in ("model", "data", "optimizer") if getattr(user, k) is not None]
  if given != record.get("user_parts", []):
    raise ValueError(
      f"the sweep in {workdir!r} was trained with your own {record.get('user_parts') or 'none'}"
      f" (model/data/optimizer); merge got {given or 'none'}: pass the same."
    )
  base = ml_collections.ConfigDict(record["base"])
  runs = expand_grid(base, record["grid"], user)
  if [r.name for r in runs] != [c["name"] for c in record["configurations"]]:
    raise ValueError(f"the grid of {path} does not expand to the configurations it lists.")
  launch = _Launch(
    base, record, runs, runs, [], "test", workdir, Shard(), _stderr if verbose else None
  )
  launch.options["user"] = user
  return launch


def _merged_info(launch: _Launch) -> dict[str, Any]:
  """strategy.json of a merged sweep: the request, and what each shard did."""
  count = launch.record["shards"]
  parts = []
  for i in range(count):
    path = os.path.join(Shard(i, count).directory(launch.workdir), "strategy.json")
    if os.path.exists(path):
      with open(path) as f:
        parts.append(json.load(f))
  chosen = sorted({p["chosen"] for p in parts}) or [launch.record["strategy"]]
  return {
    "requested": launch.record["strategy"],
    "chosen": "/".join(chosen),
    "fields": list(dict.fromkeys(f for r in launch.runs for f in r.overrides)),
    "groups": len(group_runs(launch.runs)),
    "configurations": len(launch.runs),
    "merged_shards": [
      {k: p.get(k) for k in ("shard", "chosen", "runs_done", "run_sec", "wall_time_sec")}
      for p in parts
    ],
  }


def _check_options(strategy, chunk_size, num_workers, user: UserParts, select, part: Shard):
  """The arguments a sweep checks before expanding its grid."""
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")
  for name, value in (("chunk_size", chunk_size), ("num_workers", num_workers)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"{name} must be None or an int >= 1, got {value!r}.")
  if user.any and strategy == "processes":
    raise ValueError(
      "strategy 'processes' rebuilds every run from its config in worker processes; your own "
      "model/data/optimizer live in this process: use 'vmap', 'sequential' or 'auto'."
    )
  if select is not None and part.count > 1:
    raise ValueError("select runs when the shards are merged: pass it to sweep.merge, not a shard.")


def _stderr(text: str) -> None:
  print(text, file=sys.stderr, flush=True)


def _expand(base_config, grid_or_list, workdir, part: Shard, user: UserParts) -> _Launch:
  """The sweep's configurations, validated, and the groups of this launch's part of them."""
  runs = expand_grid(base_config, grid_or_list, user)
  mine = [run for run in runs if part.owns(run)]
  if not mine:
    raise ValueError(f"shard {part.label} of a sweep of {len(runs)} configurations is empty.")
  groups = build_groups(mine, user)  # builds (and so checks) every model before writing anything
  split = groups[0].programs[False].eval_split
  record = {
    "base": json.loads(base_config.to_json_best_effort(sort_keys=True)),
    "grid": jsonable_grid(grid_or_list),
    "configurations": [{"name": r.name, **jsonable_grid(r.overrides)} for r in runs],
    "user_parts": [k for k in ("model", "data", "optimizer") if getattr(user, k) is not None],
    "shards": part.count,
  }
  return _Launch(base_config, record, runs, mine, groups, split, workdir, part, None)


def _write_once(path: str, text: str) -> str:
  """Creates `path` with `text` unless it exists (atomically, even against another process
  doing the same); returns the file's content."""
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      f.write(text)
    runlog.fault("write:config.json")
    with contextlib.suppress(FileExistsError):
      os.link(tmp, path)  # fails if another launch created it first
    os.unlink(tmp)
  with open(path) as f:
    return f.read()


def _prepare_workdir(launch: _Launch, resume: bool) -> dict[str, dict[str, Any]]:
  """Checks that the workdir may take this launch, writes config.json first, and cleans the
  half-written runs of this launch; returns the finished runs' records, name -> row."""
  path = os.path.join(launch.workdir, "config.json")
  text = json.dumps(launch.record, indent=2) + "\n"
  started = os.path.exists(path) if launch.shard.count == 1 else _launched(launch)
  if started and not resume:
    what = "this sweep" if launch.shard.count == 1 else f"shard {launch.shard.label}"
    raise ValueError(
      f"workdir {launch.workdir!r} already holds {what}; pass resume=True (--resume) to "
      "continue it, or use a new workdir."
    )
  found = json.loads(_write_once(path, text))
  differ = sorted(k for k in set(found) | set(launch.record) if found.get(k) != launch.record[k])
  if differ:
    raise ValueError(
      f"workdir {launch.workdir!r} holds a different sweep: its config.json differs in "
      f"{differ}; use a new workdir."
    )
  records.remove_temporary(launch.dest)
  return records.clean_unfinished(launch.workdir, [run.name for run in launch.mine])


def _launched(launch: _Launch) -> bool:
  """Whether a shard launched before: its plan, or a directory of one of its runs, exists."""
  if os.path.exists(os.path.join(launch.dest, records.PLAN)):
    return True
  return any(os.path.isdir(records.run_dir(launch.workdir, r.name)) for r in launch.mine)


def _choose_strategy(launch: _Launch, recorded, user: UserParts):
  """The plan of the first launch (``plan.json``), or a new one: chosen, measured if
  ``auto``, and written before anything is trained. Returns (plan, info, workers, warm)."""
  o = launch.options
  info: dict[str, Any] = {
    "requested": o["strategy"],
    "fields": list(dict.fromkeys(f for r in launch.runs for f in r.overrides)),
    "groups": len(launch.groups),
    "configurations": len(launch.mine),
    "runs_done_before": len(recorded),
  }
  plan = records.read_plan(launch.dest)
  if plan is not None:
    info.update(plan.get("auto", {}))
    return plan, info, None, {}
  chosen, workers, warm, chunks = o["strategy"], None, {}, None
  stackable = max(len(g.runs) for g in launch.groups) > 1  # auto measures vmap then
  if chosen == "vmap" or (chosen == "auto" and stackable):
    chunks = plan_chunks(launch.groups, o["chunk_size"])
  if chosen == "auto":
    chosen, auto_info, workers, warm = tuning.choose(
      launch.groups,
      chunks,
      chunk_size=o["chunk_size"],
      num_workers=o["num_workers"],
      remeasure=o["remeasure"],
      say=launch.say,
      allow_processes=not user.any,
    )
    info.update(auto_info)
  nw = min(o["num_workers"] or len(os.sched_getaffinity(0)), len(launch.mine))
  plan = {"strategy": chosen, "chunks": chunks if chosen == "vmap" else None, "num_workers": nw}
  plan["auto"] = {k: v for k, v in info.items() if k in ("measurements", "recorded_choice")}
  records.write_plan(launch.dest, plan)
  return plan, info, workers, warm


def _train(launch: _Launch, plan, recorded, workers, warm, stop) -> dict[str, Any]:
  """Trains every run of the launch not recorded yet, as the plan says; returns what
  strategy.json records of it."""
  o, chosen = launch.options, plan["strategy"]
  out = Output(launch.workdir, o["tensorboard"], stop=stop, shard=launch.shard.label)
  work = sum(r.config.steps for r in launch.mine if r.name not in recorded)
  show = launch.say is not None or progress.active()
  t_run, info = time.perf_counter(), {"chosen": chosen}
  task = progress.task(f"sweep {launch.dest}", work) if show else contextlib.nullcontext()
  try:
    with task as out.report:
      if chosen == "processes":
        workers = workers or tuning.Workers(
          [r for r in launch.mine if r.name not in recorded], plan["num_workers"]
        )
        info["workers"] = workers.train(out, recorded, stop, launch.say)
      elif chosen == "vmap":
        run_vmap(launch.groups, plan["chunks"], out, recorded, warm)
      else:
        run_sequential(launch.groups, out, recorded, warm=warm)
  finally:
    if workers is not None:
      workers.close()
  info["run_sec"] = time.perf_counter() - t_run
  if chosen != "processes":
    info["compiles"] = [g.compile_counts() for g in launch.groups]
  return info


def _finish(launch: _Launch, rows, info, signum) -> list[dict]:
  """Selection and the one test read (a complete, unsharded sweep), the tables, and the
  preemption report."""
  complete = len(rows) == len(launch.mine)
  info.update(
    status="completed" if complete else "preempted",
    runs_done=len(rows),
    signal=signum,
    shard=launch.shard.label,
  )
  groups = _Groups(launch)
  if launch.shard.count > 1:
    info["done"] = [row["name"] for row in rows]
  elif complete and launch.split == "val":
    select = launch.options.get("select")
    info["test_read_for"] = _read_test_once(launch.workdir, rows, select, groups)
  info["wall_time_sec"] = time.perf_counter() - launch.t_start
  write_outputs(launch.dest, launch.base_config, rows, info, launch.split)
  if not complete:  # a signal (to this process, or to its workers only)
    signum = signum or signal.SIGTERM
    raise runlog.Interrupted(
      signum,
      f"sweep {launch.dest!r} stopped by signal {signum} with {len(rows)} of "
      f"{len(launch.mine)} runs done and written (see its summary.md); continue it with "
      "--resume (resume=True).",
    )
  if launch.say:
    best = best_row(rows) if launch.shard.count == 1 else None
    launch.say(
      f"sweep done in {info['wall_time_sec']:.1f}s ({info['chosen']}); best on validation: "
      f"{best['name'] if best else 'none'}"
    )
  if launch.options.get("return_states"):
    for row in rows:
      row["state"] = groups.final_state(row["name"])
  return rows


class _Groups:
  """The groups of a launch by run name; those a merge did not build are built when needed."""

  def __init__(self, launch: _Launch):
    self.launch = launch
    self.by_name = {run.name: g for g in launch.groups for run in g.runs}
    self.runs = {run.name: run for run in launch.runs}

  def __call__(self, name: str) -> Group:
    if name not in self.by_name:
      key = group_key(self.runs[name].config)
      runs = [r for r in self.launch.mine if group_key(r.config) == key]
      (group,) = build_groups(runs, self.launch.options.get("user", UserParts()))
      self.by_name.update({run.name: group for run in runs})
    return self.by_name[name]

  def final_state(self, name: str):
    return self(name).final_state(self.launch.workdir, self.runs[name])


def _read_test_once(workdir: str, rows: list[dict[str, Any]], select, groups: _Groups) -> list[str]:
  """Calls `select` (default: the best row on validation) on the validation rows, then reads
  the test split for the rows it picks: their test metrics go into the rows, and each test
  item's loss and accuracy into ``<run_dir>/test_items.npz`` (for intervals over test items as
  well as seeds). Returns the picked rows' names."""
  if select is None:
    best = best_row(rows)
    picked = [] if best is None else [rows.index(best)]
  else:
    picked = sorted({int(i) for i in select([dict(r) for r in rows])})
  for i in picked:
    if not 0 <= i < len(rows):
      raise ValueError(f"select returned row index {i}; the sweep has {len(rows)} rows.")
  for i in picked:
    row = rows[i]
    if row["diverged"]:
      row.update(test_loss=float("nan"), test_accuracy=float("nan"))
      continue
    state = groups.final_state(row["name"])
    program = groups(row["name"]).programs[False]
    row.update(program.evaluate(state, "test")[0])
    items = program.evaluate_items(state, "test")
    records.write_npz(os.path.join(workdir, row["run_dir"], records.TEST_ITEMS), items)
  return [rows[i]["name"] for i in picked]


__all__ = [
  "ALIASES",
  "AUTO_CACHE_ENV",
  "BATCHED_FIELDS",
  "STRATEGIES",
  "Group",
  "Run",
  "Shard",
  "ShardJob",
  "UserParts",
  "auto_cache_key",
  "auto_cache_path",
  "build_groups",
  "default_chunk_size",
  "expand_grid",
  "group_key",
  "group_runs",
  "memory_budget_bytes",
  "merge",
  "run_sweep",
  "submit",
]
