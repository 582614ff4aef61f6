"""The named steps of one sweep launch (or of one shard of it), in the order `run_sweep` takes
them: check the options, expand the grid, prepare (or resume) the workdir, choose the strategy,
train, then finish (read the test split once for the selected cells, write the tables). `merge`
takes the last step for a sharded sweep. The public API is `wd_jax.engine.sweep`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import ml_collections

from wd_jax.engine import progress, runlog
from wd_jax.engine.sweep import records, tuning
from wd_jax.engine.sweep.grid import (
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
  plan_chunks,
  run_sequential,
  run_vmap,
)
from wd_jax.engine.sweep.outputs import best_row, jsonable_grid, write_outputs
from wd_jax.engine.sweep.shards import Shard

STRATEGIES = ("auto", "vmap", "sequential", "processes")


@dataclasses.dataclass
class Launch:
  """One launch of a sweep (or of one shard of it): what it trains, where, and how."""

  base_config: ml_collections.ConfigDict
  record: dict[str, Any]  # config.json: what the sweep is
  runs: list[Run]  # every configuration of the sweep
  mine: list[Run]  # the configurations of this launch (a shard's part), in sweep order
  groups: list[Group]  # their groups (a merge builds the ones it needs, `Groups`)
  split: str  # "val" with a validation split, else "test"
  workdir: str
  shard: Shard
  say: Callable[[str], None] | None
  options: dict[str, Any] = dataclasses.field(default_factory=dict)
  t_start: float = dataclasses.field(default_factory=time.perf_counter)

  @property
  def dest(self) -> str:
    return self.shard.directory(self.workdir)


def recorded_launch(workdir: str, user: UserParts, verbose: bool) -> Launch:
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
  launch = Launch(
    base, record, runs, runs, [], "test", workdir, Shard(), stderr if verbose else None
  )
  launch.options["user"] = user
  return launch


def merged_info(launch: Launch) -> dict[str, Any]:
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


def check_options(strategy, chunk_size, num_workers, user: UserParts, select, part: Shard):
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


def stderr(text: str) -> None:
  print(text, file=sys.stderr, flush=True)


def expand(base_config, grid_or_list, workdir, part: Shard, user: UserParts) -> Launch:
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
  return Launch(base_config, record, runs, mine, groups, split, workdir, part, None)


def write_once(path: str, text: str) -> str:
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


def prepare_workdir(launch: Launch, resume: bool) -> dict[str, dict[str, Any]]:
  """Checks that the workdir may take this launch, writes config.json first, and cleans the
  half-written runs of this launch; returns the finished runs' records, name -> row."""
  path = os.path.join(launch.workdir, "config.json")
  text = json.dumps(launch.record, indent=2) + "\n"
  started = os.path.exists(path) if launch.shard.count == 1 else launched(launch)
  if started and not resume:
    what = "this sweep" if launch.shard.count == 1 else f"shard {launch.shard.label}"
    raise ValueError(
      f"workdir {launch.workdir!r} already holds {what}; pass resume=True (--resume) to "
      "continue it, or use a new workdir."
    )
  found = json.loads(write_once(path, text))
  differ = sorted(k for k in set(found) | set(launch.record) if found.get(k) != launch.record[k])
  if differ:
    raise ValueError(
      f"workdir {launch.workdir!r} holds a different sweep: its config.json differs in "
      f"{differ}; use a new workdir."
    )
  records.remove_temporary(launch.dest)
  return records.clean_unfinished(launch.workdir, [run.name for run in launch.mine])


def launched(launch: Launch) -> bool:
  """Whether a shard launched before: its plan, or a directory of one of its runs, exists."""
  if os.path.exists(os.path.join(launch.dest, records.PLAN)):
    return True
  return any(os.path.isdir(records.run_dir(launch.workdir, r.name)) for r in launch.mine)


def choose_strategy(launch: Launch, recorded, user: UserParts):
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


def train(launch: Launch, plan, recorded, workers, warm, stop) -> dict[str, Any]:
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


def finish(launch: Launch, rows, info, signum) -> list[dict]:
  """Selection and the one test read (a complete, unsharded sweep), the tables, and the
  preemption report."""
  complete = len(rows) == len(launch.mine)
  info.update(
    status="completed" if complete else "preempted",
    runs_done=len(rows),
    signal=signum,
    shard=launch.shard.label,
  )
  groups = Groups(launch)
  if launch.shard.count > 1:
    info["done"] = [row["name"] for row in rows]
  elif complete and launch.split == "val":
    select = launch.options.get("select")
    info["test_read_for"] = read_test_once(launch.workdir, rows, select, groups)
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


class Groups:
  """The groups of a launch by run name; those a merge did not build are built when needed."""

  def __init__(self, launch: Launch):
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


def read_test_once(workdir: str, rows: list[dict[str, Any]], select, groups: Groups) -> list[str]:
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
