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
import importlib.util
import logging as std_logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from absl import flags

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
  own validation, naming them.

  A file that is missing or refuses its variant is a one-line usage error (exit code 2). With
  ``--help`` on the command line, the help of ``--config`` lists the fields of the config it
  names and their defaults. ``--print_config`` (``--print_<name>``) prints the resolved config,
  one ``field = value`` line each with every override applied, and exits 0 before anything runs.
  Both flags are key flags of the script, so its ``--help`` shows them.
  """
  from ml_collections import config_flags

  if HELP_FLAGS.intersection(sys.argv[1:]):
    help = f"{help}\n{_fields_help(name, sys.argv[1:])}"
  holder = config_flags.DEFINE_config_file(
    name, None, help, lock_config=False, accept_new_attributes=True
  )
  flags.FLAGS[name].parser = _ConfigFileParser()  # ml_collections' loader, with one-line errors
  printer = flags.DEFINE_bool(
    f"print_{name}",
    False,
    f"Print the resolved --{name} (one 'field = value' line each, overrides applied) and exit 0; "
    "nothing runs and no --workdir is needed.",
  )

  def print_and_exit(on: bool) -> bool:
    if on and holder.value is not None:  # (no --config: its required-flag error follows)
      print("\n".join(config_lines(holder.value)), flush=True)
      raise SystemExit(0)
    return True

  # absl validates once every flag (every override) is parsed, in the order the validators were
  # registered: this one runs before the required-flag checks the script defines after it.
  flags.register_validator(printer.name, print_and_exit)
  for flag in (holder.name, printer.name):  # absl's --help lists the key flags of sys.argv[0]
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[flag])
  return holder


# absl's help flags: with one on the command line, --config's help lists the config's fields.
HELP_FLAGS = frozenset(
  dash + name for dash in ("-", "--") for name in ("h", "?", "help", "helpshort", "helpfull")
)


def load_config(value: str) -> Any:
  """``get_config(variant)`` of the config file `value` names as ``path[:variant]`` (the file's
  default variant without one), as ml_collections' ``--config`` loads it."""
  path, *variant = value.split(":", 1)
  if not os.path.isfile(path):
    raise ValueError(f"no config file {path!r}")
  spec = importlib.util.spec_from_file_location("config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*variant)


def config_lines(config: Any, width: int | None = None, prefix: str = "") -> list[str]:
  """``field = value`` for every field of `config`, nested ones dotted (``optimizer.name``), in
  the order `ConfigDict.items` gives; each value's repr cut to `width` characters if given."""
  import ml_collections

  out = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      out += config_lines(value, width, f"{prefix}{key}.")
      continue
    text = "{}" if isinstance(value, ml_collections.ConfigDict) else repr(value)
    if width is not None and len(text) > width:
      text = text[: width - 1] + "…"
    out.append(f"{prefix}{key} = {text}")
  return out


class _ConfigFileParser(flags.ArgumentParser):
  """``--config=path[:variant]`` to its config. absl turns the ValueError or TypeError of a
  missing file or a refused variant into one line naming the flag (a usage error)."""

  def parse(self, argument: str) -> Any:
    try:
      return load_config(argument)
    except OSError as e:  # an unreadable file
      raise ValueError(str(e)) from None

  def flag_type(self) -> str:
    return "config file"


def _flag_value(name: str, args: list[str]) -> str | None:
  """The last value given to ``--name`` in `args` (``--name=V``, ``-name=V`` or ``--name V``)."""
  value = None
  for i, arg in enumerate(args):
    flag, eq, rest = arg.partition("=")
    if flag in (f"-{name}", f"--{name}"):
      value = rest if eq else (args[i + 1] if i + 1 < len(args) else None)
  return value


def _fields_help(name: str, args: list[str]) -> str:
  value = _flag_value(name, args)
  if value is None:
    return f"Give --{name} with --help to list its fields and their defaults."
  try:
    config = load_config(value)
  except Exception as e:  # help still prints; running reports the error with its exit code
    return f"--{name}={value} does not load: {e}"
  fields = "\n".join(config_lines(config, width=72))
  return f"Fields of {value} and their defaults (override any: --{name}.FIELD=VALUE):\n{fields}"


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
