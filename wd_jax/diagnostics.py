"""What weight decay is doing, as pure functions of pytrees (cheap enough to log in training).

Every function works under `jax.jit`/`jax.pmap` and returns arrays; per-leaf results
are dicts keyed by parameter path (``"encoder/0/kernel"``, see `wd_jax.masks`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from wd_jax.masks import param_paths
from wd_jax.moments import first_moment_split

PyTree = Any


def _by_path(fn, tree: PyTree) -> dict[str, jax.Array]:
  return {p: fn(x) for p, x in zip(param_paths(tree), jax.tree.leaves(tree))}


def global_norm(tree: PyTree) -> jax.Array:
  """‖tree‖₂ over all leaves."""
  return optax.tree.norm(tree)


def leaf_norms(tree: PyTree) -> dict[str, jax.Array]:
  """‖leaf‖₂ for every leaf, keyed by path."""
  return _by_path(lambda x: jnp.sqrt(jnp.sum(jnp.square(x))), tree)


def _cos(a: jax.Array, b: jax.Array) -> jax.Array:
  na, nb = jnp.sqrt(jnp.sum(a * a)), jnp.sqrt(jnp.sum(b * b))
  denom = na * nb
  return jnp.clip(jnp.sum(a * b) / jnp.where(denom > 0, denom, 1.0), -1.0, 1.0)


def angular_update(old: PyTree, new: PyTree) -> dict[str, jax.Array]:
  """The angle (radians) each leaf turned in one step: arccos(⟨w, w'⟩ / (‖w‖‖w'‖)).

  For a scale-invariant weight this, not ‖Δw‖, is the size of the step
  (Kosson et al. 2023). Near 0 arccos loses precision; the angle is computed as
  2·atan2(‖ŵ − ŵ'‖, ‖ŵ + ŵ'‖) on the unit vectors, which is exact there.
  """

  def angle(a, b):
    ua = a / jnp.maximum(jnp.sqrt(jnp.sum(a * a)), 1e-30)
    ub = b / jnp.maximum(jnp.sqrt(jnp.sum(b * b)), 1e-30)
    return 2.0 * jnp.arctan2(jnp.sqrt(jnp.sum((ua - ub) ** 2)), jnp.sqrt(jnp.sum((ua + ub) ** 2)))

  paths = param_paths(old)
  return {p: angle(a, b) for p, a, b in zip(paths, jax.tree.leaves(old), jax.tree.leaves(new))}


def effective_learning_rate(
  learning_rate: jax.Array | float, params: PyTree
) -> dict[str, jax.Array]:
  """α / ‖w‖² per leaf: the learning rate a scale-invariant weight really sees under SGD.

  (van Laarhoven 2017; Zhang et al. 2019.) Only meaningful for scale-invariant leaves.
  """
  return _by_path(lambda x: learning_rate / jnp.maximum(jnp.sum(jnp.square(x)), 1e-30), params)


def zero_fraction(tree: PyTree) -> jax.Array:
  """Fraction of all elements that are exactly 0.0 (the sparsity that L1's prox gives)."""
  leaves = jax.tree.leaves(tree)
  zeros = sum(jnp.sum(x == 0) for x in leaves)
  return zeros / sum(x.size for x in leaves)


def l2_share_by_leaf(opt_state: Any) -> dict[str, jax.Array]:
  """‖m_l2‖ / (‖m_loss‖ + ‖m_l2‖) per leaf, for an optimizer built with ``track_moments=True``."""
  m_loss, m_l2 = first_moment_split(opt_state)
  out = {}
  for p, a, b in zip(param_paths(m_loss), jax.tree.leaves(m_loss), jax.tree.leaves(m_l2)):
    na, nb = jnp.sqrt(jnp.sum(a * a)), jnp.sqrt(jnp.sum(b * b))
    out[p] = jnp.where(na + nb > 0, nb / jnp.where(na + nb > 0, na + nb, 1.0), 0.0)
  return out


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
  """Expected angular update per step at rotational equilibrium (Kosson et al. 2023).

  ``adamw``: √(2αλ(1−β1)/(1+β1)); ``sgdw``/``sgd_l2`` (momentum μ): √(2αλ/(1+μ));
  ``lion``: √(π/2)·√(2αλ)·√((1−β1)² + β1²(1−β2)/(1+β2)). α is the learning rate
  multiplying λ (torch / ``coupling="lr"`` convention). ``adam_l2`` has no closed
  form (it depends on the gradient norm): NaN.
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
  """Equilibrium ‖w‖ of a C-element scale-invariant weight (Kosson et al. 2023; REFERENCES §4).

  ``adamw``: √(αC/(2λ)). ``sgd_l2``/``sgdw`` with momentum μ: (α‖g̃‖²/(2λ(1−μ)))^{1/4},
  g̃ the gradient at unit norm (``grad_norm_at_unit_norm``, i.e. ‖g‖·‖w‖ measured). NaN
  where the model gives no prediction (``adam_l2``, ``adams``) or λ = 0.
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


def step_diagnostics(
  old_params: PyTree,
  new_params: PyTree,
  grads: PyTree,
  opt_state: Any = None,
  *,
  per_leaf: bool = True,
) -> dict[str, jax.Array]:
  """The measurements a training step returns as a matter of course (flat ``name -> scalar``).

  ``param_norm``, ``grad_norm``, ``update_norm``, ``zero_fraction`` and, when the
  optimizer tracks its first moment, ``l2_share``; with `per_leaf`, also
  ``param_norm/<path>`` and ``angular_update/<path>`` for every leaf and
  ``l2_share/<path>`` when tracked.
  """
  update = jax.tree.map(jnp.subtract, new_params, old_params)
  out = {
    "param_norm": global_norm(new_params),
    "grad_norm": global_norm(grads),
    "update_norm": global_norm(update),
    "zero_fraction": zero_fraction(new_params),
  }
  tracked = False
  if opt_state is not None:
    try:
      m_loss, m_l2 = first_moment_split(opt_state)
      tracked = True
    except ValueError:
      pass
    if tracked:
      na, nb = optax.tree.norm(m_loss), optax.tree.norm(m_l2)
      out["l2_share"] = jnp.where(na + nb > 0, nb / jnp.where(na + nb > 0, na + nb, 1.0), 0.0)
  if per_leaf:
    out.update({f"param_norm/{k}": v for k, v in leaf_norms(new_params).items()})
    out.update(
      {f"angular_update/{k}": v for k, v in angular_update(old_params, new_params).items()}
    )
    if tracked:
      out.update({f"l2_share/{k}": v for k, v in l2_share_by_leaf(opt_state).items()})
  return out
