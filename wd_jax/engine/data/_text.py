"""A character-level corpus from local text files (default: Python's own sources)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from wd_jax import validation
from wd_jax.engine.data._dataset import (
  Dataset,
  check_fraction,
  on_device,
)

# ----------------------------------------------------------------------------------------------
# Character-level corpus.


def _code_points(text: str) -> np.ndarray:
  # "surrogatepass": a lone surrogate is still one character with one code point.
  return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def encode(text: str, vocab: str) -> np.ndarray:
  """Maps each character of `text` to its index in `vocab`.

  Args:
    text: the string to encode.
    vocab: the vocabulary, one character per id (e.g. `dataset.meta["vocab"]`).

  Returns:
    int32 numpy array of shape (len(text),).

  Raises:
    ValueError: `text` has characters that are not in `vocab`.
  """
  if not vocab:
    raise ValueError("encode needs a non-empty vocab.")
  vocab_codes = _code_points(vocab)
  order = np.argsort(vocab_codes, kind="stable")
  sorted_codes = vocab_codes[order]
  codes = _code_points(text)
  pos = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
  unknown = sorted_codes[pos] != codes
  if unknown.any():
    chars = sorted({chr(c) for c in codes[unknown]})
    raise ValueError(
      f"encode: {int(unknown.sum())} characters of the text are not in the vocab "
      f"(size {len(vocab)}): {''.join(chars[:20])!r}{' …' if len(chars) > 20 else ''}"
    )
  return order[pos].astype(np.int32)


def decode(ids: Any, vocab: str) -> str:
  """Maps token ids back to text, the inverse of `encode`.

  Args:
    ids: a 1-D sequence or array (numpy or jax) of integer ids, or one id.
    vocab: the vocabulary used to encode them.

  Returns:
    The decoded string.

  Raises:
    ValueError: `ids` is not 0-D/1-D or has an id outside [0, len(vocab)).
  """
  ids = np.asarray(ids)
  if ids.ndim > 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
    raise ValueError(f"decode needs a 1-D array of integer ids, got {ids.dtype} {ids.shape}.")
  ids = ids.reshape(-1).astype(np.int64)
  if ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
    raise ValueError(
      f"decode: ids must be in [0, {len(vocab)}), got min {ids.min()} and max {ids.max()}."
    )
  return _code_points(vocab)[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _default_corpus_paths() -> list[str]:
  return sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))


def char_corpus(
  paths: Sequence[str | os.PathLike] | None = None,
  seq_len: int = 128,
  test_fraction: float = 0.1,
  max_chars: int | None = 2_000_000,
) -> Dataset:
  """A character-level language-modelling corpus from local text files.

  The files are read as UTF-8 (undecodable bytes become U+FFFD, newlines are normalised to
  "\\n"), concatenated in the given order and truncated to `max_chars`. The vocabulary is the
  sorted set of characters of the whole corpus (so every test character has an id). The last
  `test_fraction` of the stream is the test split.

  Args:
    paths: text files to read. Default: the Python standard library's own sources,
      `sorted(glob(dirname(os.__file__) + "/*.py"))` — present wherever Python is, deterministic
      for a given Python installation (but it differs between Python versions).
    seq_len: context length of one sample.
    test_fraction: share of the stream (its end) held out for testing, in (0, 1).
    max_chars: keep at most this many characters (None: everything).

  Returns:
    A language-model `Dataset`: x_train is the int32 token stream of the train split and
    y_train the same array; `num_classes` is the vocabulary size. `meta` holds `vocab` (a
    string: id i is `vocab[i]`), `paths` (the files actually read) and `num_chars`.

  Raises:
    FileNotFoundError: a path does not exist.
    ValueError: the corpus is empty, or a split has fewer than seq_len + 1 characters.
  """
  validation.check_int("seq_len", seq_len, lower=1)
  check_fraction("test_fraction", test_fraction)
  if max_chars is not None:
    validation.check_int("max_chars", max_chars, lower=1)
  if paths is None:
    paths = _default_corpus_paths()
  elif isinstance(paths, (str, os.PathLike)):
    paths = [paths]  # one path, not a sequence of one-character paths
  paths = [os.fspath(p) for p in paths]
  for p in paths:
    if not os.path.isfile(p):
      raise FileNotFoundError(f"char_corpus: text file {p!r} does not exist.")

  chunks: list[str] = []
  used: list[str] = []
  total = 0
  for p in paths:
    if max_chars is not None and total >= max_chars:
      break
    with open(p, encoding="utf-8", errors="replace") as f:
      chunk = f.read()
    chunks.append(chunk)
    used.append(p)
    total += len(chunk)
  text = "".join(chunks)
  if max_chars is not None:
    text = text[:max_chars]
  if not text:
    raise ValueError(f"char_corpus: the corpus is empty (files: {paths}).")

  vocab = "".join(sorted(set(text)))
  tokens = encode(text, vocab)
  n = len(tokens)
  n_test = int(n * test_fraction)
  n_train = n - n_test
  for split, count in (("train", n_train), ("test", n_test)):
    if count < seq_len + 1:
      raise ValueError(
        f"char_corpus: the {split} split has {count} characters, fewer than seq_len + 1 = "
        f"{seq_len + 1} (corpus of {n} characters, test_fraction={test_fraction})."
      )
  meta = {"vocab": vocab, "paths": tuple(used), "num_chars": n}
  splits = (tokens[:n_train],), (tokens[n_train:],)
  return on_device("char_corpus", "language_model", *splits, len(vocab), seq_len=seq_len, meta=meta)
