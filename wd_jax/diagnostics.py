"""What weight decay is doing, as pure functions of pytrees (cheap enough to log in training).

Every function works under `jax.jit`/`jax.pmap` and returns arrays; per-leaf results
are dicts keyed by parameter path (``"encoder/0/kernel"``, see `wd_jax.masks`). The closed-form
equilibrium predictions (`predicted_angular_update`, `predicted_equilibrium_norm`) live in
`wd_jax.equilibrium` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from wd_jax._decay import find_states
from wd_jax.equilibrium import (  # noqa: F401  (re-exported: part of the diagnostics)
  predicted_angular_update,
  predicted_equilibrium_norm,
)
from wd_jax.masks import param_paths
from wd_jax.moments import TrackedAdamL2State, first_moment_split, norm_share

PyTree = Any


def _by_path(fn, tree: PyTree) -> dict[str, jax.Array]:
  return {p: fn(x) for p, x in zip(param_paths(tree), jax.tree.leaves(tree))}


def _ratio(num: jax.Array, den: jax.Array, where_zero: float) -> jax.Array:
  """num/den, or `where_zero` where den is 0 (with no NaN in either branch's gradient)."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), where_zero)


def global_norm(tree: PyTree) -> jax.Array:
  """‖tree‖₂ over all leaves.

  Args:
    tree: a pytree of arrays (params, gradients, updates).

  Returns:
    A scalar array.

  Example:
    >>> print(wd_jax.diagnostics.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
    5.0

  References:
    big_vision: a train step returns ``l2_params``, ``l2_grads`` and ``l2_updates`` as a
    matter of course.
  """
  return optax.tree.norm(tree)


def leaf_norms(tree: PyTree) -> dict[str, jax.Array]:
  """‖leaf‖₂ for every leaf, keyed by path.

  Args:
    tree: a pytree of arrays.

  Returns:
    Path (``"encoder/0/kernel"``) -> scalar array.

  Example:
    >>> norms = wd_jax.diagnostics.leaf_norms({"a": jnp.array([3.0]), "b": jnp.array([4.0])})
    >>> {k: float(v) for k, v in norms.items()}
    {'a': 3.0, 'b': 4.0}

  References:
    big_vision: a train step returns ``l2_params``, ``l2_grads`` and ``l2_updates`` as a
    matter of course.
  """
  return _by_path(lambda x: jnp.sqrt(jnp.sum(jnp.square(x))), tree)


def angular_update(old: PyTree, new: PyTree) -> dict[str, jax.Array]:
  """The angle (radians) each leaf turned in one step: arccos(⟨w, w'⟩ / (‖w‖‖w'‖)).

  For a scale-invariant weight this, not ‖Δw‖, is the size of the step
  (Kosson et al. 2023). Near 0 arccos loses precision; the angle is computed as
  2·atan2(‖ŵ − ŵ'‖, ‖ŵ + ŵ'‖) on the unit vectors, which is exact there.

  Args:
    old: the params before the step.
    new: the params after it (the same tree structure).

  Returns:
    Path -> the angle in radians, a scalar array.

  Example:
    >>> old, new = {"w": jnp.array([1.0, 0.0])}, {"w": jnp.array([1.0, 1.0])}
    >>> angle = wd_jax.diagnostics.angular_update(old, new)["w"]
    >>> print(f"{float(angle):.4f}")  # π/4
    0.7854

  References:
    Kosson, Messmer & Jaggi, "Rotational equilibrium: how weight decay balances learning
    across neural networks", ICML 2024 (arXiv:2305.17212, 2023).
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

  (van Laarhoven 2017; Zhang et al. 2019.) Only meaningful for scale-invariant leaves (a
  weight followed by a normalisation layer).

  Args:
    learning_rate: α, a float or a scalar array.
    params: the params.

  Returns:
    Path -> α/‖w‖², a scalar array.

  Example:
    >>> lr = wd_jax.diagnostics.effective_learning_rate(0.1, {"w": jnp.full(4, 0.5)})
    >>> print(f"{float(lr['w']):.3f}")  # ‖w‖² = 1
    0.100

  References:
    van Laarhoven, "L2 regularization versus batch and weight normalization", 2017.
    Zhang, Wang, Xu & Grosse, "Three mechanisms of weight decay regularization", ICLR 2019.
  """
  return _by_path(lambda x: learning_rate / jnp.maximum(jnp.sum(jnp.square(x)), 1e-30), params)


def zero_fraction(tree: PyTree) -> jax.Array:
  """Fraction of all elements that are exactly 0.0 (the sparsity that L1's prox gives).

  Args:
    tree: a pytree of arrays.

  Returns:
    A scalar array in [0, 1].

  Example:
    >>> print(wd_jax.diagnostics.zero_fraction({"w": jnp.array([0.0, 1.0, 0.0, 2.0])}))
    0.5

  References:
    Daubechies, Defrise & De Mol, CPAM 2004 (ISTA: the soft-threshold step that gives exact
    zeros, `wd_jax.prox_l1`).
  """
  leaves = jax.tree.leaves(tree)
  zeros = sum(jnp.sum(x == 0) for x in leaves)
  return zeros / sum(x.size for x in leaves)


def l2_share_by_leaf(opt_state: Any) -> dict[str, jax.Array]:
  """‖m_l2‖ / (‖m_loss‖ + ‖m_l2‖) per leaf, for an optimizer built with ``track_moments=True``.

  Args:
    opt_state: a state holding one `wd_jax.TrackedAdamL2State`.

  Returns:
    Path -> the share, a scalar array in [0, 1] (0 where both parts are 0).

  Raises:
    ValueError: the state keeps no split (`wd_jax.first_moment_split`).

  Example:
    >>> opt = wd_jax.adam_l2(0.1, 0.5, track_moments=True)
    >>> p = {"w": jnp.array([2.0, -1.0])}
    >>> _, state = opt.update({"w": jnp.array([1.0, 1.0])}, opt.init(p), p)
    >>> shares = wd_jax.diagnostics.l2_share_by_leaf(state)
    >>> {k: round(float(v), 3) for k, v in shares.items()}
    {'w': 0.442}

  References:
    Bjorck, Weinberger & Gomes, "Understanding decoupled and early weight decay", AAAI 2021.
  """
  m_loss, m_l2 = first_moment_split(opt_state)
  return {
    p: norm_share(a, b)
    for p, a, b in zip(param_paths(m_loss), jax.tree.leaves(m_loss), jax.tree.leaves(m_l2))
  }


def _tracked_state(opt_state: Any) -> Any:
  found = find_states(opt_state, TrackedAdamL2State)
  if len(found) != 1:
    raise ValueError(
      "pollution needs an optimizer built with track_moments=True (one tracked Adam state); "
      f"found {len(found)}."
    )
  return found[0]


def pollution(
  opt_state: Any, *, b2: float = 0.999, eps: float = 1e-8, per_leaf: bool = False
) -> dict[str, jax.Array]:
  r"""How far coupled L2 turns Adam's first moment and step from the loss-only ones.

  With the exact split m = m_loss + m_l2 (``track_moments=True``) and Adam's preconditioner
  d = √v̂ + ε of the same state (v̂ = v/(1 − β2^t)):

  .. math::

    \text{m\_cos} = \cos(m, m_\text{loss}), \quad
    \text{m\_ratio} = \frac{\lVert m_{l2} \rVert}{\lVert m_\text{loss} \rVert}, \quad
    \text{step\_cos} = \cos\Big(\frac{m}{d}, \frac{m_\text{loss}}{d}\Big), \quad
    \text{step\_ratio} = \frac{\lVert m_{l2}/d \rVert}{\lVert m_\text{loss}/d \rVert}

  ``step_cos`` and ``step_ratio`` compare the step Adam takes with the step it would take from
  the loss's first moment alone, with the same preconditioner: the first-moment pollution,
  apart from what λθ does to v. The bias correction of m multiplies both parts alike and
  cancels; ε makes d the step's own.

  Why not the share ‖m_l2‖/(‖m_loss‖ + ‖m_l2‖) (`wd_jax.l2_share`): at a stationary point of
  the regularised loss the mean gradient vanishes, E[g + λθ] = 0, so m_loss ≈ −m_l2 and the
  share tends to ~0.5 on *any* fitted model, whatever λ — a sign of convergence, not of
  takeover. The cosines and ratios keep their meaning: a cosine near 1 and a ratio near 0 mean
  the step is the loss's; m_cos → −1 (and a ratio → 1) means λθ cancels the loss's direction
  in m. Read them early in training, and per layer.

  Args:
    opt_state: a state holding one `wd_jax.TrackedAdamL2State`.
    b2: Adam's β2 (the v̂ bias correction).
    eps: Adam's ε.
    per_leaf: also the four quantities per leaf, keyed ``"<name>/<path>"``.

  Returns:
    ``m_cos``, ``m_ratio``, ``step_cos``, ``step_ratio`` (scalar arrays; a cosine is 1 and a
    ratio 0 where the loss part is 0), and per leaf with `per_leaf`.

  Raises:
    ValueError: the state keeps no split.

  Example:
    >>> from wd_jax.moments import TrackedAdamL2State
    >>> s = TrackedAdamL2State(jnp.array(1), {"w": jnp.array([1.0, 0.0])},
    ...   {"w": jnp.array([-1.0, 1.0])}, {"w": jnp.array([1.0, 1.0])}, None, None)
    >>> q = wd_jax.diagnostics.pollution(s, b2=0.0, eps=0.0)
    >>> print({k: round(float(v), 4) for k, v in q.items()})
    {'m_cos': 0.0, 'm_ratio': 1.4142, 'step_cos': 0.0, 'step_ratio': 1.4142}

  References:
    Bjorck, Weinberger & Gomes, "Understanding decoupled and early weight decay", AAAI 2021
    (λθ in the first moment). Loshchilov & Hutter, "Decoupled weight decay regularization",
    ICLR 2019.
  """
  state = _tracked_state(opt_state)
  count = jnp.maximum(jnp.asarray(state.count), 1)

  def parts(m_loss, m_l2, nu):
    m_loss, m_l2 = m_loss.astype(nu.dtype), m_l2.astype(nu.dtype)
    d = jnp.sqrt(nu / (1 - jnp.asarray(b2, nu.dtype) ** count)) + eps
    return (m_loss, m_l2, m_loss / d, m_l2 / d)

  leaves = [
    parts(a, b, v)
    for a, b, v in zip(
      jax.tree.leaves(state.mu_loss), jax.tree.leaves(state.mu_l2), jax.tree.leaves(state.nu)
    )
  ]

  def measures(items):
    def dot(i, j):
      return sum(jnp.sum(jnp.real(x[i] * jnp.conj(x[j]))) for x in items)

    out = {}
    for name, (lo, l2) in (("m", (0, 1)), ("step", (2, 3))):
      aa, bb, ab = dot(lo, lo), dot(l2, l2), dot(lo, l2)
      tot = jnp.sqrt(jnp.maximum(aa + 2 * ab + bb, 0.0))
      na = jnp.sqrt(aa)
      denom = tot * na
      out[f"{name}_cos"] = _ratio(aa + ab, denom, 1.0)
      out[f"{name}_ratio"] = _ratio(jnp.sqrt(bb), na, 0.0)
    return out

  result = measures(leaves) if leaves else {}
  if per_leaf:
    for path, item in zip(param_paths(state.mu_loss), leaves):
      for k, v in measures([item]).items():
        result[f"{k}/{path}"] = v
  return result


def step_deviation(updates: PyTree, loss_only_updates: PyTree) -> dict[str, jax.Array]:
  """How far a step is from the step without weight decay: ``step_cos`` = cos(u, u₀) and
  ``step_ratio`` = ‖u − u₀‖/‖u₀‖, u₀ the loss-only step.

  For decoupled decay, which has no memory, u₀ is the same optimizer state's update with λ = 0
  at this step (what `wd_jax.engine.train`'s diagnostics step computes for injected
  hyperparameters):
  the two quantities then measure the decay step against the loss step, the same way
  `pollution` measures coupled L2's.

  Args:
    updates: the step's update u.
    loss_only_updates: the update u₀ without weight decay.

  Returns:
    ``step_cos`` and ``step_ratio`` (1 and 0 when u₀ is 0).

  Example:
    >>> u0 = {"w": jnp.array([1.0, 0.0])}
    >>> d = wd_jax.diagnostics.step_deviation({"w": jnp.array([1.0, 1.0])}, u0)
    >>> print({k: round(float(v), 4) for k, v in d.items()})
    {'step_cos': 0.7071, 'step_ratio': 1.0}

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.
  """
  diff = jax.tree.map(jnp.subtract, updates, loss_only_updates)
  n0, nu, nd = optax.tree.norm(loss_only_updates), optax.tree.norm(updates), optax.tree.norm(diff)
  dot = optax.tree.real(optax.tree.vdot(updates, loss_only_updates))
  denom = n0 * nu
  return {
    "step_cos": _ratio(dot, denom, 1.0),
    "step_ratio": _ratio(nd, n0, 0.0),
  }


def step_diagnostics(
  old_params: PyTree,
  new_params: PyTree,
  grads: PyTree,
  opt_state: Any = None,
  *,
  per_leaf: bool = True,
  b2: float = 0.999,
  eps: float = 1e-8,
) -> dict[str, jax.Array]:
  """The measurements a training step returns as a matter of course (flat ``name -> scalar``).

  ``param_norm``, ``grad_norm``, ``update_norm``, ``zero_fraction`` and, when the
  optimizer tracks its first moment, ``l2_share`` and the `pollution` measures (``m_cos``,
  ``m_ratio``, ``step_cos``, ``step_ratio``); with `per_leaf`, also ``param_norm/<path>`` and
  ``angular_update/<path>`` for every leaf and ``l2_share/<path>`` and the pollution measures
  per leaf when tracked.

  Args:
    old_params: the params before the step.
    new_params: the params after it.
    grads: the step's gradients.
    opt_state: the optimizer state after the step (None: no L2 share).
    per_leaf: add the per-leaf entries.
    b2: the tracked Adam's β2 (for `pollution`).
    eps: the tracked Adam's ε (for `pollution`).

  Returns:
    A flat dict name -> scalar array.

  Example:
    >>> opt = wd_jax.adam_l2(0.1, 0.5, track_moments=True)
    >>> p, g = {"w": jnp.array([2.0, -1.0])}, {"w": jnp.array([1.0, 1.0])}
    >>> u, state = opt.update(g, opt.init(p), p)
    >>> m = wd_jax.diagnostics.step_diagnostics(p, optax.apply_updates(p, u), g, state)
    >>> sorted(k for k in m if "/" not in k)  # doctest: +NORMALIZE_WHITESPACE
    ['grad_norm', 'l2_share', 'm_cos', 'm_ratio', 'param_norm', 'step_cos', 'step_ratio',
     'update_norm', 'zero_fraction']

  References:
    big_vision: a train step returns ``l2_params``, ``l2_grads`` and ``l2_updates`` as a
    matter of course.
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
      out["l2_share"] = norm_share(m_loss, m_l2)
      out.update(pollution(opt_state, b2=b2, eps=eps, per_leaf=per_leaf))
  if per_leaf:
    out.update({f"param_norm/{k}": v for k, v in leaf_norms(new_params).items()})
    out.update(
      {f"angular_update/{k}": v for k, v in angular_update(old_params, new_params).items()}
    )
    if tracked:
      out.update({f"l2_share/{k}": v for k, v in l2_share_by_leaf(opt_state).items()})
  return out


def relative_sharpness(
  loss_fn: Any,
  params: PyTree,
  key: jax.Array,
  *,
  radius: float = 0.05,
  num_directions: int = 8,
  mask: Any = None,
  relative: bool = True,
) -> jax.Array:
  r"""How far the loss rises when each weight moves by a fixed fraction of its own norm.

  .. math::

    S(w) = \frac{1}{K} \sum_{k=1}^{K} \Big[ \tfrac{1}{2}\big(L(w + \rho\,\varepsilon_k)
      + L(w - \rho\,\varepsilon_k)\big) - L(w) \Big], \qquad
    \varepsilon_{k,l} = \lVert w_l \rVert \, u_{k,l}

  with u_{k,l} uniform on the unit sphere of leaf l (one direction per leaf and draw, leaves
  outside `mask` not moved). The ± pair cancels the first-order term, so S ≈ ½ρ² Σ_l ‖w_l‖²
  u_lᵀ H_l u_l: curvature in units of the weights' own scale. It is scale-invariant: scaling a
  scale-invariant leaf (one followed by a normalisation, whose loss depends on its direction
  only) scales its perturbation with it and leaves S unchanged. ``relative=False`` moves each
  leaf by ‖ε_l‖ = √(size of the leaf) instead (Keskar et al.'s absolute sharpness): a leaf
  shrunk by weight decay then looks sharper, although the network computes the same function.

  Args:
    loss_fn: ``params -> scalar`` loss (e.g. the training loss on a fixed batch).
    params: the weights w.
    key: the PRNG key of the directions.
    radius: ρ, the perturbation's size as a fraction of each leaf's norm.
    num_directions: K, the number of ± direction pairs averaged.
    mask: which leaves move: None (all), a pytree of bools or multipliers like `params` (a
      prefix), or a function ``params -> such a pytree`` (e.g. `wd_jax.default_mask`).
    relative: ε_l of norm ‖w_l‖ (True, scale-invariant) or √(size of w_l) (False).

  Returns:
    S, a scalar array (≥ 0 near a minimum).

  Raises:
    ValueError: a radius that is not a number > 0, or num_directions not an int ≥ 1.

  Example:
    >>> loss = lambda p: 0.5 * 3.0 * jnp.sum(p["w"] ** 2)  # L = ½·a‖w‖², a = 3
    >>> p = {"w": jnp.array([1.0, 2.0, 2.0])}  # ‖w‖ = 3: S = ½ρ²·a·‖w‖² exactly
    >>> s = wd_jax.diagnostics.relative_sharpness(loss, p, jax.random.key(0), radius=0.1)
    >>> print(f"{float(s):.4f}")  # ½ · 0.01 · 3 · 9
    0.1350

  References:
    Bjorck, Weinberger & Gomes, "Understanding decoupled and early weight decay", AAAI 2021
    (traditional generalisation metrics miss early decay's effect; a scale-invariant one does).
    Keskar et al., "On large-batch training for deep learning: generalization gap and sharp
    minima", ICLR 2017. Jiang et al., "Fantastic generalization measures and where to find
    them", ICLR 2020 (magnitude-aware sharpness).
  """
  from wd_jax import validation
  from wd_jax.masks import leaf_multipliers

  validation.check_number("radius", radius, lower=0.0, lower_inclusive=False, allow_schedule=False)
  validation.check_int("num_directions", num_directions, lower=1)
  leaves, treedef = jax.tree.flatten(params)
  moved = [m > 0 for m in leaf_multipliers(params, mask)] if mask is not None else None
  moved = moved or [True] * len(leaves)

  def direction(k):
    out = []
    for x, on, kk in zip(leaves, moved, jax.random.split(k, len(leaves))):
      if not on:
        out.append(jnp.zeros_like(x))
        continue
      u = jax.random.normal(kk, x.shape, x.dtype)
      scale = jnp.sqrt(jnp.sum(x * x)) if relative else jnp.sqrt(jnp.asarray(x.size, x.dtype))
      out.append(u * (scale / jnp.maximum(jnp.sqrt(jnp.sum(u * u)), 1e-30)))
    return out

  def rise(k):
    eps = direction(k)
    move = lambda sign: jax.tree.unflatten(
      treedef, [x + sign * radius * e for x, e in zip(leaves, eps)]
    )
    return 0.5 * (loss_fn(move(1.0)) + loss_fn(move(-1.0)))

  rises = jax.lax.map(rise, jax.random.split(key, num_directions))
  return jnp.mean(rises) - loss_fn(params)
