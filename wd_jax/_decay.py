"""What every decay transform shares: the coupling table, the decay kernel and its state.

One decay step, u ± c_t·λ_t·k·a⊙(θ − θ₀) (c_t the coupling factor, k the mask multiplier, a the
cautious agreement or 1, θ₀ = 0 or an L2-SP reference), written once: `add_l2` and LAMB add it
to a descent direction, `with_weight_decay` subtracts it from a final update, and the
timescale arithmetic reads c_t from the same table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from wd_jax import validation
from wd_jax.masks import Mask, leaf_multipliers, path_names


@dataclasses.dataclass(frozen=True)
class Coupling:
  """What one value of every ``coupling`` argument multiplies λ by."""

  name: str  # the ``coupling`` value
  factor: Callable[[Any, Any], Any]  # c_t of (α_t, α_peak)
  multiplied_by: str  # c_t as the docs write it ("nothing" for 1)
  matches: str  # the implementations whose decay this is
  needs_peak: bool = False  # c_t divides by α_peak

  @property
  def needs_learning_rate(self) -> bool:
    return self.multiplied_by != "nothing"


COUPLING_TABLE = {
  c.name: c
  for c in (
    Coupling("lr", lambda a, peak: a, "α_t", "torch ``AdamW``, ``optax.adamw``"),
    Coupling(
      "schedule",
      lambda a, peak: a / peak,
      "α_t/α_peak",
      "Loshchilov & Hutter 2019, Composer, big_vision",
      needs_peak=True,
    ),
    Coupling("constant", lambda a, peak: 1.0, "nothing", "``optax.adafactor``, init2winit"),
    Coupling(
      "corrected",
      lambda a, peak: a * a / peak,
      "α_t²/α_peak",
      "AdamC (Defazio et al. 2025), timm ``adamc``",
      needs_peak=True,
    ),
  )
}
COUPLINGS = tuple(COUPLING_TABLE)


def check_peak(coupling: str, learning_rate: Any, peak_learning_rate: Any) -> None:
  """α_peak > 0 where the coupling divides by it; a Python float lr is its own peak."""
  if peak_learning_rate is not None:
    validation.check_peak_learning_rate(peak_learning_rate)
    return
  if not COUPLING_TABLE[coupling].needs_peak:
    return
  if validation.is_schedule(learning_rate):
    raise ValueError(
      f"peak_learning_rate is required when learning_rate is a schedule and "
      f"coupling={coupling!r} (c_t = {COUPLING_TABLE[coupling].multiplied_by}), got None."
    )
  if not validation.is_host_number(learning_rate):
    # optax.inject_hyperparams rebuilds the optimizer every step with that step's lr as a
    # JAX array: taken as its own peak, "schedule" would silently become "constant".
    raise ValueError(
      f"peak_learning_rate is required for coupling={coupling!r} when learning_rate is a "
      f"JAX array or read from the base optimizer's state (the current step's value), got "
      f"learning_rate={learning_rate!r} and peak_learning_rate=None. A Python float "
      "learning rate is its own peak; otherwise pass peak_learning_rate."
    )
  if float(learning_rate) <= 0.0:
    raise ValueError(
      f"coupling={coupling!r} divides by the peak learning rate, and learning_rate="
      f"{learning_rate!r} is its own peak: pass peak_learning_rate > 0, got None."
    )


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

  This is what every ``coupling`` argument selects (`with_weight_decay` and the recipes), and
  what `describe_timescale` sums. With `dtype`, α_t is cast to it first: optax schedules return
  float32 at an int32 count even under x64, and c_t·λ must not be rounded to float32 before it
  meets float64 params.

  Args:
    coupling: one of `COUPLINGS`: ``"lr"``, ``"schedule"``, ``"constant"``, ``"corrected"``.
    learning_rate: α ≥ 0: a float, a JAX scalar or a schedule of the step count (unused for
      ``"constant"``).
    peak_learning_rate: α_peak > 0 for ``"schedule"`` and ``"corrected"``; None takes
      `learning_rate` as its own peak (a float).
    count: the step count t (or an array of counts) at which a scheduled α is evaluated.
    dtype: optional dtype to evaluate α_t in (the params' dtype).

  Returns:
    c_t: the float 1.0 for ``"constant"``, else α_t's type (a float or a JAX array).

  Raises:
    ValueError: an unknown coupling, or an α_peak that is missing or not > 0 where the
      coupling divides by it.

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
  validation.check_choice("coupling", coupling, COUPLINGS)
  if validation.is_host_number(peak_learning_rate) or peak_learning_rate is None:
    check_peak(coupling, learning_rate, peak_learning_rate)
  return coupling_factor(coupling, learning_rate, peak_learning_rate, count, dtype)


def coupling_factor(coupling, learning_rate, peak_learning_rate, count, dtype=None) -> Any:
  """`decay_factor` without its argument checks (the transforms check at construction)."""
  entry = COUPLING_TABLE[coupling]
  if not entry.needs_learning_rate:
    return 1.0
  lr = validation.real(validation.evaluate(learning_rate, count))
  if dtype is not None:
    lr = jnp.asarray(lr, dtype)
  peak = validation.real(learning_rate if peak_learning_rate is None else peak_learning_rate)
  return entry.factor(lr, peak)


def coef_dtype(x: chex.Array) -> Any:
  """The real dtype a decay coefficient is computed in: x's, but never below float32."""
  real = jnp.finfo(x.dtype).dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.float32
  return jnp.promote_types(real, jnp.float32)


