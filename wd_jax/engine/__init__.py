"""The training engine (``pip install 'wd-jax[engine]'``): one loop for every run and sweep.

Models (`models`), data on the device (`data`), the compiled steps (`experiment`), the one loop
(`loop`), single runs that survive kills (`train`, `checkpoint`, `workdir`, `runlog`), data
parallelism (`parallel`), sweeps (`sweep`), configs and the command line (`config`, `cli`).
It builds on the optax layer (`wd_jax`) and is imported by the studies (`wd_jax.study`), never
the other way round. Importing it without the extra names the extra to install.
"""

from wd_jax._extras import missing

try:
  import flax  # noqa: F401
  import ml_collections  # noqa: F401
  import orbax.checkpoint  # noqa: F401
  import tensorboardX  # noqa: F401
except ModuleNotFoundError as e:
  raise missing("engine", e) from None
