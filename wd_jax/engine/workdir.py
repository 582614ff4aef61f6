"""A run's directory: one process at a time, config.json first, status.json last.

- `WorkdirLock`: held for the life of a run or sweep (a `filelock.FileLock` on ``.lock``); a
  second launch is refused with a message naming the holder; a dead holder's lock is released by
  the kernel, or, on a filesystem without ``flock``, taken over when its pid is dead on this host.
- `prepare` / `record_config`: check that a workdir may be used (a new one, or a resume of the
  run it holds with the same config, whose ``steps`` may grow to extend a finished run), then
  write ``config.json`` before anything else (after a resume's checkpoint was found to fit, so a
  refused resume leaves the workdir as it was). A workdir with checkpoints or records but no
  config.json holds a run too.
- `read_status` / `write_status`: ``status.json``, the run's state (running, completed, diverged,
  preempted, failed), its step and final metrics, written atomically at each change (in place
  when the disk is too full for a new file); resuming a completed run reads it and changes
  nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket
import sys
import time
import warnings
from typing import Any

import filelock

from wd_jax.engine.runlog import RunIOError, describe_os_error, write_atomic

# Config fields a resume may change: how long to train and how often to log (not what to train).
RESUMABLE_CHANGES = (
  "steps",
  "log_every",
  "diagnostics_every",
  "eval_every",
  "checkpoint_every",
  "max_checkpoints",
)
STATES = ("running", "completed", "diverged", "preempted", "failed")


class WorkdirBusy(RuntimeError):
  """Another live process holds the workdir."""


class DamagedFile(RuntimeError):
  """A file of the run (config.json) that cannot be read back."""


class WorkdirLock:
  """An exclusive lock on a workdir, held for the life of a run or sweep.

  ``WORKDIR/.lock`` is a `filelock.FileLock` (``flock``): the kernel releases it when the holder
  exits or is killed, so a lock left by a dead process is never in the way; on a filesystem
  without ``flock`` filelock keeps a marker file instead and takes over one whose process is
  dead on this host. ``WORKDIR/.lock.json`` records the holder's pid, host, start time and
  command for the message a second launch gets.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, ".lock")
    self.holder_path = self.path + ".json"
    self._lock: filelock.BaseFileLock | None = None

  def _holder(self) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError), open(self.holder_path) as f:
      holder = json.load(f)
      return holder if isinstance(holder, dict) else {}
    return {}

  def _busy(self, holder: dict[str, Any]) -> WorkdirBusy:
    since = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return WorkdirBusy(
      f"workdir {self.workdir!r} is in use by process {holder.get('pid', '?')} on "
      f"{holder.get('host', '?')} since {when} ({holder.get('command', '?')}); wait for it to "
      "finish or stop it, or use another workdir."
    )

  def _take(self, lock: filelock.BaseFileLock) -> None:
    try:
      lock.acquire()
    except filelock.Timeout:
      raise self._busy(self._holder()) from None
    self._lock = lock

  def acquire(self) -> WorkdirLock:
    """Takes the lock and records the holder; `WorkdirBusy` when a live process holds it.

    Raises:
      WorkdirBusy: another live process holds the workdir (named in the message).
      RunIOError: the workdir or its lock file cannot be written (read-only, full).
    """
    try:
      os.makedirs(self.workdir, exist_ok=True)
      try:
        self._take(filelock.FileLock(self.path, timeout=0))
      except OSError as e:  # flock refused by the filesystem (some NFS mounts): a marker file
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
          raise
        self._take(filelock.SoftFileLock(self.path + ".soft", timeout=0))
    except OSError as e:
      raise RunIOError(f"cannot lock {self.path}: {describe_os_error(e)}", e.errno) from e
    me = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": time.time(),
      "command": " ".join(sys.argv)[:200],
    }
    try:
      write_atomic(self.holder_path, json.dumps(me) + "\n")
    except RunIOError:
      self.release()
      raise
    return self

  def release(self) -> None:
    if self._lock is None:
      return
    with contextlib.suppress(OSError):
      os.unlink(self.holder_path)
    self._lock.release()
    self._lock = None

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(d, dict):
    return {prefix: d}
  out: dict[str, Any] = {}
  for k, v in d.items():
    out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
  return out


def _remove_temporaries(workdir: str) -> None:
  """Removes the temporary files of writes a kill interrupted (the lock is held: no writer is
  active)."""
  if os.path.isdir(workdir):
    for name in os.listdir(workdir):
      if name.startswith(".tmp-"):
        with contextlib.suppress(FileNotFoundError):
          os.unlink(os.path.join(workdir, name))


def recorded_config(workdir: str) -> dict[str, Any] | None:
  """The run's ``config.json`` as a dict (None if there is none).

  Raises:
    DamagedFile: config.json exists but is not a JSON object (torn, edited), naming the file.
  """
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      old = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise DamagedFile(
      f"{path} cannot be read ({e}); restore it from a copy of the run, or use a new workdir."
    ) from e
  if not isinstance(old, dict):
    raise DamagedFile(f"{path} is not a config (a JSON object); restore it or use a new workdir.")
  return old


def _traces_of_a_run(workdir: str) -> list[str]:
  """The files in `workdir` that only a run writes (checkpoints, records, status)."""
  found = []
  ckpt = os.path.join(workdir, "checkpoints")
  if os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt)):
    found.append("checkpoints/")
  found += [n for n in ("metrics.jsonl", "status.json") if os.path.exists(f"{workdir}/{n}")]
  return found