def coefficient(coupling, learning_rate, peak, lam, k, count, p) -> Any:
  """c_t·λ_t·k as a host float when all are host numbers, else an array of `coef_dtype(p)`."""
  host = validation.is_host_number
  if host(lam) and (
    coupling == "constant" or (host(learning_rate) and (peak is None or host(peak)))
  ):
    return float(coupling_factor(coupling, learning_rate, peak, count)) * (k * float(lam))
  dtype = coef_dtype(p)
  c = coupling_factor(coupling, learning_rate, peak, count, dtype)
  return jnp.asarray(c, dtype) * (k * jnp.asarray(validation.real(lam), dtype))


# ---------------------------------------------------------------------------------------------
# The step count a scheduled λ_t or c_t needs.


def schedule_state(needed: bool) -> Any:
  return (
    optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32)) if needed else optax.EmptyState()
  )


def count_of(state: Any) -> Any:
  return state.count if isinstance(state, optax.ScaleByScheduleState) else None


def advance(state: Any) -> Any:
  if isinstance(state, optax.ScaleByScheduleState):
    return optax.ScaleByScheduleState(count=optax.safe_increment(state.count))
  return state


# ---------------------------------------------------------------------------------------------
# Params at init and update; the reference point θ₀.


def require_params(params: Any, name: str) -> None:
  if params is None:
    raise ValueError(f"{name} needs the current params: call update(updates, state, params).")


def check_mask_at_init(params: Any, mask: Mask) -> None:
  """A mismatched mask fails at init, not mid-training.

  A tree without leaves has nothing to decay and is skipped: that is also what
  `optax.tree.map_params` passes to `init` (a leafless stand-in for the params, whose copies
  in the state it then finds), so no mask can be checked against it.
  """
  if jax.tree.leaves(params):
    leaf_multipliers(params, mask)


def check_reference(reference: Any) -> None:
  if reference is None or (isinstance(reference, str) and reference == "init"):
    return
  if isinstance(reference, (str, bytes)) or not jax.tree.leaves(reference):
    raise ValueError(
      f"reference must be None, 'init' (θ₀ = the params at init) or a pytree of arrays "
      f"shaped like the params, got {reference!r}."
    )


def init_reference(reference: Any, params: Any) -> Any:
  """θ₀ stored in the state: a copy of the params (``"init"``) or of the given tree.

  Built by mapping over the params, so a leafless params tree (`optax.tree.map_params`'s
  stand-in) gives θ₀ of the same type, which map_params then maps like the params.
  """
  if reference is None:
    return optax.EmptyState()
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  if isinstance(reference, str):  # "init"; a copy, so that donating params keeps θ₀ alive
    return treedef.unflatten([jnp.array(p, copy=True) for _, p in flat])
  given = {path_names(p): x for p, x in jax.tree_util.tree_flatten_with_path(reference)[0]}
  out = []
  for path, p in flat:
    name = "/".join(path_names(path))
    if path_names(path) not in given:
      raise ValueError(f"reference has no entry for the parameter {name!r}.")
    r = jnp.asarray(given.pop(path_names(path)))
    if r.shape != jnp.shape(p):
      raise ValueError(f"reference[{name!r}] has shape {r.shape}, the parameter {jnp.shape(p)}.")
    out.append(jnp.array(r, dtype=jnp.asarray(p).dtype, copy=True))
  if given and flat:
    extra = sorted("/".join(k) for k in given)
    raise ValueError(f"reference has entries without a parameter: {extra[:5]}.")
  return treedef.unflatten(out)


