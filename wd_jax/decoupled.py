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
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wd_jax import _decay, validation
from wd_jax._decay import COUPLINGS
from wd_jax.masks import Mask, check_mask


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


# ---------------------------------------------------------------------------------------------
# What the base optimizer already does, read from a zero-gradient step on a small tree.

# A 2-D and a 1-D leaf (Muon decays its matrices, its Adam branch the other leaves), values of
# both signs: a decay, an update of −s·θ, cannot be mistaken for anything else.
_PROBE = {
  "matrix": np.array([[0.5, -1.0, 1.5], [2.0, -0.25, 0.75]], np.float32),
  "vector": np.array([1.25, -0.5, 2.5], np.float32),
}


def _small_like(params: Any) -> Any:
  """The params' tree with each leaf cut to at most 2 along every axis (same ndim and dtype),
  as numpy arrays (also when the params are traced)."""

  def leaf(x):
    shape = tuple(min(d, 2) for d in jnp.shape(x))
    values = 0.25 + 0.5 * np.arange(math.prod(shape)) * (-1.0) ** np.arange(math.prod(shape))
    return values.reshape(shape).astype(jnp.result_type(x))

  return jax.tree.map(leaf, params)


def _shrink(updates: Any, params: Any) -> float | None:
  """s > 0 where a leaf's update is −s·θ (the step decays that leaf), else None."""
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    u, p = (np.asarray(jnp.asarray(x, jnp.complex64), np.complex128).ravel() for x in (u, p))
    if not np.any(u) or not np.any(p):
      continue
    s = -np.real(np.vdot(p, u)) / np.real(np.vdot(p, p))
    if s > 0 and np.allclose(u, -s * p, rtol=1e-3, atol=1e-3 * s * np.abs(p).max()):
      return float(s)
  return None


def _probe(base: Any, params: Any) -> tuple[Any, tuple[int, float] | None]:
  """(the base's state at init, or None where it cannot run on `params`; (step, s) where a
  zero-gradient step t = 0 or 1 is −s·θ, else None). Evaluated eagerly, also under `jit`."""
  try:
    with jax.ensure_compile_time_eval():
      params = jax.tree.map(jnp.asarray, params)
      state = opt_state = base.init(params)
      zeros = jax.tree.map(jnp.zeros_like, params)
      for step in range(2):  # a warmup from 0 has α_0 = 0: its decay shows at step 1
        updates, opt_state = base.update(zeros, opt_state, params)
        shrink = _shrink(updates, params)
        if shrink is not None:
          return state, (step, shrink)
  except Exception:  # a base bound to other trees, or to traced values: no verdict here
    return None, None
  return state, None


def _refuse_decaying_base(found, learning_rate) -> None:
  if found is None:
    return
  step, shrink = found
  alpha = validation.concrete_float(validation.evaluate(learning_rate, step))
  lam = f": weight_decay={shrink / alpha:.3g} if its step-{step} lr is {alpha:.3g}" if alpha else ""
  raise ValueError(
    f"base_optimizer already decays the weights: on a zero gradient its step {step} update is "
    f"-{shrink:.3g}·θ (learning_rate × weight_decay in optax's optimizers{lam}; optax.adamw, "
    "nadamw and lion decay by default). Build it without decay (e.g. optax.adamw(..., "
    "weight_decay=0.0)), or pass allow_base_decay=True to add this decay to its own."
  )


_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def _injected_learning_rates(base_state: Any) -> list[Any]:
  """The learning rates `optax.inject_hyperparams` states inside the base's state hold."""
  found = _decay.find_states(base_state, _INJECTED)
  return [s.hyperparams["learning_rate"] for s in found if "learning_rate" in s.hyperparams]


