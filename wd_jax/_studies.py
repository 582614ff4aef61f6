"""Imported first by every module of the studies: names the [studies] extra if missing."""

from wd_jax import _engine  # noqa: F401  (the studies run on the engine)
from wd_jax._extras import missing

try:
  import matplotlib  # noqa: F401
  import scipy  # noqa: F401
except ModuleNotFoundError as e:
  raise missing("studies", e) from None
