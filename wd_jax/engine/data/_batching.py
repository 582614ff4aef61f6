"""Random training batches gathered on the device, and fixed-shape evaluation batches."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wd_jax import validation
from wd_jax.engine.data._dataset import (
  Dataset,
)

# ----------------------------------------------------------------------------------------------
# Batching on the device.


def _windows(
  x_stream: jax.Array, y_stream: jax.Array, offsets: jax.Array, seq_len: int
) -> tuple[jax.Array, jax.Array]:
  """(B, seq_len) inputs stream[o : o+seq_len] and targets stream[o+1 : o+seq_len+1]."""
  take_x = lambda o: jax.lax.dynamic_slice(x_stream, (o,), (seq_len,))
  take_y = lambda o: jax.lax.dynamic_slice(y_stream, (o + 1,), (seq_len,))
  return jax.vmap(take_x)(offsets), jax.vmap(take_y)(offsets)


def sample_batch(
  x: jax.Array,
  y: jax.Array,
  key: jax.Array,
  batch_size: int,
  *,
  seq_len: int = 0,
) -> tuple[jax.Array, jax.Array]:
  """A random batch gathered on the device; pure and jit-able (`batch_size`, `seq_len` static).

  Classification/regression (`seq_len=0`): `batch_size` indices drawn uniformly *with
  replacement* from [0, N), then x[idx], y[idx].
  Language model (`seq_len>0`): `x` and `y` are token streams (usually the same array); offsets
  o are uniform in [0, len - seq_len - 1] and the batch is x[o : o+seq_len], y[o+1 : o+seq_len+1].

  Args:
    x: the split's inputs (N, ...) or token stream (L,).
    y: the split's targets (N, ...) or token stream (L,).
    key: a PRNG key (typed `jax.random.key` or raw `PRNGKey`).
    batch_size: number of examples, a Python int > 0.
    seq_len: 0 for examples; the context length for a language model.

  Returns:
    (x_batch, y_batch): (batch_size, ...) each; (batch_size, seq_len) int32 for a language model.
  """
  validation.check_int("batch_size", batch_size, lower=1)
  validation.check_int("seq_len", seq_len, lower=0)
  if seq_len == 0:
    idx = jax.random.randint(key, (batch_size,), 0, x.shape[0], dtype=jnp.int32)
    return x[idx], y[idx]
  num_starts = x.shape[0] - seq_len
  if num_starts < 1 or y.shape[0] < x.shape[0]:
    raise ValueError(
      f"sample_batch: a stream of {x.shape[0]} tokens (targets {y.shape[0]}) is too short for "
      f"seq_len={seq_len}: it needs at least seq_len + 1 tokens."
    )
  offsets = jax.random.randint(key, (batch_size,), 0, num_starts, dtype=jnp.int32)
  return _windows(x, y, offsets, seq_len)


@functools.partial(
  jax.tree_util.register_dataclass, data_fields=["x", "y"], meta_fields=["batch_size", "seq_len"]
)
@dataclasses.dataclass(frozen=True, eq=False)
class BatchSampler:
  """`key -> (x, y)`: a random batch of one split, gathered on the device (see `sample_batch`).

  A pytree whose leaves are the split's arrays (batch_size and seq_len are static). Pass it to a
  jitted function as an *argument*: a jitted function that closes over it instead bakes the
  whole split into the compiled program as a constant (fine for MNIST-1D; for CIFAR-10 it means
  ~1 GB of HLO and seconds of compilation).
  """

  x: jax.Array
  y: jax.Array
  batch_size: int
  seq_len: int = 0

  def __call__(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    return sample_batch(self.x, self.y, key, self.batch_size, seq_len=self.seq_len)


def make_batch_fn(dataset: Dataset, batch_size: int, split: str = "train") -> BatchSampler:
  """A jit-able `key -> (x, y)` random-batch function over one split of `dataset`.

  Args:
    dataset: the dataset.
    batch_size: examples (or windows of `dataset.seq_len` tokens) per batch, > 0.
    split: "train", "val" or "test".

  Returns:
    A `BatchSampler` (callable `key -> (x, y)`, and a pytree: pass it into `jax.jit` as an
    argument rather than closing over it, so the data is not compiled in as a constant).

  Raises:
    ValueError: `batch_size` is not a positive int, or `split` is unknown.
  """
  validation.check_int("batch_size", batch_size, lower=1)
  x, y = dataset.split(split)
  return BatchSampler(x=x, y=y, batch_size=int(batch_size), seq_len=int(dataset.seq_len))


_jit_windows = jax.jit(_windows, static_argnames="seq_len")


def eval_batches(
  dataset: Dataset,
  batch_size: int,
  split: str = "test",
  *,
  max_lm_batches: int | None = 64,
) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
  """One deterministic pass over a split in fixed-shape batches, for a jitted eval step.

  Classification/regression: examples 0..N-1 in order, `batch_size` at a time; the last batch is
  padded by repeating example 0 with weight 0, so every batch has the same shape and
  Σ weight = N. Language model: the non-overlapping windows x = s[k·T : (k+1)·T],
  y = s[k·T+1 : (k+1)·T+1] (T = seq_len) of the split's stream, at most `max_lm_batches`
  batches (a full pass over a long stream is rarely needed to rank runs); a partial last batch
  is padded with window 0 at weight 0 as above.

  Args:
    dataset: the dataset.
    batch_size: examples (windows) per batch, > 0.
    split: "test", "val" or "train".
    max_lm_batches: language model only: cap on the number of batches (None: no cap).

  Returns:
    An iterator of (x, y, weight): device arrays with a leading dim of `batch_size`; weight is
    float32 (batch_size,), 1 for a real example (window) and 0 for padding. A weighted mean is
    then `sum(weight * per_example) / sum(weight)` accumulated over batches.

  Raises:
    ValueError: bad `batch_size`, `split` or `max_lm_batches` (raised at the call, not lazily).
  """
  validation.check_int("batch_size", batch_size, lower=1)
  if max_lm_batches is not None:
    validation.check_int("max_lm_batches", max_lm_batches, lower=1)
  x, y = dataset.split(split)
  lm = dataset.task == "language_model"
  if lm:
    num = (int(x.shape[0]) - 1) // dataset.seq_len
    if max_lm_batches is not None:
      num = min(num, max_lm_batches * batch_size)
  else:
    num = int(x.shape[0])
  return _eval_batches(x, y, num, batch_size, dataset.seq_len if lm else 0)


def _eval_batches(
  x: jax.Array, y: jax.Array, num: int, batch_size: int, seq_len: int
) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
  for start in range(0, num, batch_size):
    real = min(batch_size, num - start)
    idx = np.arange(start, start + batch_size, dtype=np.int32)
    idx[real:] = 0
    weight = jnp.asarray((np.arange(batch_size) < real).astype(np.float32))
    if seq_len:
      xb, yb = _jit_windows(x, y, jnp.asarray(idx * seq_len), seq_len=seq_len)
    else:
      idx_dev = jnp.asarray(idx)
      xb, yb = x[idx_dev], y[idx_dev]
    yield xb, yb, weight


class SamplerSource:
  """Batches drawn on the device by the step from ``fold_in(key, step)``: the step's argument
  is the same `BatchSampler` every step, so no host work sits between steps."""

  def __init__(self, sampler: BatchSampler):
    self.sampler = sampler

  def __call__(self, step: int) -> BatchSampler:
    del step
    return self.sampler


class StreamSource:
  """Batches from a user iterator, one ``(x, y)`` per step, placed by `place`.

  `batches` is a callable ``start_step -> iterable of (x, y)`` (so a resumed run continues with
  the batch an uninterrupted one would see) or a plain iterable (resuming then skips the first
  `start` batches).
  """

  def __init__(self, batches: Any, start: int, place: Callable[[Any], Any]):
    if callable(batches):
      self._it = iter(batches(start))
    else:
      self._it = iter(batches)
      for _ in range(start):
        next(self._it)
    self._place = place

  def __call__(self, step: int) -> Any:
    try:
      x, y = next(self._it)
    except StopIteration as e:
      raise ValueError(f"the batch iterator ran out at step {step + 1}.") from e
    as_array = lambda a: a if isinstance(a, jax.Array) else jnp.asarray(a)
    return self._place((as_array(x), as_array(y)))