def _check_injected(base_state, learning_rate, coupling) -> None:
  """A learning rate to couple to: given, or one `inject_hyperparams` state's (not both apart)."""
  injected = _injected_learning_rates(base_state)
  if learning_rate is None:
    if _decay.COUPLING_TABLE[coupling].needs_learning_rate and len(injected) != 1:
      raise ValueError(
        f"learning_rate is required for coupling={coupling!r} (base_optimizer's state holds "
        f"{len(injected)} optax.inject_hyperparams learning rates, not one to read), got None."
      )
    return
  given = validation.concrete_float(validation.evaluate(learning_rate, 0))
  held = validation.concrete_float(injected[0]) if len(injected) == 1 else None
  if given is not None and held is not None and not math.isclose(given, held, rel_tol=1e-2):
    raise ValueError(
      f"learning_rate={learning_rate!r} ({given:.6g} at step 0) disagrees with the learning "
      f"rate base_optimizer's optax.inject_hyperparams state holds ({held:.6g}); the decay "
      "reads that one: pass learning_rate=None, or the same learning rate to both."
    )


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
  allow_base_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Decoupled weight decay added to a complete optax optimizer: its placement cannot be wrong.

  `base_optimizer` is complete: its updates Δ are final (lr-scaled, negative-direction,
  what `optax.apply_updates` adds). The wrapper adds the decay step after it:

  .. math::

    \theta \leftarrow \theta + \Delta - c_t\, \lambda_t k\, a \odot (\theta - \theta_0)

  with k the leaf's mask multiplier, θ₀ = 0 unless `reference`, a = 1 unless `cautious`, and
  the coupling factor c_t that multiplies λ (`decay_factor`):

  ======================  ==================  =========================================
  coupling                λ multiplied by     matches
  ======================  ==================  =========================================
  ``"lr"``                α_t                 torch ``AdamW``, ``optax.adamw``
  ``"schedule"``          α_t/α_peak          Loshchilov & Hutter 2019, Composer, big_vision
  ``"constant"``          nothing             ``optax.adafactor``, init2winit
  ``"corrected"``         α_t²/α_peak         AdamC (Defazio et al. 2025), timm ``adamc``
  ======================  ==================  =========================================

  (`wd_jax.decay_factor` computes c_t; the rows are its table, checked against this text.)

  Cautious weight decay (Chen et al. 2025) writes the base step as θ ← θ − η u and decays
  only where u and θ agree in sign: θ ← θ − η(u + λ · 1[u ⊙ θ ≥ 0] ⊙ θ). The wrapper reads
  the sign of u from Δ = −η u: a = 1[Re(Δ ⊙ conj(θ − θ₀)) ≤ 0], so a coordinate whose
  update is exactly 0 is decayed (the ≥ of the formula). With `reference`, θ − θ₀ takes
  θ's place in the indicator and the decay.

  The wrapper must stay the outermost transformation (or inside ones that pass the final
  update through: `optax.MultiSteps`, `optax.apply_if_finite`, `optax.inject_hyperparams`);
  wrapping part of a chain and scaling afterwards would rescale the decay again.

  A base that already decays would decay the weights twice (``optax.adamw`` and
  ``optax.lion`` do by default), so it is refused unless `allow_base_decay`. What is
  detected: a zero-gradient step 0 or 1 (a warmup from 0 shows its decay at step 1) whose
  update is −s·θ on some leaf, on a small probe tree ({2×3 matrix, 3-vector}: Muon decays
  matrices, its Adam branch the rest) at construction, or, when the base cannot run on that
  tree (a mask or labels bound to the params' structure), at `init` on the params' structure
  cut to 2 along each axis; both run eagerly, also under `jit` and `vmap`. Not detected: a
  decay that is 0 in the first two steps (a λ schedule starting at 0, a decay toward
  θ₀ = the params at init), a base that needs extra arguments to update, and one whose
  hyperparameters are traced where the probe runs.

  When `base_optimizer` keeps its learning rate in an `optax.inject_hyperparams` state, the
  decay reads α_t there at every step (the value the base used, also after a sweep sets it),
  so `learning_rate` may be left out; given too, it must agree with it at init.

  Args:
    base_optimizer: a complete optax optimizer (e.g. ``optax.adam(lr)``, ``optax.lion(lr,
      weight_decay=0.0)``).
    weight_decay: λ ≥ 0, or a schedule of the step count.
    learning_rate: α ≥ 0 (float or schedule), the learning rate of `base_optimizer`; only the
      coupling reads it. Required unless ``coupling="constant"`` or the base's
      `optax.inject_hyperparams` state holds it.
    coupling: one of ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    peak_learning_rate: α_peak > 0 for ``"schedule"``/``"corrected"``; required when the
      learning rate is a schedule, a JAX array or read from the base's state (each is the
      current step's value, which cannot be its own peak); a Python float learning rate
      (> 0) is its own peak.
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).
    cautious: decay only coordinates where the update and θ − θ₀ agree in sign.
    reference: None (decay toward 0), ``"init"`` (θ₀ = the params given to `init`; one
      parameter-sized buffer in the state), or a pytree θ₀ shaped like the params (L2-SP).
    allow_base_decay: accept a base that decays the weights itself (both decays then act).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is a `DecoupledWeightDecayState`
    (the base's state, a step count only when λ_t or c_t changes with the step, and θ₀); its
    `update` needs the params.

  Raises:
    ValueError: at construction (or `init`, where only the params show it), naming the
      argument: a base that is not an optax transformation or that already decays (its
      shrink per step and λ given), a negative λ, an unknown coupling, a missing learning
      rate or peak, two learning rates that disagree, a mask that went through
      `optax.inject_hyperparams` as a schedule.

  Example:
    >>> opt = wd_jax.with_weight_decay(optax.adam(0.1), 0.5, learning_rate=0.1)
    >>> p = jnp.array([2.0, -1.0])
    >>> u, _ = opt.update(jnp.zeros(2), opt.init(p), p)  # zero gradient: Adam's step is 0
    >>> print(p + u)  # θ (1 − α λ)
    [ 1.9  -0.95]
    >>> lion = optax.lion(1e-4, weight_decay=0.0)  # optax.lion decays by 1e-3 by default
    >>> opt = wd_jax.with_weight_decay(lion, 1.0, learning_rate=1e-4, cautious=True)
    >>> base = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    >>> opt = wd_jax.with_weight_decay(base, 0.5)  # α_t read from the base's state

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
  if learning_rate is not None:
    validation.check_learning_rate(learning_rate)
  _decay.check_peak(coupling, learning_rate, peak_learning_rate)
  if not isinstance(cautious, bool):
    raise ValueError(f"cautious must be a bool, got {cautious!r}.")
  check_mask(mask)
  _decay.check_reference(reference)
  base = optax.with_extra_args_support(base_optimizer)
  probed = None
  if not allow_base_decay:
    probed, found = _probe(base, _PROBE)
    _refuse_decaying_base(found, learning_rate)
  if probed is not None:
    _check_injected(probed, learning_rate, coupling)
  scheduled = validation.is_schedule(weight_decay) or (
    coupling != "constant" and validation.is_schedule(learning_rate)
  )
  # α_peak: given, or a Python float learning rate (_decay.check_peak refused the others).
  peak = learning_rate if peak_learning_rate is None else peak_learning_rate

  def init_fn(params):
    _decay.check_mask_at_init(params, mask)
    if probed is None and not allow_base_decay and jax.tree.leaves(params):
      _refuse_decaying_base(_probe(base, _small_like(params))[1], learning_rate)
    base_state = base.init(params)
    _check_injected(base_state, learning_rate, coupling)
    return DecoupledWeightDecayState(
      base_state, _decay.schedule_state(scheduled), _decay.init_reference(reference, params)
    )

  def update_fn(updates, state, params=None, **extra_args):
    _decay.require_params(params, "with_weight_decay")
    updates, base_state = base.update(updates, state.base_state, params, **extra_args)
    if not validation.is_static_zero(weight_decay):
      count = _decay.count_of(state.schedule_state)
      injected = _injected_learning_rates(base_state)  # the α_t the base has just used
      updates = _decay.add_decay(
        updates,
        params,
        state.reference,
        lam=validation.evaluate(weight_decay, count),
        mask=mask,
        sign=-1,
        cautious=cautious,
        coupling=coupling,
        learning_rate=injected[0] if len(injected) == 1 else learning_rate,
        peak=peak,
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
  allow_base_decay: bool = False,
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
    learning_rate: α ≥ 0 (float or schedule); required unless ``coupling="constant"`` or
      the optimizer keeps it in an `optax.inject_hyperparams` state (see `with_weight_decay`).
    peak_learning_rate: α_peak for ``"schedule"``/``"corrected"`` (see `with_weight_decay`).
    mask: which leaves to decay, and by how much (see `wd_jax.masks`).
    cautious: decay only where the update and θ agree in sign (Chen et al. 2025).
    reference: None, ``"init"`` or a pytree θ₀: decay toward θ₀ (L2-SP).
    allow_base_decay: accept an optimizer that decays the weights itself.

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
  wrap(optax.identity(), allow_base_decay=True)  # checks the arguments now, at construction
  wrap = functools.partial(wrap, allow_base_decay=allow_base_decay)

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
