"""Muon's base step in the two conventions in use, and which leaves each branch decays.

``convention="optax"`` is ``optax.contrib.muon`` itself, built without decay. ``"torch"``
follows ``torch.optim.Muon``: the same quintic Newton–Schulz iteration of a momentum of each
2-D gradient, scaled by √max(1, fan_out/fan_in), but with an EMA without debiasing (Nesterov as
``g.lerp(buf, μ)``) and the normalisation x/max(‖x‖_F, ε) instead of optax's x/(‖x‖_F + ε).
Leaves of other ranks take an Adam step, as in ``optax.contrib.muon`` (torch leaves them to a
separate optimizer).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from wd_jax import validation
from wd_jax.masks import Mask, leaf_multipliers

CONVENTIONS = ("optax", "torch")
DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)  # Jordan's quintic; optax's and torch's default


def muon_leaves(params: Any, dimension_numbers: Any = None) -> list[bool]:
  """Per leaf (in `jax.tree.leaves` order): does the Muon branch step it? As optax's labels:
  2-D leaves, or those `dimension_numbers` (a tree, a prefix or a callable) gives numbers."""
  if dimension_numbers is None:
    return [jnp.ndim(x) == 2 for x in jax.tree.leaves(params)]
  dims = dimension_numbers(params) if callable(dimension_numbers) else dimension_numbers
  is_dims = lambda x: x is None or isinstance(x, optax.contrib.MuonDimensionNumbers)
  on = jax.tree.map(
    lambda d, sub: jax.tree.map(lambda _: d is not None, sub), dims, params, is_leaf=is_dims
  )
  return jax.tree.leaves(on)


def branch_mask(mask: Mask, dimension_numbers: Any, muon: bool) -> Any:
  """The decay multipliers of one branch: `mask`'s on the Muon leaves (`muon`), or 1 on the
  Adam leaves; 0 on the other branch's."""

  def branch(params):
    on = muon_leaves(params, dimension_numbers)
    ks = leaf_multipliers(params, mask) if muon else [1.0] * len(on)
    return jax.tree.structure(params).unflatten([k * (o == muon) for k, o in zip(ks, on)])

  branch.__name__ = "muon leaves" if muon else "adam leaves"
  return branch


