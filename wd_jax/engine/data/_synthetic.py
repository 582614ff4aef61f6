"""Synthetic tasks: linear regression (with its ridge closed form) and teacher–student."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wd_jax import validation
from wd_jax.engine.data._dataset import (
  Dataset,
  check_nonnegative,
  on_device,
)

# ----------------------------------------------------------------------------------------------
# Synthetic tasks.


def linear_regression(
  num_examples: int = 256,
  dim: int = 16,
  noise: float = 0.1,
  seed: int = 0,
  *,
  num_test: int | None = None,
) -> Dataset:
  """Noisy linear regression, the setting where weight decay has a closed form (`ridge_solution`).

  x ~ N(0, I_dim), w* ~ N(0, I_dim / dim) (so Var(x·w*) ≈ 1), y = x·w* + noise·ε, ε ~ N(0, 1).
  Train and test sets are independent draws from the same distribution (NumPy `default_rng`).

  Args:
    num_examples: number of training examples.
    dim: input dimension.
    noise: standard deviation of the label noise.
    seed: seed of w*, the inputs and the noise.
    num_test: number of test examples; defaults to `num_examples`.

  Returns:
    A regression `Dataset`: x (N, dim) float32, y (N,) float32, `num_classes=0`.
    `meta["w_true"]` is w* as a float64 numpy array (dim,); `meta["noise"]` the noise level.
  """
  validation.check_int("num_examples", num_examples, lower=1)
  validation.check_int("dim", dim, lower=1)
  check_nonnegative("noise", noise)
  validation.check_int("seed", seed, lower=0)
  num_test = num_examples if num_test is None else num_test
  validation.check_int("num_test", num_test, lower=1)
  rng = np.random.default_rng(seed)
  w_true = rng.normal(size=(dim,)) / math.sqrt(dim)
  x = rng.normal(size=(num_examples + num_test, dim))
  y = x @ w_true + noise * rng.normal(size=(num_examples + num_test,))
  x, y = x.astype(np.float32), y.astype(np.float32)
  meta = {"w_true": w_true, "noise": float(noise), "seed": int(seed)}
  return on_device("linear_regression", "regression", *_split_at(x, y, num_examples), 0, meta=meta)


def _split_at(x: np.ndarray, y: np.ndarray, n: int) -> tuple[tuple, tuple]:
  """The first `n` examples for training, the rest for testing."""
  return (x[:n], y[:n]), (x[n:], y[n:])


def ridge_solution(x: Any, y: Any, weight_decay: float) -> np.ndarray:
  """The exact minimiser of ½‖Xθ − y‖²/n + ½λ‖θ‖² (no bias), in float64.

  θ* = (XᵀX/n + λI)⁻¹ Xᵀy/n, the point that gradient descent with coupled L2 (or decoupled decay
  with the same λ per step of size α) converges to on this loss.

  Args:
    x: (n, d) inputs (numpy or jax, any float dtype; computed in float64).
    y: (n,) or (n, k) targets.
    weight_decay: λ ≥ 0. With λ = 0, XᵀX must be invertible (n ≥ d, full rank).

  Returns:
    θ* as a float64 numpy array of shape (d,) or (d, k).
  """
  check_nonnegative("weight_decay", weight_decay)
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.ndim != 2 or y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
    raise ValueError(
      f"ridge_solution needs x of shape (n, d) and y of shape (n,) or (n, k); "
      f"got x {x.shape} and y {y.shape}."
    )
  n, d = x.shape
  gram = x.T @ x / n + weight_decay * np.eye(d)
  return np.linalg.solve(gram, x.T @ y / n)


def teacher_student(
  num_examples: int = 2048,
  dim: int = 32,
  hidden: int = 16,
  num_classes: int = 10,
  seed: int = 0,
  *,
  num_test: int | None = None,
) -> Dataset:
  """Gaussian inputs labelled by a fixed random one-hidden-layer tanh teacher.

  teacher(x) = tanh(x W1) W2 + b2 with W1 ~ N(0, 1/dim), W2 ~ N(0, 1/hidden); the label is
  argmax of the teacher's logits. A raw random teacher gives classes up to ~8× apart in
  frequency, so b2 is calibrated (on a separate reference sample) to make the classes roughly
  equally frequent; the teacher stays fixed afterwards and labels are noise-free.

  Args:
    num_examples: number of training examples.
    dim: input dimension.
    hidden: teacher hidden width.
    num_classes: number of classes (≥ 2).
    seed: seed of the teacher and of the inputs.
    num_test: number of test examples; defaults to `num_examples`.

  Returns:
    A classification `Dataset`: x (N, dim) float32 ~ N(0, I), y (N,) int32.
    `meta["teacher"]` holds the float64 numpy weights `{"w1", "w2", "b2"}`.
  """
  validation.check_int("num_examples", num_examples, lower=1)
  validation.check_int("dim", dim, lower=1)
  validation.check_int("hidden", hidden, lower=1)
  validation.check_int("num_classes", num_classes, lower=2)
  validation.check_int("seed", seed, lower=0)
  num_test = num_examples if num_test is None else num_test
  validation.check_int("num_test", num_test, lower=1)
  rng = np.random.default_rng(seed)
  w1 = rng.normal(size=(dim, hidden)) / math.sqrt(dim)
  w2 = rng.normal(size=(hidden, num_classes)) / math.sqrt(hidden)
  # Calibrate b2 by a damped log-frequency correction on 16k reference inputs (not the data).
  reference = np.tanh(rng.normal(size=(16384, dim)) @ w1) @ w2
  b2 = np.zeros(num_classes)
  for _ in range(50):
    freq = np.bincount((reference + b2).argmax(1), minlength=num_classes) / len(reference)
    b2 -= 0.05 * np.log(np.maximum(freq, 1e-3) * num_classes)
  # Label the float32 inputs actually stored, so teacher(x_train) reproduces y_train exactly.
  x = rng.normal(size=(num_examples + num_test, dim)).astype(np.float32)
  y = (np.tanh(x.astype(np.float64) @ w1) @ w2 + b2).argmax(1).astype(np.int32)
  meta = {"teacher": {"w1": w1, "w2": w2, "b2": b2}, "seed": int(seed)}
  splits = _split_at(x, y, num_examples)
  return on_device("teacher_student", "classification", *splits, num_classes, meta=meta)
