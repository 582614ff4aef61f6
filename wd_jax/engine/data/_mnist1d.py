"""MNIST-1D, generated offline by the `mnist1d` package."""

from __future__ import annotations

import functools
import random

import numpy as np

from wd_jax import validation
from wd_jax.engine.data._dataset import (
  Dataset,
  on_device,
)

# ----------------------------------------------------------------------------------------------
# MNIST-1D.


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(
  seed: int, num_train: int = 4000, num_test: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The raw (x, y, x_test, y_test) of MNIST-1D for `seed`, cached: generation takes 1-2 s per
  5000 sequences."""
  # Imported here: the package pulls in scipy and matplotlib (~1 s) that other loaders don't need.
  from mnist1d.data import get_dataset_args, make_dataset

  args = get_dataset_args()
  args.seed = seed
  # The package splits at int(num_samples · train_split); split here instead, exactly at
  # num_train (the default 4000 + 1000 gives the package's own arrays).
  args.num_samples, args.train_split = num_train + num_test, 1.0
  # `make_dataset` only computes (unlike `get_dataset`, it neither downloads nor pickles to the
  # CWD), but it reseeds the global `random`/`np.random` generators: restore them afterwards.
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    raw = make_dataset(args)
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  x, y = np.asarray(raw["x"], np.float64), np.asarray(raw["y"], np.int32)
  arrays = (x[:num_train], y[:num_train], x[num_train:], y[num_train:])
  for a in arrays:
    a.setflags(write=False)  # the cache hands out the same arrays every time
  return arrays


def mnist1d(seed: int = 0, num_train: int = 4000, num_test: int = 1000) -> Dataset:
  """MNIST-1D (Greydanus, 2020): 4000 train / 1000 test sequences of length 40, 10 classes.

  Generated locally by the `mnist1d` package (`make_dataset`, never the downloading
  `get_dataset`), with the package's default arguments except the seed and the sizes.
  Generation takes 1-2 s per 5000 sequences (plus ~1 s to import the package), so the raw arrays
  are cached in-process per (seed, sizes). A fresh draw (another seed) is a fresh sample of
  sequences: studies tune on one draw and confirm on another, with large test sets.

  Args:
    seed: the generator's seed; the same seed and sizes give identical arrays.
    num_train: training sequences (a validation split is carved from them).
    num_test: test sequences (num_train + num_test a multiple of 10: one tenth per class).

  Returns:
    A classification `Dataset`: x (N, 40) float32, standardised by the train set's global
    (scalar) mean and std; y (N,) int32 in [0, 10). `meta` holds `seed`, `mean` and `std`.
  """
  validation.check_int("seed", seed, lower=0)
  validation.check_int("num_train", num_train, lower=1)
  validation.check_int("num_test", num_test, lower=1)
  if (num_train + num_test) % 10:
    raise ValueError(
      f"num_train + num_test must be a multiple of 10 (one tenth per class), got "
      f"{num_train} + {num_test}."
    )
  x, y, x_test, y_test = _mnist1d_arrays(int(seed), int(num_train), int(num_test))
  mean, std = float(x.mean()), float(x.std())
  x_tr = ((x - mean) / std).astype(np.float32)
  x_te = ((x_test - mean) / std).astype(np.float32)
  meta = {"seed": int(seed), "mean": mean, "std": std}
  return on_device(
    "mnist1d", "classification", (x_tr, y.copy()), (x_te, y_test.copy()), 10, meta=meta
  )
