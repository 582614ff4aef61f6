"""A run's directory: one process at a time, config.json first, status.json last.

- `WorkdirLock`: held for the life of a run or sweep; a second launch is refused with a message
  naming the holder; a dead holder's lock is released by the kernel (or detected by pid/host).
- `prepare`: checks that a workdir may be used (a new one, or a resume with the same config, whose
  ``steps`` may grow to extend a finished run) and writes ``config.json`` before anything else.
- `read_status` / `write_status`: ``status.json``, the run's state (running, completed, diverged,
  preempted, failed), its step and final metrics, written atomically at each change; resuming a
  completed run reads it and changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from typing import Any

from wd_jax.engine.runlog import write_atomic

# Config fields a resume may change: how long to train and how often to log (not what to train).
RESUMABLE_CHANGES = (
  "steps",
  "log_every",
  "diagnostics_every",
  "eval_every",
  "checkpoint_every",
  "max_checkpoints",
)


class WorkdirBusy(RuntimeError):
  """Another live process holds the workdir."""


class WorkdirLock:
  """An exclusive lock on a workdir, held for the life of a run or sweep.

  ``WORKDIR/.lock`` is locked with ``flock``: the kernel releases it when the holder exits or is
  killed, so a lock left by a dead process is never in the way. The file records the holder's
  pid, host, start time and command for the message a second launch gets. On a filesystem
  without ``flock`` the file itself is the lock, and one whose recorded process is dead on this
  host is taken over as stale.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, ".lock")
    self._fd: int | None = None

  def _holder(self) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError), open(self.path) as f:
      return json.load(f)
    return {}

  def _busy(self, holder: dict[str, Any]) -> WorkdirBusy:
    since = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return WorkdirBusy(
      f"workdir {self.workdir!r} is in use by process {holder.get('pid', '?')} on "
      f"{holder.get('host', '?')} since {when} ({holder.get('command', '?')}); wait for it to "
      "finish or stop it, or use another workdir."
    )

  def acquire(self) -> WorkdirLock:
    import fcntl

    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise self._busy(self._holder()) from None
    except OSError as e:  # no flock here (some network filesystems): the pid file is the lock
      os.close(fd)
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        raise
      holder = self._holder()
      if holder and not self._stale(holder) and holder.get("pid") != os.getpid():
        raise self._busy(holder) from None
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    me = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": time.time(),
      "command": " ".join(sys.argv)[:200],
    }
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(me).encode())
    self._fd = fd
    return self

  @staticmethod
  def _stale(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
      return False  # cannot tell: another host's process may be alive
    try:
      os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
      return True
    except (OSError, ValueError):
      return False
    return False

  def release(self) -> None:
    if self._fd is None:
      return
    import fcntl

    with contextlib.suppress(OSError):
      os.ftruncate(self._fd, 0)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

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


def prepare(config: Any, workdir: str, *, resume: bool) -> dict[str, Any] | None:
  """Checks that `workdir` may be used, then writes ``config.json`` (first, atomically).

  Returns:
    The previous ``status.json`` when resuming a run that has one, else None.

  Raises:
    ValueError: `workdir` holds a run and `resume` is False; or resuming with a config that
      differs in a field other than `RESUMABLE_CHANGES`, or with fewer steps than the run has.
  """
  cfg_path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  new = json.loads(text)
  if os.path.exists(cfg_path):
    if resume:  # a kill between a temporary file's write and its rename leaves one behind
      for name in os.listdir(workdir):
        if name.startswith(".tmp-"):
          os.unlink(os.path.join(workdir, name))
    else:
      raise ValueError(
        f"workdir {workdir!r} already holds a run; pass --resume or use a new workdir."
      )
    with open(cfg_path) as f:
      old = json.load(f)
    a, b = _flatten(old), _flatten(new)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    fixed = [k for k in diff if k not in RESUMABLE_CHANGES]
    if fixed:
      raise ValueError(f"--resume with a different config in {workdir!r}: fields {fixed} differ.")
    status = read_status(workdir)
    done = (status or {}).get("step", 0)
    if new["steps"] < done:
      raise ValueError(
        f"--resume with steps={new['steps']} in {workdir!r}, which has already trained {done} "
        "steps: steps may only grow."
      )
    if diff:
      write_atomic(cfg_path, text + "\n")
    return status
  os.makedirs(workdir, exist_ok=True)
  write_atomic(cfg_path, text + "\n")
  return None


def read_status(workdir: str) -> dict[str, Any] | None:
  """The run's ``status.json`` (None if there is none, or it cannot be read)."""
  path = os.path.join(workdir, "status.json")
  with contextlib.suppress(OSError, ValueError):
    with open(path) as f:
      status = json.load(f)
    return status if isinstance(status, dict) else None
  return None


def write_status(workdir: str, state: str, step: int, **extra: Any) -> None:
  """Writes ``status.json``: the run's `state`, its `step` and any `extra` fields."""
  record = {"state": state, "step": int(step), "updated": time.time(), **extra}
  write_atomic(os.path.join(workdir, "status.json"), json.dumps(record, default=str) + "\n")
