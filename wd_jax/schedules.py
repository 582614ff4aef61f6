"""Weight-decay schedules: λ as a function of the step count.

Each returns an optax-style schedule (``count -> λ_t``) usable as the
``weight_decay`` of any wd_jax transform. What multiplies λ_t is still decided by
the transform (e.g. `decoupled_weight_decay`'s ``coupling``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax

from wd_jax import validation


def switch_weight_decay(before: float, after: float, step: int) -> optax.Schedule:
  r"""λ as a step function of the step count: `before` until `step`, `after` from it on.

  .. math::

    \lambda_t = \begin{cases} \lambda_\text{before} & t < \text{step} \\
      \lambda_\text{after} & t \ge \text{step} \end{cases}

  What multiplies λ_t is still the transform's (e.g. its ``coupling``).

  Args:
    before: λ ≥ 0 for the steps t < `step`.
    after: λ ≥ 0 from step `step` on.
    step: the first step (0-based count) of `after`.

  Returns:
    An optax schedule ``count -> λ_t`` for any ``weight_decay`` argument.

  Raises:
    ValueError: a negative λ or a step that is not a non-negative int.

  Example:
    >>> lam = wd_jax.switch_weight_decay(0.1, 0.01, step=100)
    >>> print([round(float(lam(t)), 6) for t in (0, 99, 100)])
    [0.1, 0.1, 0.01]

  References:
    Golatkar, Achille & Soatto, "Time matters in regularizing deep networks: weight decay
    and data augmentation affect early learning dynamics, matter little near convergence",
    NeurIPS 2019.
  """
  validation.check_weight_decay(before, "before")
  validation.check_weight_decay(after, "after")
  validation.check_int("step", step, lower=0)
  return lambda count: jnp.where(count < step, before, after)


def early_weight_decay(weight_decay: float, until_step: int) -> optax.Schedule:
  r"""λ on for the first `until_step` steps, then off (Golatkar et al. 2019; Bjorck et al. 2021).

  .. math::

    \lambda_t = \lambda \cdot \mathbb{1}[t < \text{until\_step}]

  Args:
    weight_decay: λ ≥ 0 during the first steps.
    until_step: the first step without decay.

  Returns:
    An optax schedule ``count -> λ_t``.

  Raises:
    ValueError: a negative λ or a step that is not a non-negative int.

  Example:
    >>> lam = wd_jax.early_weight_decay(0.1, until_step=100)
    >>> print([round(float(lam(t)), 6) for t in (0, 99, 100)])
    [0.1, 0.1, 0.0]
    >>> opt = wd_jax.sgd_l2(0.1, lam, momentum=0.9)

  References:
    Golatkar, Achille & Soatto, "Time matters in regularizing deep networks", NeurIPS 2019.
    Bjorck, Weinberger & Gomes, "Understanding decoupled and early weight decay", AAAI 2021.
  """
  validation.check_weight_decay(weight_decay)
  validation.check_int("until_step", until_step, lower=0)
  return switch_weight_decay(weight_decay, 0.0, until_step)


def late_weight_decay(weight_decay: float, from_step: int) -> optax.Schedule:
  r"""λ off for the first `from_step` steps, then on (the control of Golatkar et al. 2019).

  .. math::

    \lambda_t = \lambda \cdot \mathbb{1}[t \ge \text{from\_step}]

  Args:
    weight_decay: λ ≥ 0 from `from_step` on.
    from_step: the first step with decay.

  Returns:
    The complement of `early_weight_decay` at the same step, an optax schedule.

  Raises:
    ValueError: as `early_weight_decay`.

  Example:
    >>> lam = wd_jax.late_weight_decay(0.1, from_step=100)
    >>> early = wd_jax.early_weight_decay(0.1, until_step=100)
    >>> print([round(float(lam(t) + early(t)), 6) for t in (0, 99, 100)])  # early's complement
    [0.1, 0.1, 0.1]

  References:
    Golatkar, Achille & Soatto, "Time matters in regularizing deep networks", NeurIPS 2019.
  """
  validation.check_weight_decay(weight_decay)
  validation.check_int("from_step", from_step, lower=0)
  return switch_weight_decay(0.0, weight_decay, from_step)


def normalized_weight_decay(
  lambda_norm: float, batch_size: int, train_size: int, epochs: float
) -> float:
  r"""Loshchilov & Hutter (2019) normalized decay: λ from λ_norm, the batch and the run length.

  .. math::

    \lambda = \lambda_\text{norm} \sqrt{\frac{b}{B\,T}}

  The paper pairs it with the schedule coupling (λ multiplied by α_t/α_peak).

  Args:
    lambda_norm: the normalized value; the paper's best is 0.025–0.05 for SGDW and AdamW.
    batch_size: b, examples per step.
    train_size: B, examples in the training set.
    epochs: T, the number of epochs of the run.

  Returns:
    λ to pass as ``weight_decay`` (with ``coupling="schedule"``, as in the paper).

  Raises:
    ValueError: a negative λ_norm, or a batch size, training-set size or epoch count ≤ 0.

  Example:
    >>> lam = wd_jax.normalized_weight_decay(0.05, batch_size=128, train_size=50_000, epochs=100)
    >>> print(f"{lam:.3g}")
    0.000253
    >>> opt = wd_jax.adamw(1e-3, weight_decay=lam, coupling="schedule")

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019 (the appendix
    on normalized weight decay).
  """
  validation.check_weight_decay(lambda_norm, "lambda_norm")
  for name, v in (("batch_size", batch_size), ("train_size", train_size), ("epochs", epochs)):
    validation.check_number(name, v, lower=0.0, lower_inclusive=False, allow_schedule=False)
  return float(lambda_norm) * math.sqrt(batch_size / (train_size * epochs))
