"""How the experiment scripts end: one line and an exit code, never a traceback for a known cause.

=========  ================================================================================
exit code  cause
=========  ================================================================================
0          done (or, with ``--resume``, the run had completed already)
1          the run diverged, its workdir is busy, a checkpoint or config.json is damaged, the
           records have a gap, or a file could not be read or written (the line names it)
2          bad input: a config value or flag, or a resume with another config or model (the
           line names the field)
128 + s    stopped by signal s (143: SIGTERM, 130: SIGINT): after writing a checkpoint, or, on
           a second Ctrl-C, at once
=========  ================================================================================
"""

from __future__ import annotations

import functools
import logging as std_logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from wd_jax.engine.checkpoint import DamagedCheckpoint
from wd_jax.engine.runlog import Interrupted, RecordsGap, RunIOError, exit_code
from wd_jax.engine.workdir import DamagedFile, WorkdirBusy

USAGE, FAILED = 2, 1


def fail(message: str, code: int) -> None:
  """Prints `message` as one line to stderr and exits with `code`."""
  print(" ".join(str(message).split()), file=sys.stderr, flush=True)
  raise SystemExit(code)


def main_with_exit_codes(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Wraps an absl main: known failures become one line on stderr and the exit codes above."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except (WorkdirBusy, DamagedCheckpoint, DamagedFile, RecordsGap, RunIOError) as e:
      fail(f"error: {e}", FAILED)
    except Interrupted as e:
      fail(f"stopped: {e}", exit_code(e.signal))
    except ValueError as e:
      fail(f"error: {e}", USAGE)
    except OSError as e:  # a file the run reads or writes (str(e) names it)
      fail(f"error: {e}", FAILED)
    except KeyboardInterrupt:
      fail("stopped at once by a second Ctrl-C; continue with --resume", exit_code(signal.SIGINT))

  return wrapped


def finish_run(result: dict[str, Any], workdir: str) -> None:
  """Exits non-zero for a run that diverged or was preempted, after saying so in one line."""
  if result.get("diverged"):
    fail(f"diverged: {result['message']} (see {workdir}/summary.md)", FAILED)
  if result.get("preempted"):
    fail(
      f"preempted at step {result['preempted_at_step']}: checkpoint written; continue with "
      "--resume",
      exit_code(result["signal"]),
    )


def define_config(name: str = "config", help: str = "Config file (path[:variant]).") -> Any:
  """``--config`` for a script: any field may be overridden, including new optimizer keyword
  arguments (``--config.optimizer.kwargs.coupling=schedule``) and tuples or lists for grids
  (``--config.weight_decays='(1e-3,1e-2)'``); unknown fields are then refused by the config's
  own validation, naming them."""
  from ml_collections import config_flags

  return config_flags.DEFINE_config_file(
    name, None, help, lock_config=False, accept_new_attributes=True
  )


def _parse_flags(argv: list[str]) -> list[str]:
  from absl import flags

  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"usage error: {e}", USAGE)
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # a --config.x override
    fail(f"usage error: {e}", USAGE)
  return []


class _OrbaxFailureReports(std_logging.Filter):
  """Drops orbax's own reports (with tracebacks, from its background threads and the asyncio
  tasks it abandons) of a failed save: the run reports the failure itself, in one line naming
  the checkpoint and the step."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno < std_logging.ERROR:
      return True
    abandoned = record.name == "asyncio" and "never retrieved" in str(record.msg)
    return not (abandoned or "/orbax/" in record.pathname)


def _without_closed_loop_reports(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
  """`sys.unraisablehook` without the "Event loop is closed" reports that tensorstore prints
  when the writes of a save orbax abandoned (after a failed write) end after its loop closed."""

  def unraisablehook(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
      return
    hook(unraisable)

  return unraisablehook


def run(main: Callable[[list[str]], Any]) -> None:
  """`absl.app.run` for the experiment scripts: flag and config errors are one line with exit
  code 2, known failures as above, and third-party INFO logs (orbax's) and orbax's reports of a
  failed save stay off unless ``--verbosity=0`` asks for them."""
  from absl import app, flags, logging

  def quiet_main(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      logging.get_absl_handler().addFilter(_OrbaxFailureReports())
      sys.unraisablehook = _without_closed_loop_reports(sys.unraisablehook)
    return main(argv)

  app.run(main_with_exit_codes(quiet_main), flags_parser=_parse_flags)
