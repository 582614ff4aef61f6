"""Weight decay as pure optax transforms: coupled (before the moments) and decoupled (after).

Symbols used in every docstring: θ params, g incoming gradient, Δ the update a complete
optimizer returns (already lr-scaled and negative-direction: θ ← θ + Δ), λ_t the weight
decay at step t (a float or a schedule), m the per-leaf mask multiplier, α_t the learning
rate at step t, α_peak its peak, c_t the coupling factor multiplying λ.

The position rule. Coupled L2 (`add_l2`, `add_l1`) is an input to the optimizer: it goes
first in a chain, where the gradient enters. Decoupled decay is an output: it must act on
the *final* update. A transform inside `optax.chain` cannot see what follows it, and
anything that follows (the lr scaling's sign flip, a trust ratio, Adam's moments) rescales
or flips the decay, so decoupled decay is applied by *wrapping the complete optimizer*:
`with_weight_decay(optimizer, λ, ...)`. `decoupled_weight_decay` builds the same wrapper and
refuses, at init, to be used as a chain element.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from wd_jax import _decay, validation

# Re-exported: where the engine and users have imported them from.
from wd_jax._decay import COUPLINGS as COUPLINGS
from wd_jax._decay import decay_factor as decay_factor
from wd_jax._decay import find_states as find_states
from wd_jax.masks import Mask, leaf_multipliers, map_decay


class AddL2State(NamedTuple):
  """State of `add_l2`; its type marks a chain as coupled L2 (see `l2_share`).

  Attributes:
    schedule_state: ``optax.ScaleByScheduleState(count)`` when λ is a schedule, else
      ``optax.EmptyState()``.
    reference: θ₀ (shaped like the params) for decay toward a reference point (L2-SP), else
      ``optax.EmptyState()``.

  Example:
    >>> state = wd_jax.add_l2(1e-4, reference="init").init({"w": jnp.ones(2)})
    >>> print(state.schedule_state, state.reference["w"])
    EmptyState() [1. 1.]
  """

  schedule_state: Any  # ScaleByScheduleState(count) when λ is a schedule, else EmptyState.
  reference: Any  # θ₀ (params-shaped) for decay toward a reference point, else EmptyState.


class AddL1State(NamedTuple):
  """State of `add_l1`; its type marks a chain as coupled (see `l2_share`).

  Attributes:
    schedule_state: ``optax.ScaleByScheduleState(count)`` when λ is a schedule, else
      ``optax.EmptyState()``.

  Example:
    >>> print(wd_jax.add_l1(1e-4).init({"w": jnp.ones(2)}))
    AddL1State(schedule_state=EmptyState())
  """

  schedule_state: Any  # ScaleByScheduleState(count) when λ is a schedule, else EmptyState.


class ProxL1State(NamedTuple):
  """State of `prox_l1`.

  Attributes:
    schedule_state: ``optax.ScaleByScheduleState(count)`` when α or λ is a schedule, else
      ``optax.EmptyState()``.

  Example:
    >>> lr = optax.cosine_decay_schedule(0.1, 100)
    >>> state = wd_jax.prox_l1(1e-4, learning_rate=lr).init({"w": jnp.ones(2)})
    >>> print(state.schedule_state.count)
    0
  """

  schedule_state: Any  # ScaleByScheduleState(count) when α or λ is a schedule, else EmptyState.


def add_l2(
  weight_decay: float | optax.Schedule = 1e-4,
  *,
  mask: Mask = None,
  reference: Any = None,
) -> optax.GradientTransformation:
  r"""Coupled L2: adds the gradient of ½λ‖θ − θ₀‖² to the incoming gradient.

  .. math::

    g \leftarrow g + \lambda_t k\, (\theta - \theta_0)

  with θ₀ = 0 unless `reference` is given and k the leaf's mask multiplier. Chain it *first*,
  before the moment estimator and before the learning-rate scaling (torch's
  ``Adam(weight_decay=λ)`` and ``SGD(weight_decay=λ)``); after the lr scaling its term
  would have the wrong sign. λ is multiplied by nothing here; the learning rate multiplies
  the whole step later, and under Adam the λθ term is also rescaled by 1/√v̂ and mixed
  into the first moment (Bjorck, Weinberger & Gomes 2021).

  With ``reference="init"`` (or a tree θ₀) this is L2-SP, the fine-tuning penalty of
  Li, Grandvalet & Davoine (2018): weights are pulled toward the pretrained θ₀, not 0.

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).
    reference: None (decay toward 0), ``"init"`` (θ₀ = the params given to `init`, kept
      in the state: one parameter-sized buffer), or a pytree θ₀ shaped like the params.

  Returns:
    An `optax.GradientTransformation` whose state is an `AddL2State`; its `update` needs
    the params.

  Raises:
    ValueError: a negative or non-finite λ, or a bad `reference` (at construction); a mask
      that does not match the params (at `init`).

  Example:
    >>> opt = optax.chain(wd_jax.add_l2(0.5), optax.sgd(0.1))
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # θ − α λ θ = 2 − 0.1·0.5·2
    [1.9]

  References:
    PyTorch ``torch.optim.Adam`` / ``SGD`` with ``weight_decay=λ`` (the same gradient term).
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019 (why it differs
    from decoupled decay under Adam). Li, Grandvalet & Davoine, "Explicit inductive bias for
    transfer learning with convolutional networks" (L2-SP), ICML 2018.
  """
  return _decay.decay_in_chain(
    weight_decay, mask=mask, reference=reference, state=AddL2State, name="add_l2"
  )


def add_l1(
  weight_decay: float | optax.Schedule = 1e-4, *, mask: Mask = None
) -> optax.GradientTransformation:
  r"""Coupled L1 by subgradient: adds the subgradient of λ‖θ‖₁ to the incoming gradient.

  .. math::

    g \leftarrow g + \lambda_t k\, \operatorname{sign}(\theta)

  Like `add_l2`, chain it first, before the moment estimator and the lr scaling. A
  subgradient step makes weights oscillate around zero but never lands exactly on it;
  use `prox_l1` for exact zeros. λ is multiplied by nothing here (the lr multiplies the
  whole step later, and an adaptive optimizer rescales it).

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    mask: which leaves to decay, and by how much.

  Returns:
    An `optax.GradientTransformation` whose state is an `AddL1State`; its `update` needs
    the params.

  Example:
    >>> opt = optax.chain(wd_jax.add_l1(0.5), optax.sgd(0.1))
    >>> p = jnp.array([2.0, -1.0])
    >>> u, _ = opt.update(jnp.zeros(2), opt.init(p), p)
    >>> print(p + u)  # θ − α λ sign(θ)
    [ 1.95 -0.95]

  References:
    Tibshirani, "Regression shrinkage and selection via the lasso", JRSS B, 1996.
    Shor, "Minimization methods for non-differentiable functions", 1985 (subgradient steps).
  """
  validation.check_weight_decay(weight_decay)
  scheduled = validation.is_schedule(weight_decay)

  def init_fn(params):
    _decay.check_mask_at_init(params, mask)
    return AddL1State(_decay.schedule_state(scheduled))

  def update_fn(updates, state, params=None):
    _decay.require_params(params, "add_l1")
    if not validation.is_static_zero(weight_decay):
      lam = validation.evaluate(weight_decay, _decay.count_of(state.schedule_state))

      def l1(k, g, p):
        coef = _decay.coefficient("constant", None, None, lam, k, None, p)
        return g + (coef * jnp.sign(p)).astype(g.dtype)

      updates = map_decay(l1, leaf_multipliers(params, mask), updates, params)
    return updates, AddL1State(_decay.advance(state.schedule_state))

  return optax.GradientTransformation(init_fn, update_fn)


def prox_l1(
  weight_decay: float | optax.Schedule,
  *,
  learning_rate: float | optax.Schedule,
  mask: Mask = None,
) -> optax.GradientTransformation:
  r"""Proximal (decoupled) L1, chained *last*: soft-thresholds θ + u by α_t·λ_t·m.

  With u the incoming (final) update:

  .. math::

    z = \theta + u, \qquad
    \theta \leftarrow \operatorname{sign}(z)\, \max(|z| - \alpha_t \lambda_t k,\ 0)

  The returned update is the new θ minus the old, so ``optax.apply_updates`` lands exactly
  on zero for every thresholded weight (x + (−x) is exactly 0 in IEEE arithmetic). λ is
  multiplied by α_t, as in the proximal-gradient method (ISTA); pass the optimizer's own
  learning rate (or schedule) as `learning_rate`.

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    learning_rate: α (float or schedule), the step size of the proximal map.
    mask: which leaves to threshold, and by how much.

  Returns:
    An `optax.GradientTransformation` whose state is a `ProxL1State`; its `update` needs
    the params.

  Example:
    >>> opt = optax.chain(optax.sgd(0.1), wd_jax.prox_l1(0.5, learning_rate=0.1))
    >>> p = jnp.array([0.02, -1.0])
    >>> u, _ = opt.update(jnp.zeros(2), opt.init(p), p)
    >>> print(p + u)  # threshold α λ = 0.05
    [ 0.   -0.95]

  References:
    Daubechies, Defrise & De Mol, "An iterative thresholding algorithm for linear inverse
    problems with a sparsity constraint", CPAM 2004 (ISTA). Parikh & Boyd, "Proximal
    algorithms", 2014.
  """
  validation.check_weight_decay(weight_decay)
  validation.check_learning_rate(learning_rate)
  scheduled = validation.is_schedule(weight_decay) or validation.is_schedule(learning_rate)

  def init_fn(params):
    _decay.check_mask_at_init(params, mask)
    return ProxL1State(_decay.schedule_state(scheduled))

  def update_fn(updates, state, params=None):
    _decay.require_params(params, "prox_l1")
    count = _decay.count_of(state.schedule_state)
    lam = validation.evaluate(weight_decay, count)

    def prox(k, u, p):
      # α_t·λ_t·k in the params' dtype: a float32 schedule value must not round it (decay_factor).
      tau = _decay.coefficient("lr", learning_rate, None, lam, k, count, p)
      z = p + u
      mag = jnp.abs(z)
      return (jnp.sign(z) * jnp.maximum(mag - jnp.asarray(tau, mag.dtype), 0.0)).astype(p.dtype) - p

    updates = map_decay(prox, leaf_multipliers(params, mask), updates, params)
    return updates, ProxL1State(_decay.advance(state.schedule_state))

  return optax.GradientTransformation(init_fn, update_fn)
