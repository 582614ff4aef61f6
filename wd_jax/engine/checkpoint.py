"""Orbax checkpoints of a run's `TrainState`, verified when read back.

Process 0 writes; every process reads (the files are on a shared filesystem). Each checkpoint
carries the SHA-256 of its arrays (dtype, shape and bytes of every leaf), committed by orbax in
the same atomic step as the arrays, so a restore can tell an intact checkpoint from a damaged
one: missing or truncated files fail to load, flipped bytes fail the digest. A checkpoint of
another model (other parameter shapes or structure) is not damage: it is refused
(`CheckpointMismatch`), naming the parameter and both shapes, and nothing is moved.

`restore_latest` names a damaged checkpoint and why in one line. With ``fallback=True`` (the
default of `wd_jax.engine.train.fit`, which says so loudly) it moves the damaged one aside to
``checkpoints/damaged/<step>-<reason>`` (kept for inspection, out of orbax's sight, so the
step can be saved again) and uses the newest intact one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath


class DamagedCheckpoint(RuntimeError):
  """A checkpoint that cannot be read back as it was written.

  `reason` is a short name for the kind of damage (``unreadable``, ``digest-mismatch``,
  ``no-digest``), used in the name of the directory it is moved aside to.
  """

  def __init__(self, message: str, reason: str = "unreadable"):
    super().__init__(message)
    self.reason = reason


class CheckpointMismatch(ValueError):
  """A checkpoint of another model: its parameter shapes or structure differ from the run's."""


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


def save(
  mngr: ocp.CheckpointManager, step: int, state: Any, *, last_record: int | None = None
) -> None:
  """Saves host `state` at `step` with its digest (orbax commits both together).

  `last_record`: the step of the last metrics record written before this checkpoint (a resume
  checks that the records still reach it, `wd_jax.engine.runlog.records_gap`).
  """
  host = jax.device_get(state)
  info = {"sha256": digest(host), "step": int(step), "last_record": last_record}
  mngr.save(
    step,
    args=ocp.args.Composite(state=ocp.args.StandardSave(host), digest=ocp.args.JsonSave(info)),
  )


def broadcast_int(value: int) -> int:
  """Process 0's `value` on every process (a no-op on one host)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils

  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def steps(workdir: str) -> list[int]:
  """The steps of the committed checkpoints in `workdir`, oldest first.

  Read from the directory names (orbax commits a checkpoint by renaming its temporary
  directory to the step number), so it is cheap and needs no other process."""
  path = directory(workdir)
  if not os.path.isdir(path):
    return []
  return sorted(int(n) for n in os.listdir(path) if n.isdigit() and os.path.isdir(f"{path}/{n}"))


def remove_temporaries(workdir: str) -> None:
  """Removes what a failed or abandoned save left (orbax's ``*.orbax-checkpoint-tmp*``
  directories; orbax would remove them when the run resumes), freeing the space they hold."""
  path = directory(workdir)
  if os.path.isdir(path):
    for name in os.listdir(path):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)


def _names(tree: Any) -> dict[str, Any]:
  """Leaf path ("params/hidden/0/kernel") -> leaf, for naming a parameter in a message."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path]
    out["/".join(str(k) for k in keys)] = leaf
  return out


def _differences(saved: dict[str, Any], ours: dict[str, Any]) -> list[str]:
  """How the arrays of a checkpoint differ from the model's, parameters first."""
  out = []
  for name in sorted(set(saved) | set(ours), key=lambda n: (not n.startswith("params/"), n)):
    a, b = ours.get(name), saved.get(name)
    if b is None:
      out.append(f"{name} is in this run's model, not in the checkpoint")
    elif a is None:
      out.append(f"{name} is in the checkpoint, not in this run's model")
    elif tuple(a.shape) != tuple(b.shape) or np.dtype(a.dtype) != np.dtype(b.dtype):
      out.append(
        f"{name} is {b.dtype}{list(b.shape)} there, {a.dtype}{list(a.shape)} in this run's model"
      )
  return out


