"""One progress display for runs, sweeps and studies: steps/s without compilation, and an ETA.

On a terminal it is a `rich` progress display (one line per task: a study, its current sweep, a
run); elsewhere (CI logs, files) it prints a plain line when a task starts, about every tenth of
its work (at most every 30 s) and when it ends. The rate counts from a task's first report after
its first step, so the compilation that step paid for does not make the rate look slower.

Tasks nest: a sweep started inside a study adds its steps to the study's line too.

>>> with progress.task("sweep runs/x", total=16 * 1000, unit="steps") as t:
...   t.advance(1000, info="run 1/16 done")
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

_QUIET_SECONDS = 30.0
_QUIET_FRACTION = 0.1
_stack: list[Task] = []
_live: Any = None  # the rich Progress shared by every task on a terminal


def _fmt_seconds(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = round(s)
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Task:
  """One line of the display: `total` units of work, advanced as they are done."""

  def __init__(self, description: str, total: float, unit: str, stream: TextIO, parent: Any):
    self.description, self.total, self.unit = description, max(float(total), 1.0), unit
    self.stream, self.parent = stream, parent
    self.done = 0.0
    self.t_first: float | None = None  # when the first work was reported (compilation done)
    self.done_first = 0.0
    self.info = ""
    self._last_print = -math.inf
    self._last_fraction = 0.0
    self._id = None

  def begin(self, done: float = 0) -> None:
    """Shows the line, with `done` units done before it began (not counted in the rate)."""
    self.done = float(done)
    if _live is not None:
      self._id = _live.add_task(
        self.description, total=self.total, completed=self.done, rate="", eta="", info=""
      )
    else:
      at = f" (from {int(self.done)})" if self.done else ""
      self._say(f"{self.description}: {int(self.total)} {self.unit}{at}")

  def rate(self) -> float:
    """Units per second since the first report (compilation excluded)."""
    if self.t_first is None or self.done <= self.done_first:
      return math.nan
    elapsed = time.perf_counter() - self.t_first
    return (self.done - self.done_first) / elapsed if elapsed > 0 else math.nan

  def eta(self) -> float:
    r = self.rate()
    return (self.total - self.done) / r if r and r > 0 else math.nan

  def advance(self, amount: float, info: str | None = None) -> None:
    """`amount` more units done (the ancestors' lines advance too)."""
    if self.t_first is None:
      self.t_first, self.done_first = time.perf_counter(), self.done + amount
    self.done = min(self.done + amount, self.total)
    if info is not None:
      self.info = info
    self._show()
    if self.parent is not None:
      self.parent.advance(amount)

  def _show(self, final: bool = False) -> None:
    rate, eta = self.rate(), self.eta()
    rate_text = f"{rate:.1f} {self.unit}/s" if math.isfinite(rate) else ""
    if _live is not None and self._id is not None:
      _live.update(
        self._id, completed=self.done, rate=rate_text, eta=_fmt_seconds(eta), info=self.info
      )
      return
    now, fraction = time.perf_counter(), self.done / self.total
    due = fraction - self._last_fraction >= _QUIET_FRACTION and now - self._last_print >= 1.0
    if final or due or now - self._last_print >= _QUIET_SECONDS:
      self._last_print, self._last_fraction = now, fraction
      parts = [f"{self.description}: {int(self.done)}/{int(self.total)} {self.unit}"]
      parts += [f"{rate_text}"] if rate_text else []
      parts += [] if final else [f"ETA {_fmt_seconds(eta)}"]
      parts += [self.info] if self.info else []
      self._say("  ".join(parts))

  def _say(self, line: str) -> None:
    self.stream.write(line + "\n")
    self.stream.flush()

  def close(self) -> None:
    self._show(final=True)
    if _live is not None and self._id is not None:
      _live.remove_task(self._id)


def active() -> bool:
  """Whether a task is open (a sweep inside a study shows its own line under the study's)."""
  return bool(_stack)


@contextlib.contextmanager
def task(
  description: str,
  total: float,
  unit: str = "steps",
  *,
  stream: TextIO | None = None,
  done: float = 0,
) -> Iterator[Task]:
  """A line of the display for the duration of the block (nested in the enclosing task).

  `done`: the units done before the block (a resumed run's steps): shown, but not counted in
  the rate or in the enclosing tasks.
  """
  global _live
  stream = stream or sys.stderr
  owner = False
  if _live is None and not _stack and stream.isatty():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    _live = Progress(
      TextColumn("{task.description}"),
      BarColumn(),
      MofNCompleteColumn(),
      TextColumn("{task.fields[rate]}"),
      TextColumn("ETA {task.fields[eta]}"),
      TextColumn("{task.fields[info]}"),
      console=Console(file=stream),
      transient=False,
    )
    _live.start()
    owner = True
  t = Task(description, total, unit, stream, _stack[-1] if _stack else None)
  t.begin(done)
  _stack.append(t)
  try:
    yield t
  finally:
    _stack.pop()
    t.close()
    if owner:
      _live.stop()
      _live = None
