"""The three install layers stay layered: the import contract in pyproject.toml holds, and it
fails on an upward import (so the check itself can fail)."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(root: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": root}
  return subprocess.run(
    [LINT, "--config", os.path.join(root, "pyproject.toml"), "--no-cache"],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


def _copy_tree(dest) -> None:
  """The packages the contracts name, and the contracts, in `dest`."""
  for package in ("wd_jax", "experiments"):
    shutil.copytree(
      os.path.join(ROOT, package), dest / package, ignore=shutil.ignore_patterns("__pycache__")
    )
  shutil.copy(os.path.join(ROOT, "pyproject.toml"), dest / "pyproject.toml")


def test_the_layer_contracts_hold_on_the_tree():
  out = _lint(ROOT)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "BROKEN" not in out.stdout


def test_an_upward_import_from_the_optax_layer_breaks_the_contract(tmp_path):
  _copy_tree(tmp_path)
  masks = tmp_path / "wd_jax" / "masks.py"
  masks.write_text(masks.read_text() + "\nfrom wd_jax.engine import loop  # noqa\n")
  out = _lint(str(tmp_path))
  assert out.returncode != 0
  assert "optax layer <- engine <- studies BROKEN" in out.stdout, out.stdout
  assert "wd_jax.masks -> wd_jax.engine.loop" in out.stdout, out.stdout


def test_an_engine_module_importing_a_study_breaks_the_contract(tmp_path):
  _copy_tree(tmp_path)
  loop = tmp_path / "wd_jax" / "engine" / "progress.py"
  loop.write_text(loop.read_text() + "\nfrom wd_jax.study import stats  # noqa\n")
  out = _lint(str(tmp_path))
  assert out.returncode != 0
  assert "optax layer <- engine <- studies BROKEN" in out.stdout, out.stdout
