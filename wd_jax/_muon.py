"""Muon's base step in the two conventions in use: optax's ``contrib.muon`` and torch's ``Muon``.

Both orthogonalise a momentum of the gradient of each 2-D parameter with the same quintic
Newton–Schulz iteration and scale it by √max(1, fan_out/fan_in); they differ in the
momentum (optax: a debiased EMA, Nesterov mixing debiased terms; torch: an EMA without
debiasing, Nesterov as ``g.lerp(buf, μ)``) and in the normalisation before the iteration
(optax: x/(‖x‖_F + ε), torch: x/max(‖x‖_F, ε)). Leaves of other ranks take an Adam step,
as in ``optax.contrib.muon`` (torch leaves them to a separate optimizer).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from wd_jax import validation

CONVENTIONS = ("optax", "torch")
DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)  # Jordan's quintic; optax's and torch's default


def _labels(params: Any) -> Any:
  return jax.tree.map(lambda x: "muon" if jnp.ndim(x) == 2 else "adam", params)


def _dimension_numbers(updates: Any) -> Any:
  # Every leaf the muon branch sees is 2-D (reduction axis 0, output axis 1), as optax's default.
  return jax.tree.map(lambda _: optax.contrib.MuonDimensionNumbers(), updates)


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
    for _ in range(ns_steps):
      gram = x @ x.T.conj()
      x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if transposed else x

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(ortho, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def muon_base(
  learning_rate: Any,
  *,
  convention: str,
  beta: Any,
  nesterov: bool,
  ns_coeffs: Any,
  ns_steps: int,
  eps: Any,
  mu_dtype: Any,
  consistent_rms: Any,
  adam_learning_rate: Any,
  adam_b1: Any,
  adam_b2: Any,
  adam_eps: Any,
  adam_eps_root: Any,
) -> optax.GradientTransformation:
  """The complete Muon optimizer without weight decay (2-D leaves Muon, the others Adam)."""
  if convention == "optax":
    orth = optax.contrib.scale_by_muon(
      ns_coeffs=ns_coeffs,
      ns_steps=ns_steps,
      beta=beta,
      eps=eps,
      mu_dtype=mu_dtype,
      nesterov=nesterov,
      weight_dimension_numbers=_dimension_numbers,
    )
  else:
    # torch's EMA buffer is (1−μ) times optax.trace's sum, with Nesterov too; the factor is
    # kept so that the clamp max(‖x‖, ε) sees the same norm as torch.
    orth = optax.chain(
      optax.trace(decay=beta, nesterov=nesterov, accumulator_dtype=mu_dtype),
      optax.scale(1 - beta),
      _orthogonalize_clamped(ns_coeffs, ns_steps, eps),
    )
  muon_branch = optax.chain(
    orth, _scale_by_shape(consistent_rms), optax.scale_by_learning_rate(learning_rate)
  )
  adam_branch = optax.adam(
    adam_learning_rate,
    b1=adam_b1,
    b2=adam_b2,
    eps=adam_eps,
    eps_root=adam_eps_root,
    mu_dtype=mu_dtype,
    nesterov=nesterov and convention == "optax",  # optax's Adam branch follows `nesterov`
  )
  return optax.partition({"muon": muon_branch, "adam": adam_branch}, _labels)


def check_ns_steps(ns_steps: Any) -> int:
  hint = " (under optax.inject_hyperparams pass static_args=('ns_steps',))"
  validation.check_int("ns_steps", ns_steps, lower=1, upper=99, hint=hint)
  return ns_steps


def check_ns_coeffs(ns_coeffs: Any) -> tuple[float, float, float]:
  try:
    a, b, c = (float(x) for x in ns_coeffs)
  except (TypeError, ValueError):
    raise ValueError(
      f"ns_coeffs must be three finite numbers (a, b, c), got {ns_coeffs!r}."
    ) from None
  if not all(math.isfinite(x) for x in (a, b, c)):
    raise ValueError(f"ns_coeffs must be three finite numbers (a, b, c), got {ns_coeffs!r}.")
  return a, b, c
