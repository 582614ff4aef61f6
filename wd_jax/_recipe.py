"""What the optimizer recipes share: Adam's direction and its checks, and the decay wrapper."""

from __future__ import annotations

import optax

from wd_jax import validation
from wd_jax.decoupled import with_weight_decay

ScalarOrSchedule = float | optax.Schedule


def check_adam(b1, b2, eps, eps_root=0.0, nesterov=False, amsgrad=False) -> None:
  """Adam's constants, as optax's ``scale_by_adam`` / ``scale_by_amsgrad`` take them."""
  validation.check_beta("b1", b1)
  validation.check_beta("b2", b2)
  validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  validation.check_number("eps_root", eps_root, lower=0.0, allow_schedule=False)
  if nesterov and amsgrad:
    raise ValueError("nesterov=True and amsgrad=True cannot be combined (as in optax), got both.")


def adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad):
  """m̂/(√(v̂ + ε_root) + ε): optax's ``scale_by_adam``, or ``scale_by_amsgrad``."""
  if amsgrad:
    return optax.scale_by_amsgrad(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype)
  return optax.scale_by_adam(
    b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
  )


def decayed(base, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, ref):
  """`with_weight_decay` around a recipe's base optimizer, with the recipe's decay options."""
  return with_weight_decay(
    base,
    weight_decay,
    learning_rate=learning_rate,
    coupling=coupling,
    peak_learning_rate=peak_learning_rate,
    mask=mask,
    cautious=cautious,
    reference=ref,
  )
