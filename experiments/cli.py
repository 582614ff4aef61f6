"""The ``wd-jax`` command: train, sweep and run the studies from an installed package.

  wd-jax train --config=mnist1d_mlp:smoke --workdir=runs/smoke
  wd-jax sweep --config=sweep_mnist1d_mlp:smoke --workdir=runs/sweep
  wd-jax study --list
  wd-jax study norms --workdir=runs/norms          # its own config; or --config=norms:smoke
  wd-jax configs                                   # the shipped configs, by name

Each command runs the script of this folder it names (train.py, sweep.py, <study>.py) the way
``python experiments/<script>.py`` runs it in a checkout (the folder first on ``sys.path``, the
script as ``__main__``), so both take the same flags, write the same outputs and exit with the
same codes (`wd_jax.engine.cli`). Here ``--config`` also takes a shipped config's name (a file of
configs/, found in the installed package), with or without ``:variant``. A study is a script of
this folder that has a config of its own name in configs/, so a new study needs no change here.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "configs")
USAGE_ERROR, FAILED = 2, 1  # as wd_jax.engine.cli's exit codes
# absl's help flags (its --help exits 1: a help request that printed exits 0 here).
HELP = {dash + name for dash in ("-", "--") for name in ("h", "?", "help", "helpshort", "helpfull")}
# command -> (script, the layer its imports need, the config --help lists without --config)
COMMANDS = {
  "train": ("train.py", "wd_jax.engine", "mnist1d_mlp"),
  "sweep": ("sweep.py", "wd_jax.study", "sweep_mnist1d_mlp"),
}
USAGE = """usage: wd-jax COMMAND [flags]

commands:
  train --config=CONFIG --workdir=DIR   train one run (resume a killed one with --resume)
  sweep --config=CONFIG --workdir=DIR   train every configuration of a sweep config, with heat maps
  study NAME [--config=CONFIG] --workdir=DIR
                                        run a study (its own config unless --config is given)
  study --list                          the studies, one line each
  configs                               the shipped configs, one line each

CONFIG is a shipped config's name or a config file's path, either with an optional :variant
(--config=mnist1d_mlp:smoke). --config.FIELD=VALUE overrides any field. COMMAND --help lists the
flags and the config's fields with their defaults; --print_config prints the resolved config and
exits. Exit codes: 0 done, 1 failed (diverged, workdir busy, damaged checkpoint, failed write),
2 bad flag or config value, 128+s stopped by signal s after writing a checkpoint."""


def _names(folder: str) -> list[str]:
  return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def config_names() -> list[str]:
  """The shipped configs, by name (the files of configs/)."""
  return _names(CONFIGS)


def study_names() -> list[str]:
  """The studies: the scripts of this folder with a config of the same name."""
  return [n for n in _names(HERE) if n in config_names()]


def summary(path: str, width: int = 90) -> str:
  """The first sentence of a script's docstring (cut to `width` characters), read without
  importing the script."""
  with open(path, encoding="utf-8") as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  sentence = re.split(r"(?<=[.?!])\s(?=[A-Z])", " ".join(doc.split("\n\n")[0].split()), maxsplit=1)[
    0
  ]
  return sentence if len(sentence) <= width else sentence[: width - 1] + "…"


def _usage_error(message: str) -> None:
  print(f"usage error: {message}", file=sys.stderr, flush=True)
  raise SystemExit(USAGE_ERROR)


def _unknown(kind: str, name: str, known: list[str], hint: str) -> None:
  from wd_jax.validation import did_you_mean

  _usage_error(f"no {kind} {name!r}{did_you_mean(name, known)} ({hint}: {', '.join(known)})")


def resolve_config(value: str) -> str:
  """``--config``'s value with a shipped config's name (``mnist1d_mlp[:variant]``) replaced by
  its file's path. A path is kept (an existing file, or anything with a folder or ``.py``)."""
  path, colon, variant = value.partition(":")
  if os.path.isfile(path) or os.sep in path or path.endswith(".py"):
    return value
  if path not in config_names():
    _unknown("config file or shipped config", path, config_names(), "shipped configs")
  return os.path.join(CONFIGS, f"{path}.py") + colon + variant


