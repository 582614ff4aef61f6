"""A sweep spread over independent jobs: shards of the grid, one shared workdir, one merge.

Shard i of n trains the configurations whose index is i modulo n (so every shard gets its part
of every group) into the shared ``WORKDIR/runs/``, with its own lock, plan and tables in
``WORKDIR/shards/<i>-of-<n>/``; shards never touch each other's runs, so they run at the same
time on different machines (a filesystem they all see) and each resumes on its own. `merge`
(in `wd_jax.engine.sweep`) then checks that every cell ran exactly once and writes the tables a
one-machine sweep writes. `submit` launches the shards as one job array through ``submitit``
(SLURM, or its local executor), as jobs that resume when the scheduler requeues them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from wd_jax.engine.sweep import records
from wd_jax.engine.sweep.grid import Run

SHARDS_DIR = "shards"


@dataclasses.dataclass(frozen=True)
class Shard:
  """Part `index` of `count` of a sweep's grid (``count == 1``: the whole grid, one machine)."""

  index: int = 0
  count: int = 1

  @classmethod
  def parse(cls, value: Any) -> Shard:
    """None (the whole grid), ``(i, n)``, ``"i/n"`` (0 <= i < n) or ``"slurm"`` (`from_slurm`).

    Raises:
      ValueError: naming the value, for anything else.
    """
    if value is None:
      return cls()
    if isinstance(value, str) and value.strip().lower() == "slurm":
      return from_slurm()
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*/\s*\d+\s*", value):
      value = tuple(int(x) for x in value.split("/"))
    ok = (
      isinstance(value, (tuple, list))
      and len(value) == 2
      and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
      and 0 <= value[0] < value[1]
    )
    if not ok:
      raise ValueError(f"shard must be (i, n) or 'i/n' with 0 <= i < n, or 'slurm', got {value!r}.")
    return cls(int(value[0]), int(value[1]))

  @property
  def label(self) -> str | None:
    """``"i/n"``, or None for a whole-grid sweep."""
    return None if self.count == 1 else f"{self.index}/{self.count}"

  def owns(self, run: Run) -> bool:
    return run.index % self.count == self.index

  def directory(self, workdir: str) -> str:
    """Where this shard keeps its lock, plan and tables (the workdir itself for the whole grid)."""
    if self.count == 1:
      return workdir
    return os.path.join(workdir, SHARDS_DIR, f"{self.index}-of-{self.count}")


def from_slurm(environ: Mapping[str, str] | None = None) -> Shard:
  """The shard of a SLURM job-array task: ``SLURM_ARRAY_TASK_ID`` minus
  ``SLURM_ARRAY_TASK_MIN`` (arrays may start at 1), of ``SLURM_ARRAY_TASK_COUNT``.

  Raises:
    ValueError: not inside a job array (the variables are missing or not integers).
  """
  env = os.environ if environ is None else environ
  try:
    task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", 0))
    count = int(env["SLURM_ARRAY_TASK_COUNT"])
  except (KeyError, ValueError) as e:
    raise ValueError(
      "shard 'slurm' needs a SLURM job array (SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT), "
      f"missing or not an integer: {e}"
    ) from None
  return Shard.parse((task - first, count))


def finished_cells(workdir: str, runs: Sequence[Run], count: int) -> dict[str, dict[str, Any]]:
  """Every cell's completion record, after checking that each cell ran exactly once.

  Raises:
    ValueError: naming the cells that have not finished (and the shards that own them), the
      cells recorded by a shard that does not own them, the cells more than one shard reports
      as done, and shard directories of another split of the grid.
  """
  done = records.finished_rows(workdir, [r.name for r in runs])
  owner = {r.name: Shard(r.index % count, count).label for r in runs}
  problems = []
  missing = [r for r in runs if r.name not in done]
  if missing:
    shards = sorted({owner[r.name] or "the sweep" for r in missing})
    problems.append(
      f"{len(missing)} of {len(runs)} cells have not finished ({_names(missing)}); resume "
      f"{', '.join(shards)} (--resume)"
    )
  foreign = [n for n, row in done.items() if row.get("shard") != owner[n]]
  if foreign:
    problems.append(f"cells recorded by a shard that does not own them: {', '.join(foreign)}")
  reported = _reported_done(workdir)
  twice = sorted(n for n, k in reported.items() if k > 1)
  if twice:
    problems.append(f"cells more than one shard ran: {', '.join(twice)}")
  expected = {Shard(i, count).directory(workdir) for i in range(count)} if count > 1 else set()
  other = sorted(d for d in _shard_dirs(workdir) if d not in expected)
  if other:
    problems.append(f"shard directories of another split of the grid: {', '.join(other)}")
  if problems:
    raise ValueError(f"cannot merge the sweep in {workdir!r}: " + "; ".join(problems) + ".")
  return done


