"""Install in layers: the optax layer imports alone; engine modules name the extra they need."""

import subprocess
import sys

import pytest

ENGINE = ("flax", "orbax", "ml_collections", "tensorboardX")  # absl comes with chex
STUDIES = ("matplotlib", "scipy", "mnist1d", "sklearn")


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
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
  ],
)
def test_an_engine_module_without_its_extra_names_the_extra(module, hidden, extra):
  # `sys.modules[name] = None` makes `import name` fail as if the package were not installed.
  out = _python(f"import sys; sys.modules[{hidden!r}] = None\nimport {module}")
  assert out.returncode != 0
  assert f"needs the [{extra}] extra" in out.stderr, out.stderr
  assert f"pip install 'wd-jax[{extra}]'" in out.stderr