def _check_resume(old: dict[str, Any], new: dict[str, Any], workdir: str) -> list[str]:
  """The fields a resume changes (refusing any but `RESUMABLE_CHANGES` and fewer steps)."""
  a, b = _flatten(old), _flatten(new)
  diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  fixed = [k for k in diff if k not in RESUMABLE_CHANGES]
  if fixed:
    name = fixed[0]
    raise ValueError(
      f"--resume with a different config in {workdir!r}: {name} is {b.get(name)!r}, the run "
      f"has {a.get(name)!r} (fields that differ: {fixed}; a resume may change only "
      f"{list(RESUMABLE_CHANGES)})."
    )
  status = read_status(workdir)
  done = (status or {}).get("step", 0)
  if new["steps"] < done:
    raise ValueError(
      f"--resume with steps={new['steps']} in {workdir!r}, which has already trained {done} "
      "steps: steps may only grow."
    )
  return diff


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What `prepare` found: the previous ``status.json`` of a resumed run (or None), and the
  config.json to write (None when the recorded one stays as it is)."""

  status: dict[str, Any] | None
  config_text: str | None


def prepare(config: Any, workdir: str, *, resume: bool) -> Prepared:
  """Checks that `workdir` may be used for `config`; writes nothing but the removal of the
  temporary files of interrupted writes (call it holding the `WorkdirLock`).

  Raises:
    ValueError: `workdir` holds a run and `resume` is False; a resume with a config that
      differs in a field other than `RESUMABLE_CHANGES` (naming it), or with fewer steps than
      the run has; a workdir with checkpoints or records but no config.json (a resume cannot
      check its config against the run's, and a new run would mix with its records).
    DamagedFile: config.json cannot be read.
  """
  text = config.to_json_best_effort(indent=2, sort_keys=True) + "\n"
  _remove_temporaries(workdir)
  old = recorded_config(workdir)
  if old is None:
    traces = _traces_of_a_run(workdir)
    if traces:
      raise ValueError(
        f"workdir {workdir!r} holds a run ({', '.join(traces)}) but no config.json: "
        + (
          "a resume cannot check its config against the run's; restore config.json, or "
          "use a new workdir."
          if resume
          else "use a new workdir (or restore its config.json and pass --resume)."
        )
      )
    return Prepared(None, text)
  if not resume:
    raise ValueError(
      f"workdir {workdir!r} already holds a run; pass --resume or use a new workdir."
    )
  changed = _check_resume(old, json.loads(text), workdir)
  return Prepared(read_status(workdir), text if changed else None)


def record_config(workdir: str, prepared: Prepared) -> None:
  """Writes the config.json `prepare` found to write (atomically; first of a new run's files)."""
  if prepared.config_text is not None:
    os.makedirs(workdir, exist_ok=True)
    write_atomic(os.path.join(workdir, "config.json"), prepared.config_text)


def keep_recorded(config: Any, workdir: str, asked: Any) -> Any:
  """`config` for ``--resume``: the fields a resume may change (`RESUMABLE_CHANGES`) keep the
  run's recorded values unless `asked` (the fields set on the command line) names them, so a
  resume without ``--config.steps`` keeps the run's own length instead of the config file's."""
  old = recorded_config(workdir)
  if old is None:
    return config
  out = config.copy_and_resolve_references()
  with out.unlocked():
    for name in RESUMABLE_CHANGES:
      if name not in asked and name in old:
        out[name] = old[name]
  return out


def read_status(workdir: str) -> dict[str, Any] | None:
  """The run's ``status.json`` (None if there is none; None with a warning naming the file if
  it is not a status: unreadable, or without a known state and an integer step)."""
  path = os.path.join(workdir, "status.json")
  if not os.path.exists(path):
    return None
  status = None
  with contextlib.suppress(OSError, ValueError), open(path) as f:
    status = json.load(f)
  ok = (
    isinstance(status, dict)
    and status.get("state") in STATES
    and isinstance(status.get("step"), int)
    and not isinstance(status.get("step"), bool)
  )
  if not ok:
    warnings.warn(f"{path} is not a run status ({status!r:.80}); ignored.", stacklevel=2)
    return None
  return status


def _write_in_place(path: str, text: str) -> None:
  """Overwrites `path` in the blocks it already has (no new file: a full disk lets it)."""
  data = text.encode()
  fd = os.open(path, os.O_WRONLY)
  try:
    os.write(fd, data)
    os.ftruncate(fd, len(data))
    os.fsync(fd)
  finally:
    os.close(fd)


def write_status(workdir: str, state: str, step: int, **extra: Any) -> None:
  """Writes ``status.json``: the run's `state`, its `step` and any `extra` fields.

  Atomically (a new file renamed over the old one); when that fails (a full disk) and the file
  exists, it is overwritten in place, so a run that stops on a full disk still says so.
  """
  record = {"state": state, "step": int(step), "updated": time.time(), **extra}
  path = os.path.join(workdir, "status.json")
  text = json.dumps(record, default=str) + "\n"
  try:
    write_atomic(path, text)
  except RunIOError:
    if not os.path.exists(path):
      raise
    try:
      _write_in_place(path, text)
    except OSError as e:
      raise RunIOError(f"cannot write {path}: {describe_os_error(e)}", e.errno) from e