def has_config(args: list[str]) -> bool:
  return any(arg.partition("=")[0] in ("-config", "--config") for arg in args)


def with_configs(args: list[str]) -> list[str]:
  """`args` with every ``--config`` value resolved (`resolve_config`)."""
  out = []
  for i, arg in enumerate(args):
    flag, eq, value = arg.partition("=")
    if flag in ("-config", "--config") and eq:
      arg = f"{flag}={resolve_config(value)}"
    elif i and args[i - 1] in ("-config", "--config"):
      arg = resolve_config(arg)
    out.append(arg)
  return out


def run_script(command: str, script: str, layer: str, args: list[str], note: str = "") -> None:
  """Runs `script` of this folder as ``python experiments/<script>`` would, with `args`
  (`note`: a line for the top of its ``--help``)."""
  try:  # the layer first: a missing extra is then named in one line, not a traceback
    importlib.import_module(layer)
  except ModuleNotFoundError as e:
    if (e.name or "").startswith("wd_jax"):
      raise
    print(f"error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(FAILED) from None
  wants_help = bool(HELP.intersection(args))
  if wants_help:
    config = "[--config=CONFIG]" if command.startswith("study") else "--config=CONFIG"
    print(f"usage: wd-jax {command} {config} --workdir=DIR [--config.FIELD=VALUE ...] [flags]\n")
    print(f"It runs {script}, as `python experiments/{script}` does in a checkout, where")
    print(f"`--config=experiments/configs/X.py` is `--config=X` here. {note}".rstrip() + "\n")
  sys.argv = [f"wd-jax {command}", *args]
  sys.path.insert(0, HERE)
  try:
    runpy.run_path(os.path.join(HERE, script), run_name="__main__")
  except SystemExit as e:
    if wants_help and e.code == 1:  # absl's --help ends with exit code 1
      raise SystemExit(0) from None
    raise


def _listing(names: list[str], folder: str) -> str:
  width = max(map(len, names), default=0)
  return "\n".join(f"  {n:<{width}}  {summary(os.path.join(folder, n + '.py'))}" for n in names)


def main(argv: list[str] | None = None) -> None:
  """The ``wd-jax`` console script: ``wd-jax COMMAND [flags]`` (see `USAGE`)."""
  args = sys.argv[1:] if argv is None else list(argv)
  command, rest = (args[0], args[1:]) if args else (None, [])
  if command in HELP:
    print(USAGE)
  elif command is None:
    _usage_error(f"give a command: {', '.join([*COMMANDS, 'study', 'configs'])}\n\n{USAGE}")
  elif command == "configs":
    print(_listing(config_names(), CONFIGS))
  elif command == "study" and rest and rest[0] in ("--list", "-list"):
    print(_listing(study_names(), HERE))
  elif command == "study" and rest and rest[0] in HELP:
    print(f"{USAGE}\n\nstudies:\n{_listing(study_names(), HERE)}")
  elif command == "study" and not rest:
    _usage_error(f"give a study: wd-jax study NAME ...\nstudies:\n{_listing(study_names(), HERE)}")
  elif command == "study":
    name, rest = rest[0], rest[1:]
    if name not in study_names():
      _unknown("study", name, study_names(), "studies")
    if not has_config(rest):  # a study runs its own config
      rest = [f"--config={name}", *rest]
    run_script(f"study {name}", f"{name}.py", "wd_jax.study", with_configs(rest))
  elif command in COMMANDS:
    script, layer, example = COMMANDS[command]
    note = ""
    if HELP.intersection(rest) and not has_config(rest) and example in config_names():
      note = f"Without --config, --help lists the fields of the shipped config {example}."
      rest = [f"--config={example}", *rest]
    run_script(command, script, layer, with_configs(rest), note)
  else:
    _unknown("command", command, [*COMMANDS, "study", "configs"], "commands")


if __name__ == "__main__":
  main()
