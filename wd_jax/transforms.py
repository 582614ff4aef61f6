"""Weight decay as pure optax transforms: coupled (before the moments) and decoupled (after).

Symbols used in every docstring: θ params, g incoming update (a gradient for the
coupled transforms, an already-scaled step for the decoupled ones), λ_t the weight
decay at step t (a float or a schedule), m the per-leaf mask multiplier, α_t the
learning rate at step t, α_peak its peak.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from wd_jax import _validation
from wd_jax.masks import Mask, leaf_multipliers, map_decay

COUPLINGS = ("lr", "schedule", "constant", "corrected")


class AddL2State(NamedTuple):
  """State of `add_l2`; its type marks a chain as coupled L2."""

  count: chex.Array  # shape=(), dtype=jnp.int32.


class AddL1State(NamedTuple):
  """State of `add_l1`."""

  count: chex.Array  # shape=(), dtype=jnp.int32.


class DecoupledWeightDecayState(NamedTuple):
  """State of `decoupled_weight_decay`."""

  count: chex.Array  # shape=(), dtype=jnp.int32.


class ProxL1State(NamedTuple):
  """State of `prox_l1`."""

  count: chex.Array  # shape=(), dtype=jnp.int32.


def _require_params(params: Any, name: str) -> None:
  if params is None:
    raise ValueError(f"{name} needs the current params: call update(updates, state, params).")


def _count_state(cls, mask: Mask):
  """An `init_fn` giving ``cls(count=0)`` that checks `mask` against the params first."""

  def init_fn(params):
    leaf_multipliers(params, mask)  # a mismatched mask fails here, not mid-training
    return cls(count=jnp.zeros([], jnp.int32))

  return init_fn


def add_l2(
  weight_decay: float | optax.Schedule, *, mask: Mask = None
) -> optax.GradientTransformation:
  """Coupled L2: adds the gradient of ½λ‖θ‖² to the incoming gradient.

  ``g ← g + λ_t · m · θ``. Chain it *before* a moment estimator (this is torch's
  ``Adam(weight_decay=λ)`` and ``SGD(weight_decay=λ)``). λ is multiplied by nothing
  here; the learning rate multiplies the whole step later, and under Adam the λθ
  term is also rescaled by 1/√v̂ and mixed into the first moment (REFERENCES §2).

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).

  Returns:
    An `optax.GradientTransformation` whose state is an `AddL2State`.
  """
  _validation.check_weight_decay(weight_decay)

  def update_fn(updates, state, params=None):
    _require_params(params, "add_l2")
    lam = _validation.evaluate(weight_decay, state.count)
    mults = leaf_multipliers(params, mask)
    updates = map_decay(lambda k, g, p: g + (k * lam) * p, mults, updates, params)
    return updates, AddL2State(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(_count_state(AddL2State, mask), update_fn)


def add_l1(
  weight_decay: float | optax.Schedule, *, mask: Mask = None
) -> optax.GradientTransformation:
  """Coupled L1 by subgradient: ``g ← g + λ_t · m · sign(θ)``.

  Like `add_l2`, chain it before the moment estimator. A subgradient step makes
  weights oscillate around zero but never lands exactly on it; use `prox_l1` for
  exact zeros.
  """
  _validation.check_weight_decay(weight_decay)

  def update_fn(updates, state, params=None):
    _require_params(params, "add_l1")
    lam = _validation.evaluate(weight_decay, state.count)
    mults = leaf_multipliers(params, mask)
    updates = map_decay(lambda k, g, p: g + (k * lam) * jnp.sign(p), mults, updates, params)
    return updates, AddL1State(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(_count_state(AddL1State, mask), update_fn)


def _check_lr_args(coupling, learning_rate, peak_learning_rate, needs_lr: bool) -> None:
  if learning_rate is None:
    if needs_lr:
      raise ValueError(f"learning_rate is required for coupling={coupling!r}, got None.")
  else:
    _validation.check_learning_rate(learning_rate)
  if peak_learning_rate is not None:
    _validation.check_number(
      "peak_learning_rate",
      peak_learning_rate,
      lower=0.0,
      lower_inclusive=False,
      allow_schedule=False,
    )
  elif coupling in ("schedule", "corrected") and _validation.is_schedule(learning_rate):
    raise ValueError(
      f"peak_learning_rate is required when learning_rate is a schedule and "
      f"coupling={coupling!r} (η_t = α_t/α_peak), got None."
    )


def decay_factor(
  coupling: str,
  learning_rate: Any,
  peak_learning_rate: Any,
  count: chex.Array,
  dtype: Any = None,
) -> Any:
  """The factor c_t multiplying λ in θ ← θ − c_t λ θ (REFERENCES §1).

  ``"lr"``: α_t. ``"schedule"``: α_t/α_peak. ``"constant"``: 1. ``"corrected"``: α_t²/α_peak.
  With `dtype`, α_t is cast to it first: optax schedules return float32 at an int32 count
  even under x64, and c_t·λ must not be rounded to float32 before it meets float64 params.
  """
  if coupling == "constant":
    return 1.0
  lr = _validation.evaluate(learning_rate, count)
  if dtype is not None:
    lr = jnp.asarray(lr, dtype)
  if coupling == "lr":
    return lr
  peak = learning_rate if peak_learning_rate is None else peak_learning_rate
  if coupling == "schedule":
    return lr / peak
  return lr * lr / peak  # "corrected" (AdamC)


def decoupled_weight_decay(
  weight_decay: float | optax.Schedule,
  *,
  coupling: str = "lr",
  learning_rate: float | optax.Schedule | None = None,
  peak_learning_rate: float | None = None,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Decoupled weight decay, chained *after* the learning-rate scaling.

  Adds the whole decay step to the (already lr-scaled, negative-direction) update:
  ``u ← u − c_t · λ_t · m · θ``, so that `optax.apply_updates` gives
  θ ← θ − c_t λ_t m θ + u. The factor c_t multiplying λ is set by `coupling`:

  ======================  ==================  =========================================
  coupling                c_t                 matches
  ======================  ==================  =========================================
  ``"lr"``                α_t                 torch ``AdamW``, ``optax.adamw``
  ``"schedule"``          α_t / α_peak        Loshchilov & Hutter 2019, Composer, big_vision
  ``"constant"``          1                   optax adafactor, init2winit (no lr)
  ``"corrected"``         α_t² / α_peak       AdamC (Defazio et al. 2025), timm ``adamc``
  ======================  ==================  =========================================

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    coupling: one of ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    learning_rate: α (float or schedule); required unless ``coupling="constant"``.
    peak_learning_rate: α_peak for ``"schedule"``/``"corrected"``; required when
      `learning_rate` is a schedule, defaults to `learning_rate` when it is a float.
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).

  Returns:
    An `optax.GradientTransformation` whose state is a `DecoupledWeightDecayState`.
  """
  _validation.check_weight_decay(weight_decay)
  _validation.check_choice("coupling", coupling, COUPLINGS)
  _check_lr_args(coupling, learning_rate, peak_learning_rate, needs_lr=coupling != "constant")

  def update_fn(updates, state, params=None):
    _require_params(params, "decoupled_weight_decay")
    lam = _validation.evaluate(weight_decay, state.count)
    mults = leaf_multipliers(params, mask)

    def decay(k, u, p):
      c = decay_factor(coupling, learning_rate, peak_learning_rate, state.count, p.dtype)
      return u - (c * (k * jnp.asarray(lam, p.dtype))) * p

    updates = map_decay(decay, mults, updates, params)
    return updates, DecoupledWeightDecayState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(_count_state(DecoupledWeightDecayState, mask), update_fn)


