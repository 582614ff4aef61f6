"""Which extra a module needs, named when it is missing.

``pip install wd-jax`` gives the optax layer (transforms, recipes, masks, schedules,
diagnostics) on jax, optax, chex and numpy. The training engine and the studies are extras;
importing one of their modules without them raises a `ModuleNotFoundError` that says which
extra to install, instead of a bare "No module named 'flax'".
"""

from __future__ import annotations

EXTRAS = {
  "engine": "flax, orbax-checkpoint, ml-collections, absl-py, tensorboardX",
  "studies": "matplotlib, scipy, mnist1d, scikit-learn",
}


def missing(extra: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
  """The error to raise when importing a package of `extra` failed."""
  what = {"engine": "wd_jax's training engine", "studies": "wd_jax's studies"}[extra]
  return ModuleNotFoundError(
    f"{what} needs the [{extra}] extra ({EXTRAS[extra]}); {error.name!r} is not installed: "
    f"pip install 'wd-jax[{extra}]'",
    name=error.name,
  )
