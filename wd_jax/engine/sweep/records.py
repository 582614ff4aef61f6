"""A sweep's runs on disk: what makes a run finished, and what a resumed sweep keeps.

A run directory ``runs/<name>/`` holds ``config.json`` (first), ``metrics.jsonl`` (during
training), ``final_state.npz`` (the run's final `TrainState`: parameters, model state,
optimizer state, step and batch key) and, written atomically after all of them, ``done.json``:
the run's completion record (its results row). A run is finished exactly when its completion
record exists and names it; any other run directory is half-written (its sweep was killed or
stopped while training it) and a resumed sweep deletes it and trains the run again from step 0,
never merging its records.

``plan.json`` (in the sweep's, or its shard's, directory) fixes at the first launch what a
resumed launch must repeat to reproduce the same bits: the strategy, the vmap chunks (which
configurations share one compiled program) and the number of worker processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from wd_jax.engine import runlog
from wd_jax.engine.runlog import write_atomic

COMPLETION = "done.json"
FINAL_STATE = "final_state.npz"
PLAN = "plan.json"
TEST_ITEMS = "test_items.npz"


def run_dir(workdir: str, name: str) -> str:
  """The directory of run `name` in the sweep `workdir`."""
  return os.path.join(workdir, "runs", name)


def _leaf_names(tree: Any) -> list[str]:
  return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def write_npz(path: str, arrays: dict[str, Any]) -> None:
  """`arrays` as one ``.npz`` file, written whole to a temporary name and renamed (never torn)."""
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
  runlog.fault(f"write:{os.path.basename(path)}")
  os.replace(tmp, path)


def write_final_state(directory: str, state: Any) -> None:
  """A run's final state (host arrays), one array per leaf named by its path in the pytree."""
  host = jax.device_get(state)
  write_npz(
    os.path.join(directory, FINAL_STATE),
    dict(zip(_leaf_names(host), (np.asarray(x) for x in jax.tree.leaves(host)))),
  )


def read_final_state(directory: str, like: Any) -> Any:
  """The state `write_final_state` wrote, in the structure of `like` (a state of the same run)."""
  with np.load(os.path.join(directory, FINAL_STATE)) as f:
    leaves = [f[name] for name in _leaf_names(like)]
  return jax.tree.unflatten(jax.tree.structure(like), leaves)


def write_completion(directory: str, row: dict[str, Any]) -> None:
  """The completion record: written after every other file of the run, atomically."""
  clean = {k: v for k, v in row.items() if k != "state"}
  write_atomic(os.path.join(directory, COMPLETION), json.dumps(clean, indent=1) + "\n")
  runlog.fault("sweep:recorded")


def read_completion(workdir: str, name: str) -> dict[str, Any] | None:
  """Run `name`'s completion record, or None if the run is not finished (or its record or
  final state is missing or unreadable)."""
  directory = run_dir(workdir, name)
  if not os.path.exists(os.path.join(directory, FINAL_STATE)):
    return None
  with contextlib.suppress(OSError, ValueError):
    with open(os.path.join(directory, COMPLETION)) as f:
      row = json.load(f)
    if isinstance(row, dict) and row.get("name") == name:
      return row
  return None


def finished_rows(workdir: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
  """name -> completion record of every finished run among `names`."""
  rows = {name: read_completion(workdir, name) for name in names}
  return {name: row for name, row in rows.items() if row is not None}


def clean_unfinished(workdir: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
  """Deletes the half-written directories among runs `names`; returns the finished runs'
  records, name -> row."""
  done = finished_rows(workdir, names)
  for name in names:
    if name not in done and os.path.isdir(run_dir(workdir, name)):
      shutil.rmtree(run_dir(workdir, name))
  return done


def remove_temporary(directory: str) -> None:
  """Deletes the temporary files that killed writes left in `directory` (`write_atomic`'s
  ``.tmp-*``, ours ``*.tmp``)."""
  if os.path.isdir(directory):
    for entry in os.listdir(directory):
      if entry.startswith(".tmp-") or entry.endswith(".tmp"):
        os.unlink(os.path.join(directory, entry))


def read_plan(directory: str) -> dict[str, Any] | None:
  """The plan recorded by a sweep's first launch in `directory`, or None."""
  path = os.path.join(directory, PLAN)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_plan(directory: str, plan: dict[str, Any]) -> None:
  write_atomic(os.path.join(directory, PLAN), json.dumps(plan, indent=1, default=str) + "\n")
