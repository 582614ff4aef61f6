"""Decoupled weight decay, applied around a complete optimizer so no placement can flip its sign.

The position rule. Decoupled decay must act on the *final* update Δ (already lr-scaled and
negative-direction: θ ← θ + Δ). A transform inside `optax.chain` cannot see what follows it,
and anything that follows (the lr scaling's sign flip, a trust ratio, Adam's moments) rescales
or flips the decay, so `with_weight_decay(optimizer, λ, ...)` wraps the complete optimizer:
θ ← θ + Δ − c_t·λ_t·m·a⊙(θ − θ₀), with c_t from the coupling (`decay_factor`), a = 1 or the
cautious agreement 1[Δ⊙(θ − θ₀) ≤ 0], θ₀ = 0 or an L2-SP reference. `decoupled_weight_decay`
builds the same wrapper when called on an optimizer and refuses, at init, to be a chain element.
LAMB, whose reference applies the decay inside its direction before the trust ratio, marks
that decay with `DecayDirectionState`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import optax

from wd_jax import _decay, validation
from wd_jax._decay import COUPLINGS
from wd_jax.masks import Mask


class DecoupledWeightDecayState(NamedTuple):
  """State of `with_weight_decay` (and of ``decoupled_weight_decay(...)(optimizer)``).

  Attributes:
    base_state: the wrapped optimizer's state.
    schedule_state: ``optax.ScaleByScheduleState(count)`` when λ_t or c_t changes with the
      step, else ``optax.EmptyState()``.
    reference: θ₀ (shaped like the params) for decay toward a reference point (L2-SP), else
      ``optax.EmptyState()``.

  Example:
    >>> opt = wd_jax.with_weight_decay(optax.sgd(0.1), 1e-4, learning_rate=0.1)
    >>> state = opt.init({"w": jnp.ones(2)})
    >>> print(type(state).__name__, state.schedule_state)
    DecoupledWeightDecayState EmptyState()
  """

  base_state: optax.OptState  # The wrapped optimizer's state.
  schedule_state: Any  # ScaleByScheduleState(count) when λ_t or c_t changes, else EmptyState.
  reference: Any  # θ₀ (params-shaped) for decay toward a reference point, else EmptyState.


def _check_lr_args(coupling, learning_rate, peak_learning_rate, needs_lr: bool) -> None:
  if learning_rate is None:
    if needs_lr:
      raise ValueError(f"learning_rate is required for coupling={coupling!r}, got None.")
  else:
    validation.check_learning_rate(learning_rate)
  if learning_rate is not None or peak_learning_rate is not None:
    _decay.check_peak(coupling, learning_rate, peak_learning_rate)


def with_weight_decay(
  base_optimizer: optax.GradientTransformation,
  weight_decay: float | optax.Schedule,
  *,
  learning_rate: float | optax.Schedule | None = None,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Decoupled weight decay added to a complete optax optimizer: its placement cannot be wrong.

  `base_optimizer` is complete: its updates Δ are final (lr-scaled, negative-direction,
  what `optax.apply_updates` adds). The wrapper adds the decay step after it:

  .. math::

    \theta \leftarrow \theta + \Delta - c_t\, \lambda_t k\, a \odot (\theta - \theta_0)

  with k the leaf's mask multiplier, θ₀ = 0 unless `reference`, a = 1 unless `cautious`, and
  the coupling factor c_t that multiplies λ (`decay_factor`):

  ======================  ==================  =========================================
  coupling                c_t multiplying λ   matches
  ======================  ==================  =========================================
  ``"lr"``                α_t                 torch ``AdamW``, ``optax.adamw``
  ``"schedule"``          α_t / α_peak        Loshchilov & Hutter 2019, Composer, big_vision
  ``"constant"``          1                   optax ``adafactor``, init2winit (no lr)
  ``"corrected"``         α_t² / α_peak       AdamC (Defazio et al. 2025), timm ``adamc``
  ======================  ==================  =========================================

  Cautious weight decay (Chen et al. 2025) writes the base step as θ ← θ − η u and decays
  only where u and θ agree in sign: θ ← θ − η(u + λ · 1[u ⊙ θ ≥ 0] ⊙ θ). The wrapper reads
  the sign of u from Δ = −η u: a = 1[Re(Δ ⊙ conj(θ − θ₀)) ≤ 0], so a coordinate whose
  update is exactly 0 is decayed (the ≥ of the formula). With `reference`, θ − θ₀ takes
  θ's place in the indicator and the decay.

  The wrapper must stay the outermost transformation (or inside ones that pass the final
  update through: `optax.MultiSteps`, `optax.apply_if_finite`, `optax.inject_hyperparams`);
  wrapping part of a chain and scaling afterwards would rescale the decay again.

  Args:
    base_optimizer: a complete optax optimizer (e.g. ``optax.adam(lr)``, ``optax.lion(lr)``).
    weight_decay: λ ≥ 0, or a schedule of the step count.
    learning_rate: α (float or schedule); required unless ``coupling="constant"``. It is the
      learning rate of `base_optimizer`; only the coupling reads it.
    coupling: one of ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    peak_learning_rate: α_peak for ``"schedule"``/``"corrected"``; required when
      `learning_rate` is a schedule or a JAX array (inside `optax.inject_hyperparams` the
      learning rate is the current step's value, which cannot be its own peak); a Python
      float learning rate is its own peak.
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).
    cautious: decay only coordinates where the update and θ − θ₀ agree in sign.
    reference: None (decay toward 0), ``"init"`` (θ₀ = the params given to `init`; one
      parameter-sized buffer in the state), or a pytree θ₀ shaped like the params (L2-SP).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is a `DecoupledWeightDecayState`
    (the base's state, a step count only when λ_t or c_t changes with the step, and θ₀); its
    `update` needs the params.

  Raises:
    ValueError: at construction, naming the argument: a base that is not an optax
      transformation, a negative λ, an unknown coupling, a missing learning rate or peak.

  Example:
    >>> opt = wd_jax.with_weight_decay(optax.adam(0.1), 0.5, learning_rate=0.1)
    >>> p = jnp.array([2.0, -1.0])
    >>> u, _ = opt.update(jnp.zeros(2), opt.init(p), p)  # zero gradient: Adam's step is 0
    >>> print(p + u)  # θ (1 − α λ)
    [ 1.9  -0.95]
    >>> lion = wd_jax.with_weight_decay(optax.lion(1e-4), 1.0, learning_rate=1e-4, cautious=True)

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.
    Defazio et al., "Why gradients rapidly increase near the end of training", 2025 (AdamC).
    Chen et al., "Cautious weight decay", arXiv:2510.12402, 2025.
    Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning" (L2-SP), 2018.
  """
  if not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
    raise ValueError(
      f"base_optimizer must be an optax GradientTransformation, got {base_optimizer!r}."
    )
  validation.check_weight_decay(weight_decay)
  validation.check_choice("coupling", coupling, COUPLINGS)
  _check_lr_args(coupling, learning_rate, peak_learning_rate, needs_lr=coupling != "constant")
  if not isinstance(cautious, bool):
    raise ValueError(f"cautious must be a bool, got {cautious!r}.")
  _decay.check_reference(reference)
  base = optax.with_extra_args_support(base_optimizer)
  scheduled = validation.is_schedule(weight_decay) or (
    coupling != "constant" and validation.is_schedule(learning_rate)
  )

  def init_fn(params):
    _decay.check_mask_at_init(params, mask)
    return DecoupledWeightDecayState(
      base.init(params),
      _decay.schedule_state(scheduled),
      _decay.init_reference(reference, params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    _decay.require_params(params, "with_weight_decay")
    updates, base_state = base.update(updates, state.base_state, params, **extra_args)
    if not validation.is_static_zero(weight_decay):
      count = _decay.count_of(state.schedule_state)
      updates = _decay.add_decay(
        updates,
        params,
        state.reference,
        lam=validation.evaluate(weight_decay, count),
        mask=mask,
        sign=-1,
        cautious=cautious,
        coupling=coupling,
        learning_rate=learning_rate,
        peak=peak_learning_rate,
        count=count,
      )
    new_state = DecoupledWeightDecayState(
      base_state, _decay.advance(state.schedule_state), state.reference
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class DecoupledWeightDecay(optax.GradientTransformationExtraArgs):
  """Decoupled decay waiting for its optimizer: call it on one (see `decoupled_weight_decay`).

  As a chain element its `init` raises: no transform can see what follows it in a chain,
  so the decay could be rescaled or flip sign there.

  Attributes:
    init: raises `ValueError` (this is not a chain element).
    update: raises `ValueError` (this is not a chain element).

  Example:
    >>> decay = wd_jax.decoupled_weight_decay(0.1, learning_rate=1e-3)
    >>> opt = decay(optax.adam(1e-3))  # the same as wd_jax.with_weight_decay(...)
    >>> print(type(opt.init({"w": jnp.ones(2)})).__name__)
    DecoupledWeightDecayState
  """

  def __call__(self, base_optimizer: optax.GradientTransformation):
    return self.init.wrap(base_optimizer)


def decoupled_weight_decay(
  weight_decay: float | optax.Schedule = 1e-4,
  *,
  coupling: str = "lr",
  learning_rate: float | optax.Schedule | None = None,
  peak_learning_rate: float | None = None,
  mask: Mask = None,
  cautious: bool = False,
  reference: Any = None,
) -> DecoupledWeightDecay:
  r"""Decoupled weight decay, applied by calling the result on the complete optimizer.

  ``decoupled_weight_decay(λ, ...)(optimizer)`` is ``with_weight_decay(optimizer, λ, ...)``:

  .. math::

    \theta \leftarrow \theta + \Delta - c_t\, \lambda_t k\, a \odot (\theta - \theta_0)

  with c_t, what multiplies λ, set by `coupling` (see `with_weight_decay` for the table,
  cautious decay and `reference`).

  The rule: this is never a chain element. Placed where people place
  ``optax.add_decayed_weights`` (before ``scale_by_learning_rate``, or before a trust
  ratio), the −c_t·λ·θ it adds would be scaled by −α_t (the weights *grow*) or rescaled,
  and no transform can see what follows it in a chain. So its ``init`` raises a
  `ValueError` wherever it is placed (in a chain, nested, masked or injected), and the
  only way to run it is on a complete optimizer, whose updates are final.

  Args:
    weight_decay: λ ≥ 0, or a schedule of the step count.
    coupling: one of ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    learning_rate: α (float or schedule); required unless ``coupling="constant"``.
    peak_learning_rate: α_peak for ``"schedule"``/``"corrected"`` (see `with_weight_decay`).
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).
    cautious: decay only where the update and θ agree in sign (Chen et al. 2025).
    reference: None, ``"init"`` or a pytree θ₀: decay toward θ₀ (L2-SP).

  Returns:
    A `DecoupledWeightDecay`: call it on an optimizer to get the wrapped optimizer.

  Raises:
    ValueError: a bad argument (at construction, as `with_weight_decay`); and from `init`
      or `update`, always: it is not a chain element.

  Example:
    >>> opt = wd_jax.decoupled_weight_decay(0.5, learning_rate=0.1)(optax.sgd(0.1))
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)
    [1.9]
    >>> decay = wd_jax.decoupled_weight_decay(0.5, learning_rate=0.1)
    >>> optax.chain(optax.scale_by_adam(), decay).init(p)
    Traceback (most recent call last):
    ...
    ValueError: decoupled_weight_decay is not a chain element: ...

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.
    ``optax.add_decayed_weights``, the chain element this replaces, and whose placement
    before ``scale_by_learning_rate`` decides what multiplies λ.
  """
  wrap = functools.partial(
    with_weight_decay,
    weight_decay=weight_decay,
    learning_rate=learning_rate,
    coupling=coupling,
    peak_learning_rate=peak_learning_rate,
    mask=mask,
    cautious=cautious,
    reference=reference,
  )
  wrap(optax.identity())  # validates every argument now, at construction

  def init_fn(params):
    del params
    raise ValueError(
      "decoupled_weight_decay is not a chain element: a transform cannot see what follows it "
      "in an optax.chain, and placed before the learning-rate scaling, a trust ratio or "
      "Adam's moments its -c_t·λ·θ is rescaled or flips sign (the weights grow instead of "
      "decaying). Apply it to the complete optimizer instead: "
      "wd_jax.decoupled_weight_decay(λ, ...)(optimizer), or "
      "wd_jax.with_weight_decay(optimizer, λ, ...)."
    )

  def update_fn(updates, state, params=None, **extra_args):
    del updates, state, params, extra_args
    init_fn(None)

  init_fn.wrap = wrap
  return DecoupledWeightDecay(init_fn, update_fn)


class DecayDirectionState(NamedTuple):
  """State of the decay LAMB adds to its direction before the trust ratio (decoupled: never
  in a moment buffer).

  Attributes:
    schedule_state: ``optax.ScaleByScheduleState(count)`` when λ is a schedule, else
      ``optax.EmptyState()``.
    reference: θ₀ (shaped like the params) for decay toward a reference point, else
      ``optax.EmptyState()``.
  """

  schedule_state: Any  # ScaleByScheduleState(count) when λ is a schedule, else EmptyState.
  reference: Any  # θ₀ (params-shaped) for decay toward a reference point, else EmptyState.