def _scale_by_shape(consistent_rms: Any) -> optax.GradientTransformation:
  """√max(1, fan_out/fan_in), or √max(fan_in, fan_out)·consistent_rms, for (in, out) kernels.

  The scaling of optax's ``contrib.muon`` (and torch's ``adjust_lr_fn`` "original" /
  "match_rms_adamw" with consistent_rms 0.2, on torch's (out, in) layout).
  """

  def scale(u):
    fan_in, fan_out = u.shape
    if consistent_rms is None:
      return jnp.sqrt(jnp.maximum(1, fan_out / fan_in)) * u
    return jnp.sqrt(jnp.maximum(fan_in, fan_out)) * consistent_rms * u

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(scale, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _orthogonalize_clamped(ns_coeffs, ns_steps: int, eps: Any) -> optax.GradientTransformation:
  """torch's ``_zeropower_via_newtonschulz`` in the input's dtype (torch casts to bfloat16).

  X ← X/max(‖X‖_F, ε) (transposed when rows > cols), then ``ns_steps`` times
  A = X Xᴴ, X ← a X + (b A + c A²) X.
  """
  a, b, c = ns_coeffs

  def ortho(x):
    transposed = x.shape[0] > x.shape[1]
    if transposed:
      x = x.T
    x = x / jnp.maximum(jnp.linalg.norm(x), jnp.asarray(jnp.real(eps), jnp.real(x).dtype))

    def newton_schulz(_, x):
      gram = x @ x.T.conj()
      return a * x + (b * gram + c * (gram @ gram)) @ x

    x = jax.lax.fori_loop(0, ns_steps, newton_schulz, x)
    return x.T if transposed else x

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(ortho, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


# optax.contrib.muon's options that torch's Muon has no counterpart of, at their defaults.
_OPTAX_ONLY = {
  "adaptive": False,
  "preconditioning": "frobenius",
  "muon_weight_dimension_numbers": None,
}


def muon_base(convention, learning_rate, ns_coeffs, ns_steps, beta, eps, mu_dtype, **options):
  """The complete Muon optimizer without weight decay: ``optax.contrib.muon`` with its decay at
  0 (``"optax"``, every option passed on), or `torch_base` (``"torch"``)."""
  adam_eps = options.pop("adam_eps")
  if convention == "optax":
    if adam_eps is not None:
      raise ValueError(f"adam_eps is the torch convention's (optax's uses eps), got {adam_eps!r}.")
    return optax.contrib.muon(
      learning_rate, ns_coeffs, ns_steps, beta, eps, mu_dtype=mu_dtype, **options
    )
  optax_only = {k: options.pop(k) for k in _OPTAX_ONLY}
  if optax_only != _OPTAX_ONLY:
    raise ValueError(
      f"convention='torch' steps 2-D parameters, Frobenius-normalised: the options only "
      f"optax's has keep their defaults {_OPTAX_ONLY}, got {optax_only}."
    )
  adam_eps = eps if adam_eps is None else adam_eps
  return torch_base(
    learning_rate, ns_coeffs, ns_steps, beta, eps, mu_dtype, adam_eps=adam_eps, **options
  )


def torch_base(
  learning_rate,
  ns_coeffs,
  ns_steps,
  beta,
  eps,
  mu_dtype,
  *,
  adam_eps,
  nesterov,
  consistent_rms,
  adam_learning_rate,
  adam_b1,
  adam_b2,
  adam_eps_root,
):
  """torch's Muon without weight decay (2-D leaves), torch's AdamW without decay (the others)."""
  # torch's EMA buffer is (1−μ) times optax.trace's sum, with Nesterov too; the factor is kept
  # so that the clamp max(‖x‖, ε) sees the same norm as torch.
  muon_branch = optax.chain(
    optax.trace(decay=beta, nesterov=nesterov, accumulator_dtype=mu_dtype),
    optax.scale(1 - beta),
    _orthogonalize_clamped(ns_coeffs, ns_steps, eps),
    _scale_by_shape(consistent_rms),
    optax.scale_by_learning_rate(learning_rate),
  )
  adam_branch = optax.adam(
    adam_learning_rate, adam_b1, adam_b2, adam_eps, adam_eps_root, mu_dtype=mu_dtype
  )
  labels = lambda params: jax.tree.map(lambda x: "muon" if jnp.ndim(x) == 2 else "adam", params)
  return optax.partition({"muon": muon_branch, "adam": adam_branch}, labels)


def check_ns_steps(ns_steps: Any) -> None:
  """An int in [1, 99]; an integer JAX scalar too (`optax.inject_hyperparams` injects it, and
  the iteration is a `fori_loop`), checked where it is concrete."""
  if isinstance(ns_steps, jax.Array) and jnp.issubdtype(ns_steps.dtype, jnp.integer):
    if ns_steps.ndim == 0 and isinstance(ns_steps, jax.core.Tracer):
      return
    ns_steps = int(ns_steps) if ns_steps.ndim == 0 else ns_steps
  validation.check_int("ns_steps", ns_steps, lower=1, upper=99)


def _triple(x: Any) -> tuple[float, float, float] | None:
  try:
    t = tuple(float(v) for v in x)
  except (TypeError, ValueError):
    return None
  return t if len(t) == 3 and all(map(math.isfinite, t)) else None


def check_ns_coeffs(ns_coeffs: Any, convention: str) -> Any:
  """Three finite numbers (a, b, c); for optax's convention also rows of them (one per
  iteration) or the name of one of optax's presets (optax checks the name)."""
  if convention == "optax":
    if isinstance(ns_coeffs, str):
      return ns_coeffs
    try:
      rows = [_triple(r) for r in ns_coeffs]
    except TypeError:
      rows = [None]
    if rows and all(rows) and _triple(ns_coeffs) is None:
      return tuple(rows)
  triple = _triple(ns_coeffs)
  if triple is None:
    raise ValueError(f"ns_coeffs must be three finite numbers (a, b, c), got {ns_coeffs!r}.")
  return triple
