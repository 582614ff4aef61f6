"""Adam with coupled L2 split into its parts, and stable weight decay (SWD).

Adam's first moment is a linear EMA started at zero, so under coupled L2 it splits
exactly into an EMA of the loss gradient and an EMA of the L2 gradient:
m = m_loss + m_l2 (Bjorck et al. 2021; REFERENCES §2). Tracking the two parts costs
one extra buffer the size of the parameters (m_loss and m_l2 replace m).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from wd_jax import _validation
from wd_jax.masks import Mask, leaf_multipliers
from wd_jax.transforms import AddL1State, AddL2State, find_states


class AdamL2State(NamedTuple):
  """Adam moments with the L2 gradient mixed in (no split kept)."""

  count: chex.Array  # shape=(), dtype=jnp.int32.
  mu: optax.Updates  # First moment (with λθ when l2_in_first_moment).
  nu: optax.Updates  # Second moment (with λθ when l2_in_second_moment).


class TrackedAdamL2State(NamedTuple):
  """Adam moments with the first moment kept as its two exact parts."""

  count: chex.Array  # shape=(), dtype=jnp.int32.
  mu_loss: optax.Updates  # EMA of the loss gradient g.
  mu_l2: optax.Updates  # EMA of the L2 gradient λθ (zeros when not in m).
  nu: optax.Updates  # Second moment.


def _ema(decay: float, moment: chex.Array, x: chex.Array) -> chex.Array:
  return (1 - decay) * x + decay * moment  # same operation order as optax.tree.update_moment


def _debias(x: chex.Array, decay: float, count: chex.Array) -> chex.Array:
  return x / (1 - decay**count).astype(x.dtype)


def scale_by_adam_l2(
  weight_decay: float | optax.Schedule,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  l2_in_first_moment: bool = True,
  l2_in_second_moment: bool = True,
  track_moments: bool = False,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Adam scaling with a coupled L2 gradient r = λ_t·m·θ routed into m and/or v.

  With t the 1-based step, g the loss gradient::

    m_t = β1 m_{t-1} + (1−β1) (g + r·[in m])       v_t = β2 v_{t-1} + (1−β2) (g + r·[in v])²
    u_t = (m_t/(1−β1^t) + r·[not in m]) / (√(v_t/(1−β2^t)) + ε)

  Both flags True is torch ``Adam(weight_decay=λ)`` before the lr; the four flag
  settings are the 2×2 ablation of REFERENCES §2. λ is multiplied by the mask
  multiplier only here; the learning rate and 1/√v̂ multiply it afterwards.

  Args:
    weight_decay: λ ≥ 0 or a schedule.
    b1, b2, eps: Adam's constants.
    l2_in_first_moment: feed r into m (else add it to the debiased m at this step only).
    l2_in_second_moment: feed r into v.
    track_moments: keep m as m_loss + m_l2 (`first_moment_split`, `l2_share`); one extra
      parameter-sized buffer.
    mask: which leaves get the L2 gradient, and by how much.
  """
  _validation.check_weight_decay(weight_decay)
  _validation.check_beta("b1", b1)
  _validation.check_beta("b2", b2)
  _validation.check_number("eps", eps, lower=0.0, allow_schedule=False)

  def init_fn(params):
    leaf_multipliers(params, mask)
    count = jnp.zeros([], jnp.int32)
    zeros = optax.tree.zeros_like(params)
    if track_moments:
      return TrackedAdamL2State(
        count, zeros, optax.tree.zeros_like(params), optax.tree.zeros_like(params)
      )
    return AdamL2State(count, zeros, optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "scale_by_adam_l2 needs the current params: call update(updates, state, params)."
      )
    lam = _validation.evaluate(weight_decay, state.count)
    count = optax.safe_increment(state.count)
    mults = leaf_multipliers(params, mask)
    grads, treedef = jax.tree.flatten(updates)
    ps = treedef.flatten_up_to(params)
    nus = treedef.flatten_up_to(state.nu)
    if track_moments:
      mls, m2s = treedef.flatten_up_to(state.mu_loss), treedef.flatten_up_to(state.mu_l2)
    else:
      mus = treedef.flatten_up_to(state.mu)
    out, new_mu, new_m2, new_nu = [], [], [], []
    for i, (g, p, k) in enumerate(zip(grads, ps, mults)):
      r = (k * lam) * p if k != 0.0 else None
      gv = g + r if (r is not None and l2_in_second_moment) else g
      nu = _ema(b2, nus[i], gv * gv)
      if track_moments:
        m_loss = _ema(b1, mls[i], g)
        m_l2 = _ema(b1, m2s[i], r) if (r is not None and l2_in_first_moment) else m2s[i]
        m = m_loss + m_l2
        new_mu.append(m_loss)
        new_m2.append(m_l2)
      else:
        m = _ema(b1, mus[i], g + r if (r is not None and l2_in_first_moment) else g)
        new_mu.append(m)
      m_hat = _debias(m, b1, count)
      if r is not None and not l2_in_first_moment:
        m_hat = m_hat + r
      out.append(m_hat / (jnp.sqrt(_debias(nu, b2, count)) + eps))
      new_nu.append(nu)
    unflat = treedef.unflatten
    if track_moments:
      new_state = TrackedAdamL2State(count, unflat(new_mu), unflat(new_m2), unflat(new_nu))
    else:
      new_state = AdamL2State(count, unflat(new_mu), unflat(new_nu))
    return unflat(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)


