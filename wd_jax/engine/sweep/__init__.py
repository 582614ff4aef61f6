"""Hyperparameter sweeps: K configurations of one base config, trained as one compiled program.

A sweep is a base run config (`wd_jax.engine.config.base_config` schema) plus either a grid (field
->
list of values, Cartesian product) or an explicit list of overrides::

  rows = run_sweep(config, {"learning_rate": [1e-3, 1e-2], "weight_decay": [1e-4, 1e-2]},
                   "runs/sweep", strategy="vmap")

A field is ``learning_rate`` or ``weight_decay`` (config.optimizer.learning_rate / weight_decay,
the peak of the lr schedule and λ), ``seed``, or any dotted config path
(``optimizer.kwargs.b1``, ``batch_size``, ``optimizer.name`` ...).

Configurations that differ only in the peak lr, λ and seed form a *group*: the lr and λ live in
`optax.inject_hyperparams` state (`wd_jax.engine.config.build_injectable_optimizer`) and the seed in
the initial parameters and the batch key, so the whole group shares one Experiment and one
compiled step. Any other difference (optimizer name, model, batch size, steps...) starts a new
group. Strategies, per group:

* ``vmap``: the group's TrainStates stacked on a leading axis and trained by
  ``jax.jit(jax.vmap(step, in_axes=(0, None)), donate_argnums=0)`` with the shared batch
  sampler, in chunks of
  `chunk_size` configurations (default: as many as fit the memory budget, `default_chunk_size`).
* ``sequential``: the configurations one after another through ONE jitted step (the
  hyperparameters are state, not constants: no recompilation; `strategy.json` records the
  compile count of every jitted step).
* ``processes``: `num_workers` worker processes, each pinned to its own cores
  (``os.sched_setaffinity``, ``PJRT_NPROC`` = its core count, which sizes XLA:CPU's thread
  pool, and ``--xla_cpu_multi_thread_eigen=false`` when it has one core), each running its share
  of the configurations with the sequential strategy and writing its runs' files itself.
* ``auto``: measures ``vmap`` and ``sequential`` (and, when they could win, worker processes)
  for a few steps on this machine and keeps the fastest; the choice is recorded per sweep shape
  (see `wd_jax.engine.sweep.tuning`, CPU-only helpers kept apart from this core).

Every run goes through the one training loop (`wd_jax.engine.loop.run_loop`), as `train.fit` does:
same step, logging cadence, evaluation, divergence handling and records. Your own model, data
and optimizer recipe (see `wd_jax.engine.train.build`) work here as in `train.fit` (not with the
``processes`` strategy, whose workers rebuild runs from their configs).

With a validation split (``config.dataset.validation_fraction > 0``) every run is evaluated on
it and the test split is not read, except for the runs a ``select`` callback picks from the
validation rows (the study protocol's selection): those rows get ``test_*`` metrics.

Every configuration trains on the default device (config.parallel must be ``"none"``); the
sweep writes no checkpoints.

A configuration whose loss is non-finite at a logging step is marked diverged there, as
`wd_jax.engine.train.fit` marks it (the same code), and logs nothing more; under vmap it keeps
computing (NaNs stay in its own slice: nothing in the step mixes configurations) until its
chunk ends, because freezing it on the device (``jnp.where`` over the whole state every step)
cost 10-20% of a vmapped MLP step here; a chunk stops early once all its configurations have
diverged.

Each configuration's run is `train.fit`'s run of the same config: same seed, same batches,
same records, up to float rounding: injected (traced) hyperparameters instead of constants and,
under vmap, batched matmuls change a few float32 roundings (max ``|Δθ|`` 3e-8 to 6e-8 after 40
steps, tests/test_sweep.py). Rounding differences grow chaotically at large learning rates:
at peak lr 3e-2 on MNIST-1D the losses agree to 1e-7 for 100 steps and differ by 1e-2 at step
130, so long runs agree only to within run-to-run noise (Δ final test accuracy up to 0.02 in
bench/sweep.py). The sequential strategy is bitwise `train.fit` with the injectable optimizer
(checked over 1000 steps at lr 3e-2); fit itself bakes lr and λ in as constants.

Outputs, all in ONE workdir and all written atomically: ``config.json`` (base config, grid,
configurations, requested strategy), ``results.csv`` and ``results.md`` (one row per
configuration), ``runs/<index>-<name>/{config.json,metrics.jsonl}`` (the records `train.fit`
writes, at the base config's log_every/eval_every; no checkpoints), ``strategy.json`` and
``summary.md``. Bad grid input raises `ValueError` naming the field before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from wd_jax.engine import progress, runlog
from wd_jax.engine.runlog import write_atomic
from wd_jax.engine.sweep import tuning
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
  build_groups,
  default_chunk_size,
  memory_budget_bytes,
  run_sequential,
  run_vmap,
)
from wd_jax.engine.sweep.outputs import best_row, jsonable_grid, write_outputs
from wd_jax.engine.sweep.tuning import AUTO_CACHE_ENV, auto_cache_key, auto_cache_path
from wd_jax.engine.workdir import WorkdirLock

STRATEGIES = ("auto", "vmap", "sequential", "processes")


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
) -> list[dict[str, Any]]:
  """Trains every configuration of a sweep and writes one workdir (see the module docstring).

  Args:
    base_config: a run config (`wd_jax.engine.config.base_config` schema).
    grid_or_list: dict field -> list of values (Cartesian product) or a list of dicts; fields
      are ``learning_rate``, ``weight_decay``, ``seed`` or dotted config paths.
    workdir: the output directory; it must not hold a sweep already.
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
      returns the indices of the rows whose test split is then read once.

  Returns:
    One dict per configuration, in sweep order: the row of ``results.csv`` (index, name,
    optimizer, learning_rate, weight_decay, seed, the other grid fields, loss, accuracy,
    <split>_loss, <split>_accuracy, best_<split>_accuracy, best_<split>_step, diverged,
    diverged_at_step, steps, strategy, run_dir; <split> is ``val`` with a validation split,
    else ``test``) plus wall_time_sec, and test_loss/test_accuracy for selected rows.

  Raises:
    ValueError: bad grid input, strategy, chunk_size or num_workers, or an existing sweep in
      `workdir`; raised before anything is written.

  Example:
    >>> import numpy as np
    >>> from wd_jax import config, data, sweep
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
    ['config.json', 'results.csv', 'results.md', 'runs', 'strategy.json', 'summary.md']
    >>> [(r["weight_decay"], r["seed"]) for r in rows]
    [(0.0001, 0), (0.0001, 1), (0.01, 0), (0.01, 1)]

  References:
    ``jax.vmap`` over stacked train states; ``optax.inject_hyperparams`` (the lr and λ as
    optimizer state, so one compiled step serves the whole group).
  """
  t_start = time.perf_counter()
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")
  for name, value in (("chunk_size", chunk_size), ("num_workers", num_workers)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"{name} must be None or an int >= 1, got {value!r}.")
  user = UserParts(model, data, optimizer)
  if user.any and strategy == "processes":
    raise ValueError(
      "strategy 'processes' rebuilds every run from its config in worker processes; your own "
      "model/data/optimizer live in this process: use 'vmap', 'sequential' or 'auto'."
    )
  runs = expand_grid(base_config, grid_or_list, user)
  groups = build_groups(runs, user)  # builds (and so checks) every model before writing anything
  split = groups[0].programs[False].eval_split
  if select is not None and split != "val":
    raise ValueError(
      "select needs a validation split to select on: set config.dataset.validation_fraction > 0."
    )
  with WorkdirLock(workdir), runlog.StopSignals() as stop:
    if os.path.exists(os.path.join(workdir, "config.json")):
      raise ValueError(f"workdir {workdir!r} already holds a run; use a new workdir.")
    keep_states = return_states or select is not None
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if verbose else None
    write_atomic(
      os.path.join(workdir, "config.json"),
      json.dumps(
        {
          "base": json.loads(base_config.to_json_best_effort(sort_keys=True)),
          "grid": jsonable_grid(grid_or_list),
          "configurations": [{"name": r.name, **jsonable_grid(r.overrides)} for r in runs],
          "strategy": strategy,
          "chunk_size": chunk_size,
          "num_workers": num_workers,
        },
        indent=2,
      )
      + "\n",
    )
    info: dict[str, Any] = {
      "requested": strategy,
      "fields": list(dict.fromkeys(f for r in runs for f in r.overrides)),
      "groups": len(groups),
      "configurations": len(runs),
    }
    workers, warm = None, {}
    try:
      chosen = strategy
      if strategy == "auto":
        chosen, auto_info, workers, warm = tuning.choose(
          groups,
          workdir,
          chunk_size=chunk_size,
          num_workers=num_workers,
          remeasure=remeasure,
          say=say,
          tensorboard=tensorboard,
          return_states=keep_states,
          allow_processes=not user.any,
        )
        info.update(auto_info)
      info["chosen"] = chosen
      t_run = time.perf_counter()
      show = verbose or progress.active()
      work = sum(g.work for g in groups)
      task = progress.task(f"sweep {workdir}", work) if show else contextlib.nullcontext()
      with task as report:
        if chosen == "processes":
          if workers is None:
            nw = min(num_workers or len(os.sched_getaffinity(0)), len(runs))
            workers = tuning.Workers(
              runs, workdir, nw, standby=False, tensorboard=tensorboard, return_states=keep_states
            )
          else:
            workers.send("go")
          rows, info["workers"] = workers.join(say, stop)
          if report is not None:
            report.advance(work)
        elif chosen == "vmap":
          rows = run_vmap(groups, workdir, chunk_size, tensorboard, report, keep_states, warm, stop)
        else:
          rows = run_sequential(
            groups, workdir, tensorboard, report, keep_states, warm=warm, stop=stop
          )
      info["run_sec"] = time.perf_counter() - t_run
    finally:
      if workers is not None:
        workers.close()
    if chosen != "processes":
      info["compiles"] = [g.compile_counts() for g in groups]
    rows.sort(key=lambda r: r["index"])
    if stop():
      info["interrupted"] = {"signal": stop.requested, "rows_written": len(rows)}
    elif select is not None:
      chosen_rows = _read_test_once(groups, rows, select, workdir)
      info["test_read_for"] = [rows[i]["name"] for i in chosen_rows]
    if not return_states:
      for r in rows:
        r.pop("state", None)
    wall = time.perf_counter() - t_start
    info["wall_time_sec"] = wall
    write_outputs(workdir, base_config, rows, info, wall, split)
    if stop():
      raise runlog.Interrupted(
        stop.requested,
        f"sweep {workdir!r} stopped by signal {stop.requested} with {len(rows)} of {len(runs)} "
        "runs written (see its summary.md); a sweep does not resume: start it again in a new "
        "workdir.",
      )
    if say:
      best = best_row(rows, split)
      say(f"sweep done in {wall:.1f}s ({chosen}); best: {best['name'] if best else 'none'}")
    return rows


def _read_test_once(
  groups: Sequence[Group], rows: list[dict[str, Any]], select, workdir: str
) -> list[int]:
  """Calls `select` on the validation rows, then reads the test split for the rows it picks:
  their test metrics go into the rows, and each test item's loss and accuracy into
  ``<run_dir>/test_items.npz`` (for intervals over test items as well as seeds)."""
  visible = [{k: v for k, v in r.items() if k != "state"} for r in rows]
  picked = sorted({int(i) for i in select(visible)})
  for i in picked:
    if not 0 <= i < len(rows):
      raise ValueError(f"select returned row index {i}; the sweep has {len(rows)} rows.")
  group_of = {run.index: g for g in groups for run in g.runs}
  for i in picked:
    row = rows[i]
    if row["diverged"]:
      row.update(test_loss=float("nan"), test_accuracy=float("nan"))
      continue
    program = group_of[row["index"]].programs[False]
    row.update(program.evaluate(row["state"], "test")[0])
    items = program.evaluate_items(row["state"], "test")
    path = os.path.join(workdir, row["run_dir"], "test_items.npz")
    with open(path + ".tmp", "wb") as f:  # written whole, then renamed: never a torn file
      np.savez(f, **items)
    os.replace(path + ".tmp", path)
  return picked


__all__ = [
  "ALIASES",
  "AUTO_CACHE_ENV",
  "BATCHED_FIELDS",
  "STRATEGIES",
  "Group",
  "Run",
  "UserParts",
  "auto_cache_key",
  "auto_cache_path",
  "build_groups",
  "default_chunk_size",
  "expand_grid",
  "group_key",
  "group_runs",
  "memory_budget_bytes",
  "run_sweep",
]
