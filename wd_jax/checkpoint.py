"""Orbax checkpoints of a run's `TrainState`: written by process 0, read by every process."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def directory(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, "checkpoints"))


def manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  """Process 0's manager; on several hosts it runs alone (``active_processes={0}``)."""
  mp = {}
  if jax.process_count() > 1:
    mp["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
      primary_host=0, active_processes={0}
    )
  path = directory(workdir)
  os.makedirs(path, exist_ok=True)  # orbax cannot create it itself with active_processes
  return ocp.CheckpointManager(
    path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=False, **mp)
  )


def broadcast_int(value: int) -> int:
  """Process 0's `value` on every process (a no-op on one host)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils

  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def restore(workdir: str, step: int, like: Any) -> Any:
  """The checkpoint at `step`, read by every process (the files are on a shared filesystem)."""
  options = (
    ocp.CheckpointManagerOptions(
      read_only=True, multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=None)
    )
    if jax.process_count() > 1
    else ocp.CheckpointManagerOptions(read_only=True)
  )
  mngr = ocp.CheckpointManager(directory(workdir), options=options)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  with mngr:
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