def _check_structure(where: str, like: Any) -> None:
  """Refuses a checkpoint whose arrays are not those of `like` (another model), naming the
  parameters that differ and their shapes; unreadable metadata is damage."""
  try:
    saved = _names(ocp.StandardCheckpointHandler().metadata(epath.Path(where) / "state").tree)
  except Exception as e:  # orbax raises many types; each means "cannot read it"
    reason = " ".join(str(e).split())[:240] or type(e).__name__
    raise DamagedCheckpoint(f"checkpoint {where} cannot be read: {reason}") from e
  ours = {k: ocp.utils.to_shape_dtype_struct(v) for k, v in _names(like).items()}
  diff = _differences(saved, ours)
  if diff:
    more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
    raise CheckpointMismatch(
      f"checkpoint {where} holds another model: {'; '.join(diff[:3])}{more}. Resume with the "
      "model the run was started with, or use a new workdir."
    )


def _read(where: str, like: Any) -> tuple[Any, dict[str, Any]]:
  """The verified state at `where` (a step's directory) and the information saved with it."""
  _check_structure(where, like)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  mp = ocp.options.MultiprocessingOptions(primary_host=None if jax.process_count() > 1 else 0)
  try:
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler(), multiprocessing_options=mp) as ck:
      out = ck.restore(
        where,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), digest=ocp.args.JsonRestore()
        ),
      )
  except Exception as e:  # orbax/tensorstore raise many types; each means "cannot read it"
    reason = " ".join(str(e).split())[:240] or type(e).__name__
    raise DamagedCheckpoint(f"checkpoint {where} cannot be read: {reason}") from e
  info = out.digest or {}
  if info.get("sha256") is None:
    raise DamagedCheckpoint(f"checkpoint {where} has no digest to verify it against.", "no-digest")
  if digest(out.state) != info["sha256"]:
    raise DamagedCheckpoint(
      f"checkpoint {where} is damaged: its arrays do not match their digest.", "digest-mismatch"
    )
  return out.state, info


def restore(workdir: str, step: int, like: Any) -> Any:
  """The verified checkpoint at `step`, shaped like `like`.

  Raises:
    DamagedCheckpoint: the files cannot be read, or their arrays do not match the digest
      written with them (the message names the checkpoint and the reason, in one line).
    CheckpointMismatch: the checkpoint holds another model (the message names the parameter
      and both shapes).
  """
  return _read(os.path.join(directory(workdir), str(step)), like)[0]


def set_aside(workdir: str, step: int, reason: str) -> str | None:
  """Moves the damaged checkpoint `step` to ``checkpoints/damaged/<step>-<reason>`` (process 0
  only; the others return None), so orbax no longer sees it and the step can be saved again.

  Returns:
    The new path of the checkpoint.
  """
  if jax.process_index() != 0:
    return None
  aside = os.path.join(directory(workdir), "damaged")
  os.makedirs(aside, exist_ok=True)
  target, n = os.path.join(aside, f"{step}-{reason}"), 1
  while os.path.exists(target):
    n += 1
    target = os.path.join(aside, f"{step}-{reason}-{n}")
  os.rename(os.path.join(directory(workdir), str(step)), target)
  return target


@dataclasses.dataclass(frozen=True)
class Restored:
  """What `restore_latest` found: the step and state to continue from (0 and the initial state
  when no intact checkpoint is left), the step of the last metrics record written before that
  checkpoint (None if it did not record it), and the damaged checkpoints moved aside."""

  step: int
  state: Any
  last_record: int | None = None
  set_aside: tuple[str, ...] = ()


def restore_latest(workdir: str, like: Any, *, fallback: bool) -> Restored:
  """The newest intact checkpoint, or step 0 and `like` when there is none.

  A damaged newest checkpoint raises `DamagedCheckpoint` unless `fallback`, in which case each
  damaged one is named in a warning, moved aside (`set_aside`), and the next older one is tried.
  A checkpoint of another model raises `CheckpointMismatch` (never taken as damage).
  """
  available, moved = steps(workdir), []
  for step in reversed(available):
    where = os.path.join(directory(workdir), str(step))
    try:
      state, info = _read(where, like)
      return Restored(step, state, info.get("last_record"), tuple(moved))
    except DamagedCheckpoint as e:
      if not fallback:
        older = [s for s in available if s < step]
        hint = (
          f"; the newest older checkpoint is step {older[-1]} (resume with fallback to use it)"
          if older
          else ""
        )
        raise DamagedCheckpoint(f"{e}{hint}", e.reason) from e
      target = set_aside(workdir, step, e.reason)
      moved.append(target or where)
      warnings.warn(
        f"{e} Moved aside to {target}; falling back to the newest older checkpoint.", stacklevel=2
      )
  if available:
    warnings.warn("no intact checkpoint: the run starts again from step 0.", stacklevel=2)
  return Restored(0, like, None, tuple(moved))
