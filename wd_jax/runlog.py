"""Run outputs: atomic files, JSON-lines metrics, TensorBoard events and a progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from typing import Any


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename (never a half-written file)."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _jsonable(v: Any) -> Any:
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf; keep them readable
  return v


def read_metrics(path: str) -> list[dict[str, Any]]:
  """All records of a metrics.jsonl file (an empty list if it does not exist)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
  """JSON lines (``metrics.jsonl``) plus TensorBoard events; only process 0 should own one."""

  def __init__(self, workdir: str, *, resume_step: int | None = None, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None:
      # Drop records the resumed run will write again, so the file reads as one clean run.
      kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
      write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    self._file = open(self.path, "a")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    record = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


class Progress:
  """One status line: step, loss, accuracy, steps/s, ETA (rewritten in place on a terminal)."""

  def __init__(self, total: int, start: int = 0, stream=None):
    self.total, self.start = total, start
    self.stream = stream or sys.stderr
    self.t0 = time.perf_counter()
    self.tty = self.stream.isatty()

  def update(self, step: int, metrics: dict[str, Any]) -> float:
    elapsed = max(time.perf_counter() - self.t0, 1e-9)
    rate = (step - self.start) / elapsed
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    parts = [f"step {step}/{self.total}"]
    for k in ("loss", "accuracy", "test_accuracy"):
      if k in metrics:
        parts.append(f"{k} {metrics[k]:.4f}")
    parts.append(f"{rate:.1f} steps/s")
    parts.append(f"ETA {eta:.0f}s" if math.isfinite(eta) else "ETA ?")
    line = "  ".join(parts)
    self.stream.write(("\r" + line + " " * 8) if self.tty else line + "\n")
    self.stream.flush()
    return rate

  def close(self) -> None:
    if self.tty:
      self.stream.write("\n")
