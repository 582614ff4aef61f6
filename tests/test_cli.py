"""The scripts' command line: overrides of any field, grids, cadence, extending a run, one-line
usage errors with exit code 2, and no third-party INFO logs unless asked."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "experiments", "configs", "mnist1d_mlp.py")
SMOKE = DEFAULT + ":smoke"
SWEEP = os.path.join(ROOT, "experiments", "configs", "sweep_mnist1d_mlp.py") + ":smoke"


def _script(name, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", name), *args]
  return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_an_optimizer_keyword_is_overridden_from_the_command_line(tmp_path):
  wd = tmp_path / "run"
  out = _script(
    "train.py",
    f"--config={DEFAULT}",  # leaves the cadences to scale with the run
    f"--workdir={wd}",
    "--config.optimizer.kwargs.coupling=schedule",
    "--config.steps=50",
  )
  assert out.returncode == 0, out.stderr[-2000:]
  with open(wd / "config.json") as f:
    assert json.load(f)["optimizer"]["kwargs"] == {"coupling": "schedule"}
  with open(wd / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  # 50 steps with the cadence left to scale: a record (with diagnostics) every 50/20 ≈ 2 steps.
  assert len(records) == 25 and all("param_norm" in r for r in records)
  # No orbax/absl INFO lines unless --verbosity asks for them.
  assert not [line for line in out.stderr.splitlines() if line.startswith("I1") or "INFO" in line]


def test_resume_extends_a_finished_run(tmp_path):
  wd = tmp_path / "run"
  assert _script("train.py", f"--config={SMOKE}", f"--workdir={wd}").returncode == 0
  out = _script("train.py", f"--config={SMOKE}", f"--workdir={wd}", "--resume", "--config.steps=60")
  assert out.returncode == 0, out.stderr[-2000:]
  with open(wd / "status.json") as f:
    assert json.load(f)["step"] == 60


def test_a_grid_is_overridden_with_a_tuple_or_a_list(tmp_path):
  for i, value in enumerate(("(1e-3,3e-3,1e-2)", "[1e-3,3e-3,1e-2]")):
    wd = tmp_path / f"sweep{i}"
    out = _script(
      "sweep.py",
      f"--config={SWEEP}",
      f"--workdir={wd}",
      f"--config.grid.learning_rate={value}",
      "--config.grid.weight_decay=(1e-4,)",
      "--config.sweep.strategy=vmap",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with open(wd / "results.csv") as f:
      assert len(f.read().strip().splitlines()) == 1 + 3  # header + 3 configurations


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--config.stepz=5", "config.stepz is not a config field; did you mean config.steps?"),
    ("--config.steps=abc", "--config.steps=abc"),
    ("--config.optimizer.learning_rate=-1", "config.optimizer.learning_rate must be > 0"),
    ("--config.optimizer.name=adamz", "config.optimizer.name must be one of"),
    ("--bogus=1", "Unknown command line flag 'bogus'"),
    ("--config.seed=1180591620717411303424", "config.seed must be an int <= 4294967294"),
    ("--config.optimizer.kwargs.b3=0.9", "config.optimizer.kwargs {'b3': 0.9} do not fit"),
    ("--config.dataset.kwargs.noise=0.1", "config.dataset.kwargs {'noise': 0.1} do not fit"),
  ],
)
def test_a_bad_value_is_one_line_and_exit_code_2(tmp_path, flag, message):
  wd = tmp_path / "never"
  out = _script("train.py", f"--config={SMOKE}", f"--workdir={wd}", flag)
  assert out.returncode == 2, out.stderr[-2000:]
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
  assert "Traceback" not in out.stderr and not wd.exists()


def test_a_resume_keeps_the_runs_own_steps_unless_the_command_asks_for_more(tmp_path):
  wd = tmp_path / "run"
  first = _script("train.py", f"--config={SMOKE}", f"--workdir={wd}", "--config.steps=30")
  assert first.returncode == 0, first.stderr[-2000:]
  out = _script("train.py", f"--config={SMOKE}", f"--workdir={wd}", "--resume")
  assert out.returncode == 0 and "completed 30 steps already; nothing to do" in out.stderr
  assert "read only" not in out.stderr, out.stderr  # orbax's notes on a read-only manager
  with open(wd / "status.json") as f:
    assert json.load(f)["step"] == 30


def _exit_of(fn, capsys):
  from wd_jax.engine import cli

  with pytest.raises(SystemExit) as stop:
    cli.main_with_exit_codes(fn)()
  return stop.value.code, capsys.readouterr().err.splitlines()


def test_a_second_ctrl_c_exits_130_with_one_line(capsys):
  def interrupted():
    raise KeyboardInterrupt

  code, lines = _exit_of(interrupted, capsys)
  assert code == 130 and len(lines) == 1 and "second Ctrl-C" in lines[0]


def test_an_os_error_exits_1_with_one_line_naming_the_file(capsys):
  def unreadable():
    raise PermissionError(13, "Permission denied", "/runs/x/config.json")

  code, lines = _exit_of(unreadable, capsys)
  assert code == 1 and lines == ["error: [Errno 13] Permission denied: '/runs/x/config.json'"]