def prox_l1(
  weight_decay: float | optax.Schedule,
  *,
  learning_rate: float | optax.Schedule,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Proximal (decoupled) L1, chained *last*: soft-thresholds θ + u by α_t·λ_t·m.

  θ_new = sign(θ + u) · max(|θ + u| − α_t λ_t m, 0); the returned update is θ_new − θ,
  so ``optax.apply_updates`` lands exactly on zero for every thresholded weight
  (x + (−x) is exactly 0 in IEEE arithmetic). λ is multiplied by α_t, as in the
  proximal-gradient method (ISTA).

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    learning_rate: α (float or schedule), the step size of the proximal map.
    mask: which leaves to threshold, and by how much.
  """
  _validation.check_weight_decay(weight_decay)
  _validation.check_learning_rate(learning_rate)

  def update_fn(updates, state, params=None):
    _require_params(params, "prox_l1")
    lr = _validation.evaluate(learning_rate, state.count)
    lam = _validation.evaluate(weight_decay, state.count)
    mults = leaf_multipliers(params, mask)

    def prox(k, u, p):
      # α_t in the params' dtype: a float32 schedule value must not round α_t·λ (see decay_factor).
      tau = jnp.asarray(lr, p.dtype) * jnp.asarray(lam, p.dtype)
      z = p + u
      return jnp.sign(z) * jnp.maximum(jnp.abs(z) - k * tau, 0.0) - p

    updates = map_decay(prox, mults, updates, params)
    return updates, ProxL1State(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(_count_state(ProxL1State, mask), update_fn)


def find_states(opt_state: Any, cls: type) -> list[Any]:
  """Every sub-state of type `cls` inside a (possibly chained, masked, injected) optax state."""
  found = []
  for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, cls)):
    if isinstance(leaf, cls):
      found.append(leaf)
  return found
