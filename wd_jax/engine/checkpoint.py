"""Orbax checkpoints of a run's `TrainState`, verified when read back.

Process 0 writes; every process reads (the files are on a shared filesystem). Each checkpoint
carries the SHA-256 of its arrays (dtype, shape and bytes of every leaf), committed by orbax in
the same atomic step as the arrays, so a restore can tell an intact checkpoint from a damaged
one: missing or truncated files fail to load, flipped bytes fail the digest. `restore_latest`
names the damaged checkpoint and why in one line, and falls back to the newest intact one only
when asked (``fallback=True``, the default of `wd_jax.engine.train.fit`, which says so loudly).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class DamagedCheckpoint(RuntimeError):
  """A checkpoint that cannot be read back as it was written."""


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
    path,
    options=ocp.CheckpointManagerOptions(
      # A save killed half way leaves a temporary directory: removed when the run resumes.
      max_to_keep=max_to_keep,
      create=False,
      cleanup_tmp_directories=True,
      **mp,
    ),
  )


def digest(tree: Any) -> str:
  """SHA-256 over every leaf's dtype, shape and bytes (host arrays), in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(jax.device_get(leaf))
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a = np.asarray(jax.random.key_data(a))
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def save(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Saves host `state` at `step` with its digest (orbax commits both together)."""
  host = jax.device_get(state)
  mngr.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(host),
      digest=ocp.args.JsonSave({"sha256": digest(host), "step": int(step)}),
    ),
  )


def broadcast_int(value: int) -> int:
  """Process 0's `value` on every process (a no-op on one host)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils

  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def _reader(workdir: str) -> ocp.CheckpointManager:
  options = (
    ocp.CheckpointManagerOptions(
      read_only=True, multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=None)
    )
    if jax.process_count() > 1
    else ocp.CheckpointManagerOptions(read_only=True)
  )
  return ocp.CheckpointManager(directory(workdir), options=options)


def steps(workdir: str) -> list[int]:
  """The steps of the committed checkpoints in `workdir`, oldest first.

  Read from the directory names (orbax commits a checkpoint by renaming its temporary
  directory to the step number), so it is cheap and needs no other process."""
  path = directory(workdir)
  if not os.path.isdir(path):
    return []
  return sorted(int(n) for n in os.listdir(path) if n.isdigit() and os.path.isdir(f"{path}/{n}"))


def restore(workdir: str, step: int, like: Any) -> Any:
  """The verified checkpoint at `step`, shaped like `like`.

  Raises:
    DamagedCheckpoint: the files cannot be read, or their arrays do not match the digest
      written with them (the message names the checkpoint and the reason, in one line).
  """
  where = os.path.join(directory(workdir), str(step))
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  try:
    with _reader(workdir) as mngr:
      out = mngr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), digest=ocp.args.JsonRestore()
        ),
      )
  except Exception as e:  # orbax/tensorstore raise many types; each means "cannot read it"
    reason = " ".join(str(e).split())[:240] or type(e).__name__
    raise DamagedCheckpoint(f"checkpoint {where} cannot be read: {reason}") from e
  expected = (out.digest or {}).get("sha256")
  if expected is None:
    raise DamagedCheckpoint(f"checkpoint {where} has no digest to verify it against.")
  if digest(out.state) != expected:
    raise DamagedCheckpoint(f"checkpoint {where} is damaged: its arrays do not match their digest.")
  return out.state


def restore_latest(workdir: str, like: Any, *, fallback: bool) -> tuple[int, Any]:
  """The newest intact checkpoint: ``(step, state)``, or ``(0, like)`` when there is none.

  A damaged newest checkpoint raises `DamagedCheckpoint` unless `fallback`, in which case each
  damaged one is named in a warning and the next older one is tried.
  """
  available = steps(workdir)
  for step in reversed(available):
    try:
      return step, restore(workdir, step, like)
    except DamagedCheckpoint as e:
      if not fallback:
        older = [s for s in available if s < step]
        hint = (
          f"; the newest older checkpoint is step {older[-1]} (resume with fallback to use it)"
          if older
          else ""
        )
        raise DamagedCheckpoint(f"{e}{hint}") from e
      warnings.warn(f"{e} Falling back to the newest older checkpoint.", stacklevel=2)
  if available:
    warnings.warn("no intact checkpoint: the run starts again from step 0.", stacklevel=2)
  return 0, like
