"""Install in layers: the optax layer imports alone; engine modules name the extra they need."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = ("flax", "orbax", "ml_collections", "tensorboardX")  # absl comes with chex
STUDIES = ("matplotlib", "scipy", "mnist1d", "sklearn")


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(  # in the checkout's root: `experiments` is importable there
    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
  )


def test_import_wd_jax_loads_no_engine_or_study_package():
  out = _python(
    "import sys, wd_jax\n"
    f"print(sorted(m for m in {ENGINE + STUDIES!r} if m in sys.modules))\n"
    "print(len(wd_jax.__all__), wd_jax.diagnostics.__name__)"
  )
  assert out.returncode == 0, out.stderr
  loaded, names = out.stdout.splitlines()
  assert loaded == "[]"
  assert names.endswith("wd_jax.diagnostics")


@pytest.mark.parametrize(
  "module, hidden, extra",
  [
    ("wd_jax.engine.train", "flax", "engine"),
    ("wd_jax.engine.sweep", "ml_collections", "engine"),
    ("wd_jax.engine.checkpoint", "orbax", "engine"),
    ("wd_jax.study.stats", "scipy", "studies"),
    ("wd_jax.study.report", "matplotlib", "studies"),
    ("experiments.train", "flax", "engine"),  # installed as wd_jax_experiments
    ("experiments.sweep", "scipy", "studies"),
    ("experiments.configs.mnist1d_mlp", "ml_collections", "engine"),
  ],
)
def test_an_engine_module_without_its_extra_names_the_extra(module, hidden, extra):
  # `sys.modules[name] = None` makes `import name` fail as if the package were not installed.
  out = _python(f"import sys; sys.modules[{hidden!r}] = None\nimport {module}")
  assert out.returncode != 0
  assert f"needs the [{extra}] extra" in out.stderr, out.stderr
  assert f"pip install 'wd-jax[{extra}]'" in out.stderr


@pytest.mark.parametrize(
  "command, hidden, extra",
  [
    (["train"], "flax", "engine"),
    (["sweep"], "scipy", "studies"),
    (["study", "norms"], "matplotlib", "studies"),
  ],
)
def test_the_command_without_an_extra_names_it_in_one_line(tmp_path, command, hidden, extra):
  args = [*command, f"--workdir={tmp_path}/run"]
  out = _python(
    f"import sys; sys.modules[{hidden!r}] = None\nfrom experiments import cli\ncli.main({args!r})"
  )
  assert out.returncode == 1, out.stderr[-2000:]
  (line,) = out.stderr.strip().splitlines()
  assert f"needs the [{extra}] extra" in line and f"pip install 'wd-jax[{extra}]'" in line
  assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# The installed command line: a wheel of this tree in a new virtual environment, run from an empty
# directory, so nothing of the checkout is on the path.

SOURCES = ("pyproject.toml", "README.md", "wd_jax", "experiments")


def _run(cmd, cwd, timeout=600):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"JAX_PLATFORMS": "cpu"}
  return subprocess.run(
    cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
  )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(wheel, venv, empty directory): this tree built as a wheel by the test environment's own
  pip and setuptools (no download), installed with --no-deps into a new venv that sees the test
  environment's packages through a .pth file. (`venv --system-site-packages` would give the
  base interpreter's packages, not this environment's.)"""
  tmp = tmp_path_factory.mktemp("install")
  src, dist, venv, empty = tmp / "src", tmp / "dist", tmp / "venv", tmp / "empty"
  src.mkdir()
  for name in SOURCES:  # a copy, so the build leaves nothing in the checkout
    path = os.path.join(ROOT, name)
    if os.path.isdir(path):
      shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy(path, src / name)
  build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
  out = _run([*build, "--no-index", "-w", str(dist), str(src)], cwd=tmp)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  (wheel,) = dist.glob("wd_jax-*.whl")
  assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp).returncode == 0
  python = str(venv / "bin" / "python")
  site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
  ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
  (pathlib.Path(site.stdout.strip()) / "test_environment.pth").write_text("\n".join(ours) + "\n")
  out = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  empty.mkdir()
  return wheel, venv, empty


def test_the_wheel_holds_every_package_and_config_of_the_tree(installed):
  wheel, _, _ = installed
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
  for top, installed_as in (("wd_jax", "wd_jax"), ("experiments", "wd_jax_experiments")):
    for folder, _, files in os.walk(os.path.join(ROOT, top)):
      rel = os.path.relpath(folder, ROOT).replace(top, installed_as, 1)
      for f in files:
        if f.endswith(".py") or f == "py.typed":
          assert f"{rel}/{f}" in names, f"{rel}/{f} is not in the wheel ([tool.setuptools])"
  with zipfile.ZipFile(wheel) as z:
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "wd-jax = wd_jax_experiments.cli:main" in z.read(entry_points).decode()


def test_the_installed_command_trains_sweeps_and_runs_a_study_from_an_empty_directory(installed):
  _, venv, empty = installed
  where = _run([str(venv / "bin" / "python"), "-c", _WHERE], cwd=empty)
  assert where.returncode == 0, where.stderr[-2000:]
  assert where.stdout.split() == ["venv", "venv", "absent"]  # the installed copy, no checkout
  wd_jax_cmd, runs = str(venv / "bin" / "wd-jax"), empty / "runs"
  out = _run([wd_jax_cmd, "train", "--config=mnist1d_mlp:smoke", f"--workdir={runs}/t"], empty)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(runs / "t" / "status.json") as f:
    assert json.load(f)["state"] == "completed"
  sweep = ["sweep", "--config=sweep_mnist1d_mlp:smoke", f"--workdir={runs}/s"]
  out = _run([wd_jax_cmd, *sweep, "--config.grid.learning_rate=(1e-3,)"], empty)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(runs / "s" / "results.csv") as f:
    assert len(f.read().strip().splitlines()) == 1 + 2  # header + 2 configurations
  study = ["study", "l1_vs_l2", "--config=l1_vs_l2:smoke", "--config.phase=tune"]
  prereg = f"--config.preregistration={runs}/l1_vs_l2.json"  # not into the installed package
  out = _run([wd_jax_cmd, *study, prereg, f"--workdir={runs}/r"], empty)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"wrote {runs}/r/summary.md" in out.stdout
  assert sorted(os.listdir(empty)) == ["runs"]  # nothing else written where it ran


_WHERE = """
import importlib.util, os, sys, wd_jax, wd_jax_experiments
for m in (wd_jax, wd_jax_experiments):
  print("venv" if m.__file__.startswith(sys.prefix) else m.__file__)
print("absent" if importlib.util.find_spec("experiments") is None else "checkout on the path")
"""


@pytest.mark.parametrize(
  "args, shown",
  [
    (["train", "--help"], "steps = 6000"),  # mnist1d_mlp's fields, shown without --config
    (["sweep", "--help"], "grid.learning_rate = (0.001, 0.003, 0.01, 0.03)"),
    (["study", "early_wd", "--help"], "resamples = 200"),
    (["train", "--config=mnist1d_mlp:smoke", "--config.steps=7", "--print_config"], "steps = 7"),
  ],
)
def test_the_installed_command_shows_the_config_fields(installed, args, shown):
  _, venv, empty = installed
  out = _run([str(venv / "bin" / "wd-jax"), *args], empty)
  assert out.returncode == 0, out.stderr[-3000:]
  assert shown in out.stdout.splitlines() or f"    {shown}" in out.stdout, out.stdout[-3000:]
  if "--help" in args:
    assert "--config:" in out.stdout and "--[no]print_config:" in out.stdout
