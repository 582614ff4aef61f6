"""sklearn's 8×8 digits (shipped with scikit-learn)."""

from __future__ import annotations

import numpy as np

from wd_jax import validation
from wd_jax.engine.data._dataset import (
  Dataset,
  check_fraction,
  on_device,
)

# ----------------------------------------------------------------------------------------------
# sklearn digits.


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """The 1797 8×8 handwritten digits that ship with scikit-learn (no download), 10 classes.

  Args:
    test_fraction: share of the examples held out for testing (stratified by class).
    seed: seed of the split; the same seed gives the same split.

  Returns:
    A classification `Dataset`: x (N, 8, 8, 1) float32 in [0, 1] (pixel / 16); y (N,) int32.
    With the defaults, 1437 train and 360 test examples.
  """
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  check_fraction("test_fraction", test_fraction)
  validation.check_int("seed", seed, lower=0)
  raw = load_digits()
  images = (np.asarray(raw.images, np.float64) / 16.0).astype(np.float32)[..., None]
  labels = np.asarray(raw.target, np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(
    images, labels, test_size=test_fraction, random_state=int(seed), stratify=labels
  )
  meta = {"seed": int(seed), "test_fraction": float(test_fraction)}
  return on_device("digits", "classification", (x_tr, y_tr), (x_te, y_te), 10, meta=meta)
