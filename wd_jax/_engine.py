"""Imported first by every module of the training engine: names the [engine] extra if missing."""

from wd_jax._extras import missing

try:
  import flax  # noqa: F401
  import ml_collections  # noqa: F401
  import orbax.checkpoint  # noqa: F401
  import tensorboardX  # noqa: F401
except ModuleNotFoundError as e:
  raise missing("engine", e) from None
