"""What the tests of experiments/ share: the folder on the path, a script's command line, a
study's module, its smoke config for one phase and its confirm run."""

import importlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))


def script_cmd(script: str, config: str, workdir, *flags: str) -> list[str]:
  """The command running experiments/<script> on experiments/configs/<config> (with its
  ``:variant``, if any) into `workdir`, with `flags` after."""
  path, _, variant = config.partition(":")
  config_path = os.path.join(ROOT, "experiments", "configs", path)
  return [
    sys.executable,
    os.path.join(ROOT, "experiments", script),
    f"--config={config_path}" + (f":{variant}" if variant else ""),
    f"--workdir={workdir}",
    *flags,
  ]


def study(name: str):
  """The study's module, experiments/<name>.py."""
  return importlib.import_module(name)


def smoke_config(name: str, tmp_path=None, phase: str | None = None):
  """experiments/configs/<name>.py's smoke variant; with `tmp_path` and `phase`, for that phase
  with its pre-registration at ``tmp_path/<name>.json``."""
  cfg = importlib.import_module(f"configs.{name}").get_config("smoke")
  if tmp_path is not None:
    cfg.preregistration = str(tmp_path / f"{name}.json")
    cfg.phase = phase
  return cfg


def run_confirm(module, cfg, tmp_path):
  """Runs the confirm phase into ``tmp_path/confirm``: its output, summary.md and the records
  of metrics.jsonl (one per run). Every declared claim has its verdict in the summary."""
  workdir = str(tmp_path / "confirm")
  out = module.run(cfg, workdir)
  with open(os.path.join(workdir, "summary.md")) as f:
    summary = f.read()
  assert summary.count("**Verdict**") == len(out["findings"]) == len(cfg.claims)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(x) for x in f]
  return out, summary, lines
