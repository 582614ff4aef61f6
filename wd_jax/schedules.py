"""Weight-decay schedules: λ as a function of the step count.

Each returns an optax-style schedule (``count -> λ_t``) usable as the
``weight_decay`` of any wd_jax transform. What multiplies λ_t is still decided by
the transform (e.g. `decoupled_weight_decay`'s ``coupling``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax

from wd_jax import _validation


def _check_step(name: str, value: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ValueError(f"{name} must be a non-negative int step, got {value!r}.")


def switch_weight_decay(before: float, after: float, step: int) -> optax.Schedule:
  """λ_t = `before` for t < `step`, `after` from `step` on."""
  _validation.check_weight_decay(before, "before")
  _validation.check_weight_decay(after, "after")
  _check_step("step", step)
  return lambda count: jnp.where(count < step, before, after)


def early_weight_decay(weight_decay: float, until_step: int) -> optax.Schedule:
  """On for the first `until_step` steps, then off (Golatkar et al. 2019; Bjorck et al. 2021)."""
  _validation.check_weight_decay(weight_decay)
  _check_step("until_step", until_step)
  return switch_weight_decay(weight_decay, 0.0, until_step)


def late_weight_decay(weight_decay: float, from_step: int) -> optax.Schedule:
  """Off for the first `from_step` steps, then on."""
  _validation.check_weight_decay(weight_decay)
  _check_step("from_step", from_step)
  return switch_weight_decay(0.0, weight_decay, from_step)


def normalized_weight_decay(
  lambda_norm: float, batch_size: int, train_size: int, epochs: float
) -> float:
  """Loshchilov & Hutter (2019) normalized decay: λ = λ_norm · √(b / (B·T)).

  Args:
    lambda_norm: the normalized value; the paper's best is 0.025–0.05 for SGDW and AdamW.
    batch_size: b, examples per step.
    train_size: B, examples in the training set.
    epochs: T, the number of epochs of the run.

  Returns:
    λ to pass as ``weight_decay`` (with ``coupling="schedule"``, as in the paper).
  """
  _validation.check_weight_decay(lambda_norm, "lambda_norm")
  for name, v in (("batch_size", batch_size), ("train_size", train_size), ("epochs", epochs)):
    _validation.check_number(name, v, lower=0.0, lower_inclusive=False, allow_schedule=False)
  return float(lambda_norm) * math.sqrt(batch_size / (train_size * epochs))
