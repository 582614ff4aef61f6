"""The `Dataset` type, argument checks, and datasets from user arrays."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from wd_jax import validation

TASKS = ("classification", "regression", "language_model")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train, test and (optionally) validation device arrays, and what they mean.

  `eq=False`: equality and hashing are by identity, because comparing or hashing device arrays
  field by field is ill-defined (and would make `hash(dataset)` raise).

  Attributes:
    name: the loader's name, e.g. `"mnist1d"`.
    task: `"classification"`, `"regression"` or `"language_model"`.
    x_train: classification/regression: (N, ...) float32 inputs; language model: the (N_tokens,)
      int32 token stream.
    y_train: classification: (N,) int32 labels; regression: (N,) or (N, k) float32 targets;
      language model: the same array as `x_train` (targets are the stream shifted by one).
    x_test: as `x_train`, for the test split.
    y_test: as `y_train`, for the test split.
    num_classes: number of classes; vocabulary size for a language model; 0 for regression.
    seq_len: language model only: the context length of one sample (0 otherwise).
    meta: loader-specific extras (host numpy arrays and Python values), e.g. `{"vocab": ...}`,
      the true regression weights or the teacher's parameters.
    x_val: as `x_train`, for a validation split carved from the training data
      (`with_validation_split`); None when there is none.
    y_val: as `y_train`, for the validation split.

  Example:
    >>> import numpy as np
    >>> ds = wd_jax.engine.data.from_arrays(np.zeros((10, 2)), np.arange(10) % 2,
    ...                              np.zeros((4, 2)), np.arange(4) % 2)
    >>> ds.task, ds.num_train, ds.num_test, ds.input_shape, ds.has_validation
    ('classification', 10, 4, (2,), False)
    >>> x, y = ds.split("test")
    >>> x.shape, y.dtype
    ((4, 2), dtype('int32'))
  """

  name: str
  task: str
  x_train: jax.Array
  y_train: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  num_classes: int
  seq_len: int = 0
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)
  x_val: jax.Array | None = None
  y_val: jax.Array | None = None

  def __post_init__(self) -> None:
    if self.task not in TASKS:
      raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}.")
    if self.task == "language_model" and self.seq_len <= 0:
      raise ValueError(f"a language-model Dataset needs seq_len > 0, got {self.seq_len!r}.")
    if (self.x_val is None) != (self.y_val is None):
      raise ValueError("a Dataset needs both x_val and y_val, or neither.")

  @property
  def has_validation(self) -> bool:
    """Whether a validation split was carved from the training data."""
    return self.x_val is not None

  def split(self, name: str) -> tuple[jax.Array, jax.Array]:
    """The (x, y) arrays of split `name`: "train", "val" or "test"."""
    if name not in SPLITS:
      raise ValueError(f"split must be one of {list(SPLITS)}, got {name!r}.")
    if name == "val" and not self.has_validation:
      raise ValueError(
        f"dataset {self.name!r} has no validation split; carve one with "
        "with_validation_split (config.dataset.validation_fraction > 0)."
      )
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

  @property
  def num_train(self) -> int:
    """Number of training examples (for a language model: start positions, tokens - seq_len)."""
    return self._count(self.x_train)

  @property
  def num_test(self) -> int:
    """Number of test examples (for a language model: tokens - seq_len)."""
    return self._count(self.x_test)

  @property
  def num_val(self) -> int:
    """Number of validation examples (0 without a validation split)."""
    return self._count(self.x_val) if self.has_validation else 0

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of ONE input example, e.g. (40,), (8, 8, 1), (32, 32, 3) or (seq_len,)."""
    if self.task == "language_model":
      return (self.seq_len,)
    return tuple(int(d) for d in self.x_train.shape[1:])

  def _count(self, x: jax.Array) -> int:
    n = int(x.shape[0])
    return n - self.seq_len if self.task == "language_model" else n


# ----------------------------------------------------------------------------------------------
# Argument checks (fail when the loader is called, name the argument and the value).


def check_fraction(name: str, value: Any) -> None:
  """`value` in (0, 1), both ends open: `wd_jax.validation.check_number`'s rule."""
  validation.check_number(
    name,
    value,
    lower=0.0,
    lower_inclusive=False,
    upper=1.0,
    upper_inclusive=False,
    allow_schedule=False,
  )