# ---------------------------------------------------------------------------------------------
# The decay kernel.


def agrees(u: chex.Array, d: chex.Array) -> chex.Array:
  """1[Re(u ⊙ conj(d)) ≥ 0]: u and d agree in sign (a zero u agrees)."""
  prod = u * jnp.conj(d) if jnp.iscomplexobj(u) or jnp.iscomplexobj(d) else u * d
  return jnp.real(prod) >= 0


def add_decay(
  updates: Any,
  params: Any,
  reference: Any,
  *,
  lam: Any,
  mask: Mask,
  sign: int,
  cautious: bool = False,
  coupling: str = "constant",
  learning_rate: Any = None,
  peak: Any = None,
  count: Any = None,
) -> Any:
  """u + sign·c_t·λ_t·k·a⊙(θ − θ₀) on every decayed leaf; other leaves are left bit for bit.

  `sign` is +1 where u is a descent direction (a gradient, LAMB's direction) and −1 where u is a
  final update (θ ← θ + u). a = 1[sign·u and θ − θ₀ agree] when `cautious`, else 1.
  """
  leaves, treedef, rows = decayed_leaves(updates, params, reference, mask)

  def decay(u, k, p, d):
    term = (coefficient(coupling, learning_rate, peak, lam, k, count, p) * d).astype(u.dtype)
    if cautious:
      term = jnp.where(agrees(sign * u, d), term, jnp.zeros_like(term))
    return u + term if sign > 0 else u - term

  return treedef.unflatten([u if k == 0.0 else decay(u, k, *r) for u, (k, *r) in zip(leaves, rows)])


def decayed_leaves(updates: Any, params: Any, reference: Any, mask: Mask):
  """(update leaves, their treedef, (k, θ, θ − θ₀) per leaf; θ − θ₀ None where k = 0)."""
  leaves, treedef = jax.tree.flatten(updates)
  ps = treedef.flatten_up_to(params)
  empty = isinstance(reference, optax.EmptyState)
  refs = [None] * len(leaves) if empty else treedef.flatten_up_to(reference)
  rows = [
    (k, p, None if k == 0.0 else p if r is None else p - r)
    for p, r, k in zip(ps, refs, leaf_multipliers(params, mask))
  ]
  return leaves, treedef, rows


def decay_in_chain(
  weight_decay: Any, *, mask: Mask, reference: Any, state: type, name: str, cautious=False
) -> optax.GradientTransformation:
  """A chain element adding λ_t·k·a⊙(θ − θ₀) to a descent direction (c_t = 1).

  `state` is the NamedTuple ``(schedule_state, reference)`` that marks what the element is
  (`AddL2State`: coupled L2; LAMB's `DecayDirectionState`); `name` names it in errors.
  """
  validation.check_weight_decay(weight_decay)
  check_reference(reference)
  scheduled = validation.is_schedule(weight_decay)

  def init_fn(params):
    check_mask_at_init(params, mask)
    return state(schedule_state(scheduled), init_reference(reference, params))

  def update_fn(updates, opt_state, params=None):
    require_params(params, name)
    if not validation.is_static_zero(weight_decay):
      lam = validation.evaluate(weight_decay, count_of(opt_state.schedule_state))
      updates = add_decay(
        updates, params, opt_state.reference, lam=lam, mask=mask, sign=+1, cautious=cautious
      )
    return updates, state(advance(opt_state.schedule_state), opt_state.reference)

  return optax.GradientTransformation(init_fn, update_fn)


def find_states(opt_state: Any, cls: type | tuple[type, ...]) -> list[Any]:
  """Every sub-state of type `cls` inside a (possibly chained, masked, injected) optax state."""
  is_cls = lambda x: isinstance(x, cls)
  return [leaf for leaf in jax.tree.leaves(opt_state, is_leaf=is_cls) if is_cls(leaf)]
