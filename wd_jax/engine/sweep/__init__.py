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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from wd_jax.engine import runlog
from wd_jax.engine.sweep import records, shards, steps, tuning  # noqa: F401  (submodules)
from wd_jax.engine.sweep.grid import (
  ALIASES,
  BATCHED_FIELDS,
  Run,
  UserParts,
  expand_grid,
  group_key,
  group_runs,
)
from wd_jax.engine.sweep.group import Group, build_groups, default_chunk_size, memory_budget_bytes
from wd_jax.engine.sweep.shards import Shard, ShardJob, submit
from wd_jax.engine.sweep.tuning import AUTO_CACHE_ENV, auto_cache_key, auto_cache_path
from wd_jax.engine.workdir import WorkdirLock


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
    >>> from wd_jax.engine import config, data, sweep
    >>> ds = data.teacher_student(256, dim=8, num_classes=2, num_test=64)
    >>> cfg = config.override(config.base_config(), {
    ...   "model.name": "mlp", "model.kwargs": {"widths": (16,)}, "steps": 40, "batch_size": 32})
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
  steps.check_options(strategy, chunk_size, num_workers, user, select, part)
  launch = steps.expand(base_config, grid_or_list, workdir, part, user)
  launch.say = steps.stderr if verbose else None
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
    recorded = steps.prepare_workdir(launch, resume)
    plan, info, workers, warm = steps.choose_strategy(launch, recorded, user)
    info.update(steps.train(launch, plan, recorded, workers, warm, stop))
    done = records.finished_rows(workdir, [run.name for run in launch.mine])
    rows = [done[run.name] for run in launch.mine if run.name in done]
    return steps.finish(launch, rows, info, stop.requested)


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
    launch = steps.recorded_launch(workdir, user, verbose)
    done = shards.finished_cells(workdir, launch.runs, launch.record["shards"])
    rows = [done[run.name] for run in launch.runs]
    launch.split = "val" if "val_loss" in rows[0] else "test"
    if select is not None and launch.split != "val":
      raise ValueError("select needs a validation split to select on; this sweep has none.")
    launch.options.update(select=select, return_states=return_states)
    return steps.finish(launch, rows, steps.merged_info(launch), None)


STRATEGIES = steps.STRATEGIES

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
