"""Rotational equilibrium in closed form: the angular update per step and the weight norm a
scale-invariant weight settles at under decoupled (or SGD's coupled) decay (REFERENCES §4).

Pure Python floats, for logging beside the measured values (`wd_jax.diagnostics` re-exports
them; the engine's records carry them as ``pred_angle/*`` and ``pred_norm/*``).
"""

from __future__ import annotations

import math


def _no_prediction(optimizer: str, predicted: tuple[str, ...]) -> float:
  """NaN for the optimizers the random-walk model has no closed form for; else a ValueError."""
  if optimizer in ("adam_l2", "adams"):
    return math.nan
  known = ", ".join((*predicted, "adam_l2", "adams"))
  raise ValueError(f"optimizer must be one of {known}; got {optimizer!r}.")


def predicted_angular_update(
  optimizer: str,
  learning_rate: float,
  weight_decay: float,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  momentum: float = 0.0,
) -> float:
  r"""Expected angular update per step at rotational equilibrium (Kosson et al. 2023).

  .. math::

    \eta_\text{adamw} = \sqrt{\frac{2\alpha\lambda(1-\beta_1)}{1+\beta_1}}, \quad
    \eta_\text{sgd} = \sqrt{\frac{2\alpha\lambda}{1+\mu}}, \quad
    \eta_\text{lion} = \sqrt{\frac{\pi}{2}} \sqrt{2\alpha\lambda}
      \sqrt{(1-\beta_1)^2 + \frac{\beta_1^2 (1-\beta_2)}{1+\beta_2}}

  ``sgdw``/``sgd_l2`` take the SGD form with momentum μ. α is the learning rate multiplying λ
  (torch / ``coupling="lr"`` convention). ``adam_l2`` and ``adams`` have no closed form
  (it depends on the gradient norm): NaN.

  Args:
    optimizer: ``"adamw"``, ``"sgdw"``, ``"sgd_l2"``, ``"sgd"``, ``"lion"``, or
      ``"adam_l2"`` / ``"adams"`` (NaN).
    learning_rate: α.
    weight_decay: λ.
    b1: β1 (Adam, Lion).
    b2: β2 (Lion).
    momentum: μ (SGD).

  Returns:
    The angle in radians per step (a float), or NaN.

  Raises:
    ValueError: an unknown optimizer.

  Example:
    >>> from wd_jax import diagnostics
    >>> print(f"{diagnostics.predicted_angular_update('adamw', 1e-3, 0.1):.5f}")
    0.00324
    >>> diagnostics.predicted_angular_update("adam_l2", 1e-3, 0.1)
    nan

  References:
    Kosson, Messmer & Jaggi, "Rotational equilibrium: how weight decay balances learning
    across neural networks", ICML 2024 (arXiv:2305.17212, 2023).
  """
  a = learning_rate * weight_decay
  if optimizer == "adamw":
    return math.sqrt(2 * a * (1 - b1) / (1 + b1))
  if optimizer in ("sgdw", "sgd_l2", "sgd"):
    return math.sqrt(2 * a / (1 + momentum))
  if optimizer == "lion":
    return (
      math.sqrt(math.pi / 2)
      * math.sqrt(2 * a)
      * math.sqrt((1 - b1) ** 2 + b1**2 * (1 - b2) / (1 + b2))
    )
  return _no_prediction(optimizer, ("adamw", "sgdw", "sgd_l2", "lion"))


def predicted_equilibrium_norm(
  optimizer: str,
  learning_rate: float,
  weight_decay: float,
  num_elements: int,
  *,
  grad_norm_at_unit_norm: float | None = None,
  momentum: float = 0.0,
) -> float:
  r"""Equilibrium ‖w‖ of a C-element scale-invariant weight (Kosson et al. 2023).

  .. math::

    \lVert w \rVert_\text{adamw} = \sqrt{\frac{\alpha C}{2\lambda}}, \qquad
    \lVert w \rVert_\text{sgd}
      = \Big(\frac{\alpha \lVert\tilde g\rVert^2}{2\lambda(1-\mu)}\Big)^{1/4}

  for ``adamw`` and for ``sgd_l2``/``sgdw`` with momentum μ, g̃ the gradient at unit norm
  (``grad_norm_at_unit_norm``, i.e. ‖g‖·‖w‖ measured). NaN where the model gives no
  prediction (``adam_l2``, ``adams``) or λ = 0.

  Args:
    optimizer: ``"adamw"``, ``"sgdw"``, ``"sgd_l2"``, ``"sgd"``, or ``"adam_l2"`` /
      ``"adams"`` (NaN).
    learning_rate: α.
    weight_decay: λ.
    num_elements: C, the weight's number of elements.
    grad_norm_at_unit_norm: ‖g̃‖, required for SGD.
    momentum: μ (SGD).

  Returns:
    The predicted norm (a float), or NaN.

  Raises:
    ValueError: an unknown optimizer, or SGD without `grad_norm_at_unit_norm`.

  Example:
    >>> from wd_jax import diagnostics
    >>> print(f"{diagnostics.predicted_equilibrium_norm('adamw', 1e-3, 0.1, 4096):.3f}")
    4.525

  References:
    Kosson, Messmer & Jaggi, "Rotational equilibrium: how weight decay balances learning
    across neural networks", ICML 2024 (arXiv:2305.17212, 2023).
  """
  if weight_decay <= 0:
    return math.nan
  if optimizer == "adamw":
    return math.sqrt(learning_rate * num_elements / (2 * weight_decay))
  if optimizer in ("sgdw", "sgd_l2", "sgd"):
    if grad_norm_at_unit_norm is None:
      raise ValueError("grad_norm_at_unit_norm is required for SGD's equilibrium norm, got None.")
    return (learning_rate * grad_norm_at_unit_norm**2 / (2 * weight_decay * (1 - momentum))) ** 0.25
  return _no_prediction(optimizer, ("adamw", "sgdw", "sgd_l2"))