def _names(runs: Sequence[Run], limit: int = 8) -> str:
  names = [r.name for r in runs[:limit]]
  return ", ".join(names) + (f", ... ({len(runs) - limit} more)" if len(runs) > limit else "")


def _shard_dirs(workdir: str) -> list[str]:
  root = os.path.join(workdir, SHARDS_DIR)
  if not os.path.isdir(root):
    return []
  return [os.path.join(root, d) for d in os.listdir(root)]


def _reported_done(workdir: str) -> dict[str, int]:
  """cell name -> how many shards list it as done in their strategy.json."""
  counts: dict[str, int] = {}
  for d in _shard_dirs(workdir):
    path = os.path.join(d, "strategy.json")
    if os.path.exists(path):
      with open(path) as f:
        for name in json.load(f).get("done", []):
          counts[name] = counts.get(name, 0) + 1
  return counts


class ShardJob:
  """One shard of a sweep as a scheduler job: ``run_sweep(..., shard=(i, n), resume=True)``.

  Always resuming makes the job idempotent: a first launch starts the shard, a requeued or
  relaunched one continues it. ``submitit`` calls `checkpoint` when the job is preempted or
  times out (its USR2 signal) and requeues the same job.
  """

  def __init__(self, base_config, grid_or_list, workdir: str, shard: Shard, options: dict):
    self.base_config, self.grid_or_list, self.workdir = base_config, grid_or_list, workdir
    self.shard, self.options = shard, dict(options)

  def __call__(self) -> list[dict[str, Any]]:
    from wd_jax.engine.sweep import run_sweep  # the package imports this module

    return run_sweep(
      self.base_config,
      self.grid_or_list,
      self.workdir,
      shard=(self.shard.index, self.shard.count),
      resume=True,
      **self.options,
    )

  def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
    """submitit's requeue hook: the same job again (it resumes)."""
    from submitit.helpers import DelayedSubmission

    return DelayedSubmission(self)


def submit(
  base_config, grid_or_list, workdir: str, num_shards: int, executor: Any, **options: Any
) -> list[Any]:
  """Submits the `num_shards` shards of a sweep as one job array of a ``submitit`` executor.

  Args:
    base_config: the sweep's base run config (as for `wd_jax.engine.sweep.run_sweep`).
    grid_or_list: the grid or list of configurations.
    workdir: the shared workdir (a filesystem every job sees).
    num_shards: how many jobs to split the grid into (>= 1).
    executor: a ``submitit`` executor (``AutoExecutor`` on a SLURM cluster; ``LocalExecutor``
      to run the jobs on this machine), with its parameters (time, partition, GPUs,
      ``slurm_array_parallelism``) already set.
    **options: `wd_jax.engine.sweep.run_sweep` keywords for every shard (strategy, chunk_size,
      num_workers, tensorboard, verbose); not ``select``: selection happens at the merge.

  Returns:
    The submitted jobs, shard i at position i; ``job.result()`` waits for shard i's rows.
    Then `wd_jax.engine.sweep.merge` the workdir.

  Raises:
    ValueError: `num_shards` < 1, or an option a shard cannot take.

  Example:
    >>> import submitit
    >>> from wd_jax.engine import sweep
    >>> def launch(cfg, grid, workdir):  # on a SLURM login node
    ...   ex = submitit.AutoExecutor(folder=f"{workdir}/submitit")
    ...   ex.update_parameters(timeout_min=240, slurm_array_parallelism=8)
    ...   jobs = sweep.submit(cfg, grid, workdir, 8, ex)
    ...   [job.result() for job in jobs]
    ...   return sweep.merge(workdir)

  References:
    ``submitit`` (job arrays through ``executor.batch()``, requeue through ``checkpoint``).
  """
  if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
    raise ValueError(f"num_shards must be an int >= 1, got {num_shards!r}.")
  for name in ("select", "shard", "resume", "return_states", "model", "data", "optimizer"):
    if name in options:
      raise ValueError(f"submit: {name!r} is not a shard option (see wd_jax.engine.sweep.merge).")
  jobs = []
  with executor.batch():
    for i in range(num_shards):
      shard = Shard(i, num_shards)
      jobs.append(executor.submit(ShardJob(base_config, grid_or_list, workdir, shard, options)))
  return jobs
