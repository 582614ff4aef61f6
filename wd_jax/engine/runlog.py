"""Run outputs that survive the real world: atomic files, JSON-lines metrics, TensorBoard events,
a progress line, preemption signals, and fault points for the tests that kill runs.

Every writer here writes synchronously in the calling thread, so an I/O error (a full disk, a
vanished filesystem) surfaces at once as a `RunIOError` naming the file, instead of killing a
background thread and leaving the training loop blocked on its queue.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import warnings
from typing import Any


class RunIOError(OSError):
  """A run's output could not be written (disk full, filesystem gone): the run stops cleanly.

  Its text is one line that names the file (and the step, where there is one).
  """

  def __init__(self, message: str, errno_: int | None = None):
    super().__init__(errno_, message)
    self.message = message

  def __str__(self) -> str:
    return self.message


class RecordsGap(RuntimeError):
  """metrics.jsonl ends before the records the checkpoint a run resumes from was written after."""


def describe_os_error(e: BaseException) -> str:
  """The cause of an I/O failure in a few words ("the disk is full", "Read-only file system").

  Looks through the chain of exceptions for an `OSError` or an errno that a library (orbax,
  tensorstore) quoted in its own message.
  """
  seen: BaseException | None = e
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno:
      return "the disk is full" if seen.errno == errno.ENOSPC else os.strerror(seen.errno)
    quoted = re.search(r"os_error_code='?(\d+)", str(seen))
    if quoted:
      code = int(quoted.group(1))
      return "the disk is full" if code == errno.ENOSPC else os.strerror(code)
    seen = seen.__cause__ or seen.__context__
  text = " ".join(str(e).split())
  return (text[:200] + "...") if len(text) > 200 else text or type(e).__name__


def _io_error(path: str, e: OSError) -> RunIOError:
  return RunIOError(f"cannot write {path}: {describe_os_error(e)}", e.errno)


# ----------------------------------------------------------------------------------------------
# Fault points: WD_JAX_FAULT="<site>:<n>" SIGKILLs this process the n-th time <site> is reached.
# Only the fault-injection tests set it; unset, `fault` is a dictionary lookup.

FAULT_ENV = "WD_JAX_FAULT"
_fault_counts: dict[str, int] = {}


@functools.cache
def _fault_target() -> tuple[str, int] | None:
  spec = os.environ.get(FAULT_ENV)
  if not spec:
    return None
  site, _, n = spec.rpartition(":")
  return site, int(n or 1)


def fault(site: str) -> None:
  """Kills this process with SIGKILL if ``WD_JAX_FAULT`` names this `site` and hit count."""
  target = _fault_target()
  if target is None or target[0] != site:
    return
  _fault_counts[site] = _fault_counts.get(site, 0) + 1
  if _fault_counts[site] == target[1]:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# Files.


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename (never a half-written file).

  Raises:
    RunIOError: the file could not be written (the temporary file is removed).
  """
  directory = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    fault(f"write:{os.path.basename(path)}")  # between the complete temporary file and the rename
    os.replace(tmp, path)
  except OSError as e:
    if tmp and os.path.exists(tmp):
      os.unlink(tmp)
    raise _io_error(path, e) from e
  except BaseException:
    if tmp and os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _jsonable(v: Any) -> Any:
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf; keep them readable (read_metrics turns them back)
  return v


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def read_metrics(path: str) -> list[dict[str, Any]]:
  """All records of a metrics.jsonl file (an empty list if it does not exist); the non-finite
  values written as "nan" / "inf" / "-inf" come back as floats.

  A torn last line (a crash in the middle of a write) is dropped with a warning naming the file
  and the line; a bad line anywhere else is an error naming them.
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split("\n")
  records = []
  last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(
        {k: _NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in json.loads(line).items()}
      )
    except ValueError as e:
      if i == last:
        warnings.warn(
          f"{path}: line {i + 1} is a torn record (the run stopped while writing it); dropped.",
          stacklevel=2,
        )
        break
      raise ValueError(f"{path}: line {i + 1} is not a JSON record: {e}") from e
  return records


class _TensorBoard:
  """TensorBoard scalar events written synchronously (no writer thread that could die)."""

  def __init__(self, logdir: str, purge_step: int | None):
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    os.makedirs(logdir, exist_ok=True)
    self._event = Event
    self._writer = EventsWriter(os.path.join(logdir, "events"))
    if purge_step is not None:  # TensorBoard drops the earlier file's events after this step
      self._writer.write_event(Event(step=purge_step, file_version="brain.Event:2"))
      start = SessionLog(status=SessionLog.START)
      self._writer.write_event(Event(step=purge_step, session_log=start))
    self._writer.flush()

  def write(self, step: int, scalars: dict[str, float]) -> None:
    from tensorboardX.summary import scalar

    for k, v in scalars.items():
      self._writer.write_event(self._event(wall_time=time.time(), step=step, summary=scalar(k, v)))
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def records_gap(path: str, start: int, last_record: int | None) -> str | None:
  """What is missing from the records a resume from checkpoint `start` keeps, or None.

  `last_record` is the step of the last record written before that checkpoint (each
  checkpoint stores it, and the records are fsynced before the checkpoint is written), so
  records that end before it were lost after the fact (an OS crash on a run of an older version,
  a file truncated or deleted by hand).
  """
  if not last_record:
    return None
  kept = [r.get("step", 0) for r in read_metrics(path) if r.get("step", 0) <= start]
  last = max(kept, default=0)
  if last >= last_record:
    return None
  have = f"ends at step {last}" if kept else "has no record"
  if not os.path.exists(path):
    have = "is missing"
  return (
    f"{path} {have}, but the checkpoint of step {start} was written after the record of step "
    f"{last_record}: the records of steps {last + 1}-{last_record} are lost"
  )


class MetricWriter:
  """JSON lines (``metrics.jsonl``) plus TensorBoard events; only process 0 should own one.

  `resume_step`: the step a resumed run continues from; the records after it are dropped (the
  run writes them again), so the file reads as one run. `last_step` is the step of the last
  record in the file. `sync` makes the records written so far
  durable (fsync): the run calls it before each checkpoint, so the records never end before it.

  Raises `RunIOError` (naming the file) when a record cannot be written.
  """

  def __init__(self, workdir: str, *, resume_step: int | None = None, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.last_step = 0  # the step of the last record in the file
    if resume_step is not None and os.path.exists(self.path):
      kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
      write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
      self.last_step = max((r.get("step", 0) for r in kept), default=0)
    try:
      self._file = open(self.path, "a")
      self._tb = None
      if tensorboard:
        self._tb = _TensorBoard(os.path.join(workdir, "tensorboard"), resume_step)
    except OSError as e:
      raise _io_error(self.path, e) from e

  def sync(self) -> None:
    """Makes every record written so far durable (flush and fsync)."""
    try:
      self._file.flush()
      os.fsync(self._file.fileno())
    except OSError as e:
      raise _io_error(self.path, e) from e

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    record = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
    try:
      self._write_line(json.dumps(record) + "\n")
    except OSError as e:
      raise _io_error(self.path, e) from e
    self.last_step = int(step)
    if self._tb is not None:
      scalars = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
      }
      try:
        self._tb.write(step, scalars)
      except OSError as e:
        raise _io_error(os.path.join(os.path.dirname(self.path), "tensorboard"), e) from e

  def _write_line(self, line: str) -> None:
    target = _fault_target()
    if target is not None and target[0] == "metrics":
      self._file.write(line[: len(line) // 2])  # a torn record, then (maybe) the kill
      self._file.flush()
      fault("metrics")
      line = line[len(line) // 2 :]
    self._file.write(line)
    self._file.flush()

  def close(self) -> None:
    with contextlib.suppress(OSError):  # closing after a failed write must not mask its error
      self._file.close()
    if self._tb is not None:
      with contextlib.suppress(OSError):
        self._tb.close()


# ----------------------------------------------------------------------------------------------
# Preemption.


class Interrupted(Exception):
  """Work stopped by a signal after saving what it could (`signal`: its number)."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signal = signum


class StopSignals:
  """Turns SIGTERM and SIGINT into a request to stop after the current step.

  Clusters and TPU pods preempt with SIGTERM; Ctrl-C sends SIGINT. Inside the context the first
  signal only sets `requested` (the signal number), so the run can checkpoint and exit; a second
  SIGINT raises KeyboardInterrupt at once. Outside the main thread (where Python cannot install
  handlers) it does nothing. The previous handlers come back on exit.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame) -> None:
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = signum

  def __call__(self) -> bool:
    return self.requested is not None

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)


def exit_code(signum: int) -> int:
  """The shell's exit code for a process stopped by `signum` (143 for SIGTERM, 130 for SIGINT)."""
  return 128 + signum
