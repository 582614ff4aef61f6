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

import chex
import jax
import jax.numpy as jnp
import optax

from wd_jax import validation
from wd_jax.masks import Mask, _path_names, leaf_multipliers, map_decay, path_to_str

COUPLINGS = ("lr", "schedule", "constant", "corrected")


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


def _require_params(params: Any, name: str) -> None:
  if params is None:
    raise ValueError(f"{name} needs the current params: call update(updates, state, params).")


def _is_params_placeholder(params: Any) -> bool:
  """True for the stand-in `optax.tree.map_params` passes to `init` (it has no leaves)."""
  return type(params).__name__ == "_ParamsPlaceholder" and not jax.tree.leaves(params)


def _check_mask_at_init(params: Any, mask: Mask) -> None:
  # A mismatched mask fails at init, not mid-training; the map_params stand-in has no paths.
  if not _is_params_placeholder(params):
    leaf_multipliers(params, mask)


def _schedule_state(needed: bool) -> Any:
  return (
    optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32)) if needed else optax.EmptyState()
  )


def _count(schedule_state: Any) -> Any:
  return schedule_state.count if isinstance(schedule_state, optax.ScaleByScheduleState) else None


def _advance(schedule_state: Any) -> Any:
  if isinstance(schedule_state, optax.ScaleByScheduleState):
    return optax.ScaleByScheduleState(count=optax.safe_increment(schedule_state.count))
  return schedule_state


def _coef_dtype(x: chex.Array) -> Any:
  """The real dtype a decay coefficient is computed in: x's, but never below float32."""
  real = jnp.finfo(x.dtype).dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.float32
  return jnp.promote_types(real, jnp.float32)


def _check_reference(reference: Any) -> None:
  if reference is None or (isinstance(reference, str) and reference == "init"):
    return
  if isinstance(reference, (str, bytes)) or not jax.tree.leaves(reference):
    raise ValueError(
      f"reference must be None, 'init' (θ₀ = the params at init) or a pytree of arrays "
      f"shaped like the params, got {reference!r}."
    )


def _init_reference(reference: Any, params: Any) -> Any:
  """θ₀ stored in the state: a copy of the params (``"init"``) or of the given tree."""
  if reference is None:
    return optax.EmptyState()
  if _is_params_placeholder(params):
    return params  # so that optax.tree.map_params maps θ₀ like the params
  if isinstance(reference, str):  # "init"; a copy, so that donating params keeps θ₀ alive
    return jax.tree.map(lambda p: jnp.array(p, copy=True), params)
  given = {_path_names(p): x for p, x in jax.tree_util.tree_flatten_with_path(reference)[0]}
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for path, p in flat:
    key = _path_names(path)
    if key not in given:
      raise ValueError(f"reference has no entry for the parameter {path_to_str(path)!r}.")
    r = jnp.asarray(given.pop(key))
    if r.shape != jnp.shape(p):
      raise ValueError(
        f"reference[{path_to_str(path)!r}] has shape {r.shape}, the parameter {jnp.shape(p)}."
      )
    out.append(jnp.array(r, dtype=jnp.asarray(p).dtype, copy=True))
  if given:
    extra = sorted("/".join(k) for k in given)
    raise ValueError(f"reference has entries without a parameter: {extra[:5]}.")
  return treedef.unflatten(out)


def _reference_leaves(reference_state: Any, treedef: Any) -> list[Any]:
  if isinstance(reference_state, optax.EmptyState):
    return [None] * treedef.num_leaves
  return treedef.flatten_up_to(reference_state)


def _map_decayed(fn, mask: Mask, updates: Any, params: Any, reference_state: Any) -> Any:
  """``fn(k, u, d, p)`` on every decayed leaf (multiplier k ≠ 0), with d = θ − θ₀ the direction
  the decay pulls along (θ₀ = 0 or the L2-SP reference); other leaves are left bit for bit."""
  mults = leaf_multipliers(params, mask)
  leaves, treedef = jax.tree.flatten(updates)
  ps = treedef.flatten_up_to(params)
  refs = _reference_leaves(reference_state, treedef)
  out = [
    u if k == 0.0 else fn(k, u, _decayed_direction(p, r), p)
    for u, p, r, k in zip(leaves, ps, refs, mults)
  ]
  return treedef.unflatten(out)


def _decayed_direction(p: chex.Array, r: chex.Array | None) -> chex.Array:
  return p if r is None else p - r