def check_nonnegative(name: str, value: Any) -> None:
  """`value` a finite number >= 0: `wd_jax.validation.check_number`'s rule."""
  validation.check_number(name, value, lower=0.0, allow_schedule=False)


def _to_device(*arrays: np.ndarray) -> tuple[jax.Array, ...]:
  return tuple(jax.device_put(a) for a in arrays)


def on_device(
  name: str, task: str, train: tuple, test: tuple, num_classes: int, **fields: Any
) -> Dataset:
  """A `Dataset` of host (x, y) splits placed on the default device once (a language model's
  split is its token stream alone: the targets are the stream itself)."""
  if task == "language_model":
    (x_tr,), (x_te,) = _to_device(train[0]), _to_device(test[0])
    y_tr, y_te = x_tr, x_te
  else:
    x_tr, y_tr, x_te, y_te = _to_device(*train, *test)
  return Dataset(
    name=name,
    task=task,
    x_train=x_tr,
    y_train=y_tr,
    x_test=x_te,
    y_test=y_te,
    num_classes=int(num_classes),
    **fields,
  )


def with_validation_split(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
  """`dataset` with a validation split carved from its training data.

  Classification/regression: a seeded permutation of the training examples; the first
  round(fraction·N) become the validation split, the rest (in their original order) the new
  training split. Language model: the last `fraction` of the training stream (a contiguous
  tail, so no window straddles the two). The test split is untouched. The split depends on
  `seed` only, so every run of a study, whatever its own seed, trains and selects on the same
  examples (paired comparisons).

  Args:
    dataset: a `Dataset` without a validation split.
    fraction: share of the training data held out, in (0, 1).
    seed: seed of the permutation.

  Returns:
    A new `Dataset` with `x_val`/`y_val` set and `meta["validation"]` recording fraction, seed
    and sizes.

  Raises:
    ValueError: bad `fraction` or `seed`, a dataset that already has a validation split, or a
      split left with too few examples (fewer than 1, or than seq_len + 1 tokens).

  Example:
    >>> import numpy as np
    >>> from wd_jax.engine.data import from_arrays, with_validation_split
    >>> ds = with_validation_split(from_arrays(np.zeros((10, 2)), np.arange(10) % 2,
    ...                                        np.zeros((4, 2)), np.arange(4) % 2), 0.2)
    >>> ds.num_train, ds.num_val, ds.num_test
    (8, 2, 4)
    >>> ds.meta["validation"]
    {'fraction': 0.2, 'seed': 0, 'size': 2}

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010 (why selection reads a validation split, not test).
  """
  check_fraction("validation_fraction", fraction)
  validation.check_int("validation_seed", seed, lower=0)
  if dataset.has_validation:
    raise ValueError(f"dataset {dataset.name!r} already has a validation split.")
  x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
  if dataset.task == "language_model":
    n_val = round(len(x) * fraction)
    n_train = len(x) - n_val
    for split, count in (("train", n_train), ("validation", n_val)):
      if count < dataset.seq_len + 1:
        raise ValueError(
          f"validation_fraction={fraction}: the {split} part of the {len(x)}-token stream has "
          f"{count} tokens, fewer than seq_len + 1 = {dataset.seq_len + 1}."
        )
    parts = (x[:n_train], x[:n_train], x[n_train:], x[n_train:])
  else:
    n = len(x)
    n_val = round(n * fraction)
    if not 1 <= n_val < n:
      raise ValueError(
        f"validation_fraction={fraction} of {n} training examples leaves {n_val} for "
        "validation; it needs at least 1 on each side."
      )
    perm = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    parts = (x[train], y[train], x[val], y[val])
  x_tr, y_tr, x_va, y_va = _to_device(*parts)
  if dataset.task == "language_model":
    y_tr, y_va = x_tr, x_va  # targets are the stream itself
  meta = dict(dataset.meta)
  meta["validation"] = {"fraction": float(fraction), "seed": int(seed), "size": int(n_val)}
  return dataclasses.replace(dataset, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va, meta=meta)


def _num_classes(y_train: np.ndarray, y_test: np.ndarray, num_classes: int | None) -> int:
  """The class count of integer labels >= 0: `num_classes`, or 1 + the largest label."""
  for split, ya in (("train", y_train), ("test", y_test)):
    if not np.issubdtype(ya.dtype, np.integer):
      raise ValueError(f"from_arrays: y_{split} must hold integer labels, got {ya.dtype}.")
  labels = np.concatenate([y_train.ravel(), y_test.ravel()])
  if labels.size and labels.min() < 0:
    raise ValueError(f"from_arrays: labels must be >= 0, got {labels.min()}.")
  inferred = int(labels.max()) + 1 if labels.size else 0
  if num_classes is None:
    return inferred
  if num_classes < inferred:
    raise ValueError(f"num_classes={num_classes} but the labels go up to {inferred - 1}.")
  return num_classes


def from_arrays(
  x_train: Any,
  y_train: Any,
  x_test: Any,
  y_test: Any,
  *,
  task: str = "classification",
  num_classes: int | None = None,
  seq_len: int = 0,
  name: str = "arrays",
) -> Dataset:
  """A `Dataset` from your own arrays (numpy or jax), placed on the default device once.

  Args:
    x_train: (N, ...) inputs; for a language model the (L,) int token stream.
    y_train: (N,) int labels (classification), (N,) or (N, k) float targets (regression); for a
      language model pass the stream again.
    x_test: test inputs, as `x_train`.
    y_test: test targets, as `y_train`.
    task: "classification", "regression" or "language_model" (it picks the loss: softmax
      cross-entropy, ½ squared error, next-token cross-entropy).
    num_classes: classes (vocabulary size for a language model); default 1 + the largest
      label of either split. Ignored for regression.
    seq_len: language model only: the context length.
    name: how the dataset is named in logs and summaries.

  Returns:
    The `Dataset`; float inputs are stored as float32 (float64 under x64 stays float64 if
    given so), labels as int32.

  Raises:
    ValueError: `task` unknown, x and y of a split with different leading sizes, or
      non-integer labels for classification.

  Example:
    >>> import numpy as np
    >>> from wd_jax.engine.data import from_arrays
    >>> ds = from_arrays(np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2]),
    ...                  np.zeros((2, 3)), np.array([0, 1]))
    >>> ds.task, ds.num_classes, ds.input_shape
    ('classification', 3, (3,))
    >>> ds.x_train.dtype, ds.y_train.dtype
    (dtype('float32'), dtype('int32'))

  References:
    ``jax.device_put``: the arrays are placed on the default device once, so a jitted step
    gathers its batch there (`wd_jax.engine.data.make_batch_fn`).
  """
  if task not in TASKS:
    raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}.")
  arrays = [np.asarray(a) for a in (x_train, y_train, x_test, y_test)]
  for split, (xa, ya) in (("train", arrays[:2]), ("test", arrays[2:])):
    if xa.ndim == 0 or ya.ndim == 0 or xa.shape[0] != ya.shape[0]:
      raise ValueError(
        f"from_arrays: x_{split} and y_{split} need the same leading size, got shapes "
        f"{xa.shape} and {ya.shape}."
      )
  if task in ("classification", "language_model"):
    num_classes = _num_classes(arrays[1], arrays[3], num_classes)
    arrays[1], arrays[3] = arrays[1].astype(np.int32), arrays[3].astype(np.int32)
  else:
    num_classes = 0
  for i in (0, 2) if task != "language_model" else ():
    if arrays[i].dtype == np.float64 and not jax.config.jax_enable_x64:
      arrays[i] = arrays[i].astype(np.float32)
  if task == "language_model":
    arrays[0], arrays[2] = arrays[0].astype(np.int32), arrays[2].astype(np.int32)
  return on_device(name, task, arrays[:2], arrays[2:], num_classes, seq_len=int(seq_len))
