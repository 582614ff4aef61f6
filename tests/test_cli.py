"""The scripts' command line: overrides of any field, grids, cadence, extending a run, one-line
usage errors with exit code 2, and no third-party INFO logs unless asked; the `wd-jax` command
(studies found in the folder, shipped configs by name, the config's fields in --help)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from wd_jax.engine import cli

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


# ------------------------------------------------------------------------------------------------
# The `wd-jax` command (experiments/cli.py; tests/test_install.py runs it installed).


def _wd_jax(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  cmd = [sys.executable, "-m", "experiments.cli", *args]
  return subprocess.run(
    cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False
  )


def test_a_study_is_a_script_with_a_config_of_its_name_and_needs_no_registration(tmp_path):
  # A copy of the command beside a new script with its own config, and a script without one.
  shutil.copy(os.path.join(ROOT, "experiments", "cli.py"), tmp_path / "cli.py")
  (tmp_path / "configs").mkdir()
  (tmp_path / "new_study.py").write_text('"""Does a new study show up? It does."""\n')
  (tmp_path / "configs" / "new_study.py").write_text('"""Its config."""\n')
  (tmp_path / "helper.py").write_text('"""Not a study: no config of its name."""\n')
  out = subprocess.run(
    [sys.executable, str(tmp_path / "cli.py"), "study", "--list"],
    capture_output=True,
    text=True,
    timeout=60,
    check=True,
  )
  assert out.stdout.split() == ["new_study", "Does", "a", "new", "study", "show", "up?"]


def test_the_studies_listed_are_the_scripts_with_a_config_of_their_name():
  out = _wd_jax("study", "--list")
  assert out.returncode == 0, out.stderr
  listed = [line.split()[0] for line in out.stdout.splitlines()]
  configs = set(os.listdir(os.path.join(ROOT, "experiments", "configs")))
  scripts = sorted(f for f in os.listdir(os.path.join(ROOT, "experiments")) if f in configs)
  assert listed == [f[:-3] for f in scripts if not f.startswith("_")]
  assert "l2_pollution" in listed and "train" not in listed and "sweep" not in listed


@pytest.mark.parametrize(
  "args, message",
  [
    (["study", "norm"], "no study 'norm'; did you mean norms?"),
    (["trian"], "no command 'trian'; did you mean train?"),
    (["train", "--config=mnist1d_mpl"], "shipped config 'mnist1d_mpl'; did you mean mnist1d_mlp?"),
    (["train", "--config=nope.py"], "flag --config=nope.py: no config file 'nope.py'"),
    (["train", "--config=mnist1d_mlp:smok"], "variant must be 'default' or 'smoke', got 'smok'"),
  ],
)
def test_a_bad_command_study_or_config_is_one_line_and_exit_code_2(tmp_path, args, message):
  wd = tmp_path / "never"
  out = _wd_jax(*args, f"--workdir={wd}")
  assert out.returncode == 2, out.stderr[-2000:]
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
  assert not wd.exists()


def test_a_shipped_config_is_named_and_print_config_shows_it_with_the_overrides():
  out = _wd_jax(
    "train",
    "--config=mnist1d_mlp:smoke",
    "--config.steps=7",
    "--config.model.name=cnn1d",
    "--print_config",
  )  # no --workdir: nothing runs
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert "steps = 7" in lines and "model.name = 'cnn1d'" in lines
  assert "optimizer.weight_decay = 0.01" in lines  # mnist1d_mlp's own value, not the base's


@pytest.mark.parametrize("script", ["train.py", "sweep.py"])
def test_the_checkout_scripts_help_lists_the_config_fields_with_their_defaults(script):
  config = SMOKE if script == "train.py" else SWEEP
  out = _script(script, "--help", f"--config={config}")  # --help first: the order is free
  assert out.returncode == 1, out.stderr[-2000:]  # absl's --help exit code, kept for the scripts
  assert f"Fields of {config} and their defaults" in " ".join(out.stdout.split())
  assert ("    steps = 40" if script == "train.py" else "    base.steps = 40") in out.stdout
  assert "--[no]print_config:" in out.stdout


@pytest.mark.parametrize("study", ["early_wd", "l2_pollution"])
def test_a_study_help_lists_its_own_configs_fields_and_exits_0(study):
  out = _wd_jax("study", study, "--help")
  assert out.returncode == 0, out.stderr[-2000:]
  path = os.path.join(ROOT, "experiments", "configs", f"{study}.py")
  assert f"Fields of {path} and their defaults" in " ".join(out.stdout.split())
  fields = cli.config_lines(cli.load_config(path), width=72)
  assert len(fields) > 10
  for line in fields:  # each a line of the help (absl wraps the long ones)
    assert len(line) > 70 or f"    {line}\n" in out.stdout, line


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