class StableWeightDecayState(NamedTuple):
  """State of `scale_by_adam_stable`: optax's Adam state plus a step count for λ_t."""

  adam: optax.ScaleByAdamState
  count: chex.Array  # shape=(), dtype=jnp.int32.


def scale_by_adam_stable(
  weight_decay: float | optax.Schedule,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Adam scaling plus stable weight decay (SWD; Xie et al. NeurIPS 2023, "AdamS").

  ``u = m̂/(√v̂ + ε) + λ_t · m · θ / √v̄``, with v̄ the mean of the bias-corrected
  second moment v̂ over *all* parameter elements. Followed by the lr scaling this is
  θ ← θ (1 − α_t λ_t / √v̄) − α_t m̂/(√v̂ + ε): λ is multiplied by α_t and by 1/√v̄,
  never mixed into the moments. Where v̄ = 0 (all gradients zero so far) no decay
  is applied.
  """
  _validation.check_weight_decay(weight_decay)
  _validation.check_beta("b1", b1)
  _validation.check_beta("b2", b2)
  _validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

  def init_fn(params):
    leaf_multipliers(params, mask)
    return StableWeightDecayState(adam.init(params), jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("scale_by_adam_stable needs the current params.")
    steps, adam_state = adam.update(updates, state.adam, params)
    nu_leaves = jax.tree.leaves(adam_state.nu)
    size = sum(x.size for x in nu_leaves)
    nu_mean = sum(jnp.sum(x) for x in nu_leaves) / size / (1 - b2**adam_state.count)
    inv = jnp.where(nu_mean > 0, 1.0 / jnp.sqrt(jnp.where(nu_mean > 0, nu_mean, 1.0)), 0.0)
    lam = _validation.evaluate(weight_decay, state.count)
    mults = leaf_multipliers(params, mask)
    leaves, treedef = jax.tree.flatten(steps)
    ps = treedef.flatten_up_to(params)
    out = [
      u if k == 0.0 else u + (k * lam * inv).astype(u.dtype) * p
      for u, p, k in zip(leaves, ps, mults)
    ]
    return treedef.unflatten(out), StableWeightDecayState(
      adam_state, optax.safe_increment(state.count)
    )

  return optax.GradientTransformation(init_fn, update_fn)


def first_moment_split(opt_state: Any) -> tuple[optax.Updates, optax.Updates]:
  """``(m_loss, m_l2)``: Adam's first moment split into loss and L2 parts (m = m_loss + m_l2).

  Works on any state that contains one `scale_by_adam_l2(track_moments=True)` (e.g.
  ``adam_l2(..., track_moments=True)``, also inside `optax.inject_hyperparams`),
  under `jax.jit` and inside `jax.pmap`. The moments are the raw (not bias-corrected)
  EMAs; bias correction scales both parts alike.

  Raises:
    ValueError: the state has no tracked first moment.
  """
  found = find_states(opt_state, TrackedAdamL2State)
  if not found:
    raise ValueError(
      "first_moment_split needs an optimizer built with track_moments=True, e.g. "
      "wd_jax.adam_l2(lr, wd, track_moments=True); this optimizer state keeps no split "
      f"(found state types: {_state_types(opt_state)})."
    )
  if len(found) > 1:
    raise ValueError(f"first_moment_split found {len(found)} tracked Adam states; expected one.")
  return found[0].mu_loss, found[0].mu_l2


def _state_types(opt_state: Any) -> list[str]:
  names = []
  for node in jax.tree.leaves(
    opt_state, is_leaf=lambda x: isinstance(x, tuple) and hasattr(x, "_fields")
  ):
    if isinstance(node, tuple) and hasattr(node, "_fields"):
      names.append(type(node).__name__)
  return names


def l2_share(opt_state: Any) -> chex.Array:
  """‖m_l2‖ / (‖m_loss‖ + ‖m_l2‖) over the whole parameter tree (0 when both are 0).

  Exactly 0 for decoupled optimizers (their decay never enters a moment buffer).
  Per-leaf and per-layer shares are in `wd_jax.diagnostics`.

  Raises:
    ValueError: the optimizer is coupled (L2 or L1 in the moments) but untracked.
  """
  if find_states(opt_state, TrackedAdamL2State):
    m_loss, m_l2 = first_moment_split(opt_state)
    a, b = optax.tree.norm(m_loss), optax.tree.norm(m_l2)
    total = a + b
    return jnp.where(total > 0, b / jnp.where(total > 0, total, 1.0), 0.0)
  if any(find_states(opt_state, cls) for cls in (AddL2State, AddL1State, AdamL2State)):
    raise ValueError(
      "l2_share of a coupled optimizer needs track_moments=True "
      "(e.g. wd_jax.adam_l2(lr, wd, track_moments=True)) to measure the L2 part of m."
    )
  return jnp.zeros([], jnp.float32)
