"""Test-wide set-up: four CPU devices, so data-parallel code runs here as on a GPU/TPU host."""

import os

# Must happen before JAX initialises its backends (i.e. before any test imports jax).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  ).strip()

# Sweeps with strategy "auto" measure in every test (tests/test_sweep.py checks the record).
os.environ.setdefault("WD_JAX_AUTO_CACHE", "off")
