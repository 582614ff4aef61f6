"""CIFAR-10 from the binary files a user has (no download, no pickle)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from wd_jax.engine.data._dataset import (
  Dataset,
  on_device,
)

# CIFAR-10 binary format: one label byte, then 3 × 32 × 32 pixel bytes, channel-major (R, G, B).
_CIFAR_IMAGE_BYTES = 3 * 32 * 32
_CIFAR_RECORD_BYTES = 1 + _CIFAR_IMAGE_BYTES
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch.bin",)
CIFAR10_CLASSES = (
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (binary version).


def _read_cifar_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Decodes one CIFAR-10 binary batch file.

  Each record is 1 label byte followed by 3072 pixel bytes: the 1024 red, then 1024 green, then
  1024 blue values of a 32×32 image, each plane row-major.

  Args:
    path: the `.bin` file.

  Returns:
    (images, labels): uint8 (N, 32, 32, 3) (NHWC) and int32 (N,).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is empty, its size is not a multiple of 3073 bytes, or a label is > 9.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"CIFAR-10 file {path!r} does not exist.")
  size = os.path.getsize(path)
  if size == 0 or size % _CIFAR_RECORD_BYTES:
    raise ValueError(
      f"CIFAR-10 file {path!r} has {size} bytes, not a positive multiple of the record size "
      f"{_CIFAR_RECORD_BYTES} (1 label byte + {_CIFAR_IMAGE_BYTES} pixel bytes). Is it the "
      "binary version of CIFAR-10 (not the python pickle or CIFAR-100)?"
    )
  records = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR_RECORD_BYTES)
  labels = records[:, 0].astype(np.int32)
  bad = np.flatnonzero(labels > 9)
  if bad.size:
    raise ValueError(
      f"CIFAR-10 file {path!r}: record {int(bad[0])} has label {int(labels[bad[0]])}; "
      f"labels must be 0..9 ({bad.size} bad records in all). Is this CIFAR-100 (2 label bytes)?"
    )
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


def _read_cifar_files(
  data_dir: str, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  paths = tuple(os.path.join(data_dir, os.fspath(n)) for n in names)
  parts = [_read_cifar_bin(p) for p in paths]
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  return images, labels, paths


def _channel_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Exact per-channel mean and std of uint8 NHWC images from 256-bin histograms.

  A histogram avoids a float64 copy of the whole train set (1.2 GB for CIFAR-10).
  """
  values = np.arange(256, dtype=np.float64)
  mean, std = np.empty(3), np.empty(3)
  for c in range(images.shape[-1]):
    hist = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    mean[c] = p @ values
    std[c] = math.sqrt(max(p @ (values - mean[c]) ** 2, 0.0))
  return mean, np.where(std > 0, std, 1.0)  # a constant channel (tiny test files) stays finite


def cifar10(
  data_dir: str | os.PathLike,
  *,
  train_files: Sequence[str | os.PathLike] | None = None,
  test_files: Sequence[str | os.PathLike] | None = None,
) -> Dataset:
  """CIFAR-10 from the *binary* distribution (`cifar-10-binary.tar.gz`), read without pickle.

  Args:
    data_dir: the directory holding `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`
      (usually the extracted `cifar-10-batches-bin/`). Nothing is downloaded.
    train_files: file names (relative to `data_dir`) to use instead of the five train batches.
      Meant for tests and quick runs with small files; the default requires all five.
    test_files: file names to use instead of `test_batch.bin`.

  Returns:
    A classification `Dataset`: x (N, 32, 32, 3) float32, normalised per channel by the train
    set's mean and std; y (N,) int32; 50000 train / 10000 test with the default files.
    `meta` holds `mean`/`std` (in 0..255 pixel units, RGB order), `classes` and the file paths.

  Raises:
    FileNotFoundError: `data_dir` or any of the files is missing (all missing files are listed).
    ValueError: a file's size is not a positive multiple of 3073 bytes, or a label is > 9.
  """
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"CIFAR-10 directory {data_dir!r} does not exist.")
  train_names = tuple(CIFAR10_TRAIN_FILES if train_files is None else train_files)
  test_names = tuple(CIFAR10_TEST_FILES if test_files is None else test_files)
  if not train_names or not test_names:
    raise ValueError(
      f"cifar10 needs at least one train and one test file, got train_files={train_names!r} "
      f"and test_files={test_names!r}."
    )
  missing = [
    os.path.join(data_dir, os.fspath(n))
    for n in train_names + test_names
    if not os.path.isfile(os.path.join(data_dir, os.fspath(n)))
  ]
  if missing:
    hint = ""
    if os.path.isdir(os.path.join(data_dir, "cifar-10-batches-bin")):
      hint = f" (did you mean {os.path.join(data_dir, 'cifar-10-batches-bin')!r}?)"
    raise FileNotFoundError(
      f"CIFAR-10 directory {data_dir!r} lacks {len(missing)} file(s){hint}: {missing}. "
      "It needs the binary version's data_batch_1.bin … data_batch_5.bin and test_batch.bin."
    )
  train_images, y_train, train_paths = _read_cifar_files(data_dir, train_names)
  test_images, y_test, test_paths = _read_cifar_files(data_dir, test_names)
  mean, std = _channel_moments(train_images)

  def normalise(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32)  # in place from here: CIFAR-10 train is 600 MB in float32
    x -= mean.astype(np.float32)
    x /= std.astype(np.float32)
    return x

  return on_device(
    "cifar10",
    "classification",
    (normalise(train_images), y_train),
    (normalise(test_images), y_test),
    10,
    meta={
      "mean": mean,
      "std": std,
      "classes": CIFAR10_CLASSES,
      "train_files": train_paths,
      "test_files": test_paths,
    },
  )