def decay_factor(
  coupling: str,
  learning_rate: Any,
  peak_learning_rate: Any,
  count: chex.Array,
  dtype: Any = None,
) -> Any:
  r"""The coupling factor c_t that multiplies λ in a decoupled decay step.

  .. math::

    \theta \leftarrow \theta + \Delta - c_t\, \lambda_t\, \theta, \qquad
    c_t = \begin{cases}
      \alpha_t & \texttt{"lr"} \\
      \alpha_t / \alpha_\text{peak} & \texttt{"schedule"} \\
      1 & \texttt{"constant"} \\
      \alpha_t^2 / \alpha_\text{peak} & \texttt{"corrected"}
    \end{cases}

  This is what every ``coupling`` argument selects (`with_weight_decay` and the recipes).
  With `dtype`, α_t is cast to it first: optax schedules return float32 at an int32 count
  even under x64, and c_t·λ must not be rounded to float32 before it meets float64 params.

  Args:
    coupling: one of `COUPLINGS`: ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    learning_rate: α: a float, a JAX scalar or a schedule of the step count (unused for
      ``"constant"``).
    peak_learning_rate: α_peak for ``"schedule"`` and ``"corrected"``; None takes
      `learning_rate` as its own peak (a float).
    count: the step count t at which a scheduled α is evaluated.
    dtype: optional dtype to evaluate α_t in (the params' dtype).

  Returns:
    c_t: the float 1.0 for ``"constant"``, else α_t's type (a float or a JAX scalar).

  Example:
    >>> print(wd_jax.decay_factor("corrected", 0.5, 1.0, 0))  # α_t² / α_peak
    0.25
    >>> lr = optax.linear_schedule(1.0, 0.0, 10)
    >>> print(wd_jax.decay_factor("schedule", lr, 1.0, 5))  # α_5 / α_peak
    0.5

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019 (``"lr"``,
    and Alg. 2's ``"schedule"``). Defazio et al., "Why gradients rapidly increase near the
    end of training", 2025 (``"corrected"``, AdamC). Shazeer & Stern, "Adafactor", ICML 2018,
    as ``optax.adafactor`` applies it (``"constant"``).
  """
  if coupling == "constant":
    return 1.0
  lr = validation.real(validation.evaluate(learning_rate, count))
  if dtype is not None:
    lr = jnp.asarray(lr, dtype)
  if coupling == "lr":
    return lr
  peak = validation.real(learning_rate if peak_learning_rate is None else peak_learning_rate)
  if coupling == "schedule":
    return lr / peak
  return lr * lr / peak  # "corrected" (AdamC)


def _decay_coefficient(coupling, learning_rate, peak, lam, k, count, p) -> Any:
  """c_t·λ_t·m as a host float when all are host numbers, else an array of `_coef_dtype(p)`."""
  host = validation.is_host_number
  if host(lam) and (
    coupling == "constant" or (host(learning_rate) and (peak is None or host(peak)))
  ):
    return float(decay_factor(coupling, learning_rate, peak, count)) * (k * float(lam))
  dtype = _coef_dtype(p)
  c = decay_factor(coupling, learning_rate, peak, count, dtype)
  return jnp.asarray(c, dtype) * (k * jnp.asarray(validation.real(lam), dtype))


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
  validation.check_weight_decay(weight_decay)
  _check_reference(reference)
  scheduled = validation.is_schedule(weight_decay)

  def init_fn(params):
    _check_mask_at_init(params, mask)
    return AddL2State(_schedule_state(scheduled), _init_reference(reference, params))

  def update_fn(updates, state, params=None):
    _require_params(params, "add_l2")
    if not validation.is_static_zero(weight_decay):
      lam = validation.evaluate(weight_decay, _count(state.schedule_state))

      def add(k, g, d, p):
        return g + (_decay_coefficient("constant", None, None, lam, k, None, p) * d).astype(g.dtype)

      updates = _map_decayed(add, mask, updates, params, state.reference)
    return updates, AddL2State(_advance(state.schedule_state), state.reference)

  return optax.GradientTransformation(init_fn, update_fn)


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
    _check_mask_at_init(params, mask)
    return AddL1State(_schedule_state(scheduled))

  def update_fn(updates, state, params=None):
    _require_params(params, "add_l1")
    if not validation.is_static_zero(weight_decay):
      lam = validation.evaluate(weight_decay, _count(state.schedule_state))
      mults = leaf_multipliers(params, mask)

      def l1(k, g, p):
        coef = _decay_coefficient("constant", None, None, lam, k, None, p)
        return g + (coef * jnp.sign(p)).astype(g.dtype)

      updates = map_decay(l1, mults, updates, params)
    return updates, AddL1State(_advance(state.schedule_state))

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
    _check_mask_at_init(params, mask)
    return ProxL1State(_schedule_state(scheduled))

  def update_fn(updates, state, params=None):
    _require_params(params, "prox_l1")
    count = _count(state.schedule_state)
    lr = validation.evaluate(learning_rate, count)
    lam = validation.evaluate(weight_decay, count)
    mults = leaf_multipliers(params, mask)

    def prox(k, u, p):
      # α_t in the params' dtype: a float32 schedule value must not round α_t·λ (see decay_factor).
      dtype = _coef_dtype(p)
      real = validation.real
      tau = (k * (jnp.asarray(real(lr), dtype) * jnp.asarray(real(lam), dtype))).astype(dtype)
      z = p + u
      mag = jnp.abs(z)
      return (jnp.sign(z) * jnp.maximum(mag - tau.astype(mag.dtype), 0.0)).astype(p.dtype) - p

    updates = map_decay(prox, mults, updates, params)
    return updates, ProxL1State(_advance(state.schedule_state))

  return optax.GradientTransformation(init_fn, update_fn)


def find_states(opt_state: Any, cls: type) -> list[Any]:
  """Every sub-state of type `cls` inside a (possibly chained, masked, injected) optax state."""
  found = []
  for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, cls)):
    if isinstance(leaf, cls):
      found.append(leaf)
  return found
