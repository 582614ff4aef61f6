"""Adam with coupled L2 split into its parts, and stable weight decay (SWD).

Adam's first moment is a linear EMA started at zero, so under coupled L2 it splits
exactly into an EMA of the loss gradient and an EMA of the L2 gradient:
m = m_loss + m_l2 (Bjorck et al. 2021; REFERENCES §2). Tracking the two parts costs
one extra buffer the size of the parameters (m_loss and m_l2 replace m).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from wd_jax import _decay, validation
from wd_jax._recipe import adam_direction, amsgrad_kind, check_adam
from wd_jax.decoupled import DecayDirectionState, DecoupledWeightDecayState
from wd_jax.masks import Mask
from wd_jax.transforms import AddL1State, AddL2State


class AdamL2State(NamedTuple):
  """State of `scale_by_adam_l2` without ``track_moments``: the L2 gradient mixed in.

  Attributes:
    count: the step count, shape ``()``, int32.
    mu: the first moment (with λθ when ``l2_in_first_moment``), dtype ``mu_dtype``.
    nu: the second moment (with λθ when ``l2_in_second_moment``).
    nu_max: the running max of v̂ (``amsgrad=True``/``"optax"``) or of v (``"torch"``),
      else ``optax.EmptyState()``.
    reference: θ₀ for L2 toward a reference point, else ``optax.EmptyState()``.

  Example:
    >>> state = wd_jax.scale_by_adam_l2(1e-4).init({"w": jnp.ones(2)})
    >>> type(state).__name__, state._fields
    ('AdamL2State', ('count', 'mu', 'nu', 'nu_max', 'reference'))
  """

  count: chex.Array  # shape=(), dtype=jnp.int32.
  mu: optax.Updates  # First moment (with λθ when l2_in_first_moment), dtype mu_dtype.
  nu: optax.Updates  # Second moment (with λθ when l2_in_second_moment).
  nu_max: Any  # Running max of v̂ (amsgrad "optax") or of v ("torch"), else EmptyState.
  reference: Any  # θ₀ for L2 toward a reference point, else EmptyState.


class TrackedAdamL2State(NamedTuple):
  """State of `scale_by_adam_l2` with ``track_moments=True``: m kept as its two exact parts.

  Attributes:
    count: the step count, shape ``()``, int32.
    mu_loss: the EMA of the loss gradient g, dtype ``mu_dtype``.
    mu_l2: the EMA of the L2 gradient λθ (zeros when it is not in m), dtype ``mu_dtype``.
    nu: the second moment.
    nu_max: the running max of v̂ (``amsgrad=True``/``"optax"``) or of v (``"torch"``),
      else ``optax.EmptyState()``.
    reference: θ₀ for L2 toward a reference point, else ``optax.EmptyState()``.

  Example:
    >>> opt = wd_jax.scale_by_adam_l2(0.5, track_moments=True)
    >>> p = {"w": jnp.array([2.0, -1.0])}
    >>> _, state = opt.update({"w": jnp.array([1.0, 1.0])}, opt.init(p), p)
    >>> print(state.mu_loss["w"], state.mu_l2["w"])  # (1 − β1) g and (1 − β1) λθ
    [0.1 0.1] [ 0.1  -0.05]
  """

  count: chex.Array  # shape=(), dtype=jnp.int32.
  mu_loss: optax.Updates  # EMA of the loss gradient g, dtype mu_dtype.
  mu_l2: optax.Updates  # EMA of the L2 gradient λθ (zeros when not in m), dtype mu_dtype.
  nu: optax.Updates  # Second moment.
  nu_max: Any  # Running max of v̂ (amsgrad "optax") or of v ("torch"), else EmptyState.
  reference: Any  # θ₀ for L2 toward a reference point, else EmptyState.


class _AdamL2Settings(NamedTuple):
  """The constants of one `scale_by_adam_l2`: where r goes, and Adam's own."""

  b1: Any
  b2: Any
  eps: Any
  eps_root: Any
  mu_dtype: Any
  nesterov: bool
  amsgrad: str | None  # None, "optax" (max of v̂) or "torch" (max of v, then debiased)
  in_m: bool  # r enters the first moment
  in_v: bool  # r enters the second moment
  track: bool  # m is kept as m_loss + m_l2


def _l2_terms(lam, mask, updates, params, reference) -> tuple[list, Any, list]:
  """(gradient leaves, treedef, r = λ_t k (θ − θ₀) per leaf in its dtype; None if undecayed)."""
  grads, treedef, rows = _decay.decayed_leaves(updates, params, reference, mask)
  if validation.is_static_zero(lam):
    return grads, treedef, [None] * len(grads)
  coef = functools.partial(_decay.coefficient, "constant", None, None, lam)
  rs = [
    None if k == 0.0 else (coef(k, None, p) * d).astype(g.dtype)
    for g, (k, p, d) in zip(grads, rows)
  ]
  return grads, treedef, rs


def _first_moment(s: _AdamL2Settings, g, r, stored):
  """m_t, what enters it (g or g + r), and the buffers to store (m, or m_loss and m_l2)."""
  gm = g + r if (r is not None and s.in_m) else g
  if not s.track:
    m = optax.tree.update_moment(gm, stored[0], s.b1, 1)
    return m, gm, (optax.tree.cast(m, s.mu_dtype),)
  m_loss = optax.tree.update_moment(g, stored[0], s.b1, 1)
  m_l2 = optax.tree.update_moment(r, stored[1], s.b1, 1) if gm is not g else stored[1]
  return m_loss + m_l2, gm, (optax.tree.cast(m_loss, s.mu_dtype), optax.tree.cast(m_l2, s.mu_dtype))


def _adam_l2_leaf(s: _AdamL2Settings, count, g, r, *moments):
  """One leaf's step u and new buffers (m or m_loss, m_l2; v; v̂'s running max or None)."""
  *stored, nu, nu_max = moments
  m, gm, new_m = _first_moment(s, g, r, stored)
  gv = g + r if (r is not None and s.in_v) else g
  new_nu = optax.tree.update_moment_per_elem_norm(gv, nu, s.b2, 2)
  if s.nesterov:
    m_hat = s.b1 * optax.tree.bias_correction(m, s.b1, optax.safe_increment(count)) + (
      1 - s.b1
    ) * optax.tree.bias_correction(gm, s.b1, count)
  else:
    m_hat = optax.tree.bias_correction(m, s.b1, count)
  if r is not None and not s.in_m:
    m_hat = m_hat + r
  v_hat = optax.tree.bias_correction(new_nu, s.b2, count)
  if s.amsgrad == "optax":  # the running max of v̂
    v_hat = nu_max = jnp.maximum(nu_max, v_hat)
  elif s.amsgrad == "torch":  # the running max of v, then debiased
    nu_max = jnp.maximum(nu_max, new_nu)
    v_hat = optax.tree.bias_correction(nu_max, s.b2, count)
  den = jnp.sqrt(v_hat + s.eps_root) + s.eps
  if r is not None and not s.in_v:
    # Where the loss's √v̂ is smaller than λθ (down to v̂ = 0: an embedding row no batch
    # touched, a dead unit), λθ is divided by its own size, as Adam divides a lone gradient,
    # never by a √v̂ the loss barely fed (λθ/ε would be a step of λθ/ε·α).
    den = jnp.maximum(den, jnp.abs(r) + s.eps)
  return m_hat / den, (*new_m, optax.tree.cast_like(new_nu, nu), nu_max)


def scale_by_adam_l2(
  weight_decay: float | optax.Schedule = 1e-4,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  nesterov: bool = False,
  amsgrad: bool | str = False,
  l2_in_first_moment: bool = True,
  l2_in_second_moment: bool = True,
  track_moments: bool = False,
  mask: Mask = None,
  reference: Any = None,
) -> optax.GradientTransformation:
  r"""Adam scaling with a coupled L2 gradient r = λ_t k (θ − θ₀) routed into m and/or v.

  With t the 1-based step, g the loss gradient, k the leaf's mask multiplier, [·] 1 if the
  flag is set and 0 if not, and the square taken as the squared modulus (complex-safe):

  .. math::

    r = \lambda_t k (\theta - \theta_0), \quad
    m_t = \beta_1 m_{t-1} + (1-\beta_1)(g + r\,[\text{in } m]), \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2)\,|g + r\,[\text{in } v]|^2

    \hat m_t = \frac{m_t}{1-\beta_1^t}, \quad \hat v_t = \frac{v_t}{1-\beta_2^t}, \quad
    u_t = \frac{\hat m_t + r\,[\text{not in } m]}{\sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon}
    \quad (\text{not in } v\text{: see below})

  (nesterov: m̂_t = β1 m_t/(1−β1^{t+1}) + (1−β1)(g + r·[in m])/(1−β1^t); amsgrad:
  v̂_t ← max(v̂_{t−1}, v̂_t), or torch's max_{s≤t} v_s/(1−β2^t)).

  The "not in v" arms divide by ``max(√v̂, |r|) + ε`` instead of √v̂ + ε. Where the loss's
  √v̂ is at least λθ's size, that is the loss's own preconditioner — the arm's meaning. Where it
  is smaller, down to v̂ = 0 (an embedding row no batch touched, or that a few batches touched
  once; a unit dead from the start), dividing by it would make λθ's step up to λθ/ε: a rarely
  fed √v̂ is no preconditioner, and the arm would diverge by construction. There λθ is divided
  by its own size, as Adam divides a lone gradient (about α per coordinate), which is also the
  size "λθ in v" gives it there (√(v̂ + r²) ≈ ``|r|``). What the arm ablates is unchanged: λθ's
  share of v wherever the loss gradient is at least as large as λθ, and the cancellation of g
  and λθ inside v (``|g + r|²`` → 0 at a stationary point of the regularised loss).

  Both flags True is torch ``Adam(weight_decay=λ)`` before the lr (``optax.chain(
  optax.add_decayed_weights(λ), optax.scale_by_adam(...))``); the four flag settings are the
  2×2 ablation of Bjorck et al. (2021). λ is multiplied by the mask multiplier only here;
  the learning rate (chained after) and 1/√v̂ multiply it afterwards.

  Args:
    weight_decay: λ ≥ 0 or a schedule.
    b1, b2, eps, eps_root: Adam's constants (as in `optax.scale_by_adam`).
    mu_dtype: dtype of the first-moment buffer(s); None keeps the params' dtype.
    nesterov: Nesterov momentum (Dozat 2016), as `optax.scale_by_adam(nesterov=True)`.
    amsgrad: ``True``/``"optax"``: divide by the running max of v̂ (``optax.scale_by_amsgrad``);
      ``"torch"``: by the running max of v, debiased at the current step (torch's).
    l2_in_first_moment: feed r into m (else add it to the debiased m at this step only).
    l2_in_second_moment: feed r into v.
    track_moments: keep m as m_loss + m_l2 (`first_moment_split`, `l2_share`); one extra
      parameter-sized buffer.
    mask: which leaves get the L2 gradient, and by how much.
    reference: None, ``"init"`` or a pytree θ₀: the L2 gradient is λ(θ − θ₀) (L2-SP).

  Returns:
    An `optax.GradientTransformation` whose state is an `AdamL2State` (a
    `TrackedAdamL2State` with `track_moments`); chain ``optax.scale_by_learning_rate`` after
    it. Its `update` needs the params.

  Raises:
    ValueError: a bad λ, β, ε or reference, or nesterov and amsgrad together (at
      construction); no params at `update`.

  Example:
    >>> opt = wd_jax.scale_by_adam_l2(0.5, l2_in_first_moment=False, l2_in_second_moment=False)
    >>> p, g = jnp.array([1.0, 1.0]), jnp.array([1.0, 0.25])
    >>> u, _ = opt.update(g, opt.init(p), p)  # step 1: (g + λθ) / (max(|g|, |λθ|) + ε)
    >>> print([round(float(x), 3) for x in u])
    [1.5, 1.5]

  References:
    Kingma & Ba, "Adam", ICLR 2015. Bjorck, Weinberger & Gomes, "Understanding decoupled and
    early weight decay", AAAI 2021 (λθ in the first moment; the split m = m_loss + m_l2).
    PyTorch ``torch.optim.Adam(weight_decay=λ)`` (both flags set).
  """
  validation.check_weight_decay(weight_decay)
  check_adam(b1, b2, eps, eps_root, nesterov, amsgrad)
  _decay.check_reference(reference)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
  settings = _AdamL2Settings(
    b1=b1,
    b2=b2,
    eps=eps,
    eps_root=eps_root,
    mu_dtype=mu_dtype,
    nesterov=nesterov,
    amsgrad=amsgrad_kind(amsgrad),
    in_m=l2_in_first_moment,
    in_v=l2_in_second_moment,
    track=track_moments,
  )
  state_type = TrackedAdamL2State if track_moments else AdamL2State

  def init_fn(params):
    _decay.check_mask_at_init(params, mask)
    mus = [optax.tree.zeros_like(params, dtype=mu_dtype) for _ in range(1 + track_moments)]
    nu = optax.tree.zeros_like(params)
    nu_max = optax.tree.zeros_like(params) if settings.amsgrad else optax.EmptyState()
    ref = _decay.init_reference(reference, params)
    return state_type(jnp.zeros([], jnp.int32), *mus, nu, nu_max, ref)

  def update_fn(updates, state, params=None):
    _decay.require_params(params, "scale_by_adam_l2")
    count = optax.safe_increment(state.count)
    lam = validation.evaluate(weight_decay, state.count)
    grads, treedef, rs = _l2_terms(lam, mask, updates, params, state.reference)
    buffers = [
      [None] * len(grads) if isinstance(b, optax.EmptyState) else treedef.flatten_up_to(b)
      for b in state[1:-1]
    ]
    step = functools.partial(_adam_l2_leaf, settings, count)
    out = [step(g, r, *bufs) for g, r, *bufs in zip(grads, rs, *buffers)]
    new = [treedef.unflatten(list(b)) for b in zip(*(leaf for _, leaf in out))] or [
      treedef.unflatten([]) for _ in buffers
    ]
    if not settings.amsgrad:
      new[-1] = state.nu_max
    return treedef.unflatten([u for u, _ in out]), state_type(count, *new, state.reference)

  return optax.GradientTransformation(init_fn, update_fn)


class StableWeightDecayState(NamedTuple):
  """State of `scale_by_adam_stable`: optax's Adam (or AMSGrad) state and λ's step count.

  Attributes:
    adam: optax's ``ScaleByAdamState`` (``ScaleByAmsgradState`` with amsgrad).
    schedule_state: ``optax.ScaleByScheduleState(count)`` when λ is a schedule, else
      ``optax.EmptyState()``.

  Example:
    >>> state = wd_jax.scale_by_adam_stable(1e-4).init({"w": jnp.ones(2)})
    >>> type(state.adam).__name__, state.schedule_state
    ('ScaleByAdamState', EmptyState())
  """

  adam: optax.OptState  # ScaleByAdamState, or ScaleByAmsgradState with amsgrad.
  schedule_state: Any  # ScaleByScheduleState(count) when λ is a schedule, else EmptyState.


def scale_by_adam_stable(
  weight_decay: float | optax.Schedule = 1e-4,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  nesterov: bool = False,
  amsgrad: bool | str = False,
  mask: Mask = None,
) -> optax.GradientTransformation:
  r"""Adam scaling plus stable weight decay (SWD; Xie et al. NeurIPS 2023, "AdamS").

  .. math::

    u = \frac{\hat m}{\sqrt{\hat v + \epsilon_\text{root}} + \epsilon}
      + \frac{\lambda_t k\, \theta}{\sqrt{\bar v}}

  with k the leaf's mask multiplier and v̄ the mean of the bias-corrected
  second moment v̂ (with amsgrad: of its running max, the denominator actually used) over
  *all* parameter elements. Followed by the lr scaling this is
  θ ← θ (1 − α_t λ_t / √v̄) − α_t m̂/(√v̂ + ε): λ is multiplied by α_t and by 1/√v̄,
  never mixed into the moments. Where v̄ = 0 (all gradients zero so far, or no
  parameters at all) no decay is applied.

  Args:
    weight_decay: λ ≥ 0 or a schedule.
    b1, b2, eps, eps_root, mu_dtype, nesterov: as `optax.scale_by_adam`.
    amsgrad: ``True``/``"optax"`` or ``"torch"``, as `scale_by_adam_l2` (v̄ is then the mean
      of the debiased running max, the denominator used).
    mask: which leaves to decay, and by how much.

  Returns:
    An `optax.GradientTransformation` whose state is a `StableWeightDecayState`; chain
    ``optax.scale_by_learning_rate`` after it. Its `update` needs the params.

  Raises:
    ValueError: a bad λ, β or ε, or nesterov and amsgrad together (at construction).

  Example:
    >>> opt = wd_jax.scale_by_adam_stable(0.5)
    >>> p, g = jnp.array([1.0, 2.0]), jnp.array([0.5, -0.5])
    >>> u, _ = opt.update(g, opt.init(p), p)  # v̄ = 0.25: u = sign(g) + λθ/0.5
    >>> print(u.round(3))
    [2. 1.]

  References:
    Xie, Xu, Zhang, Sato & Sugiyama, "On the overlooked pitfalls of weight decay and how to
    mitigate them: a gradient-norm perspective", NeurIPS 2023.
  """
  validation.check_weight_decay(weight_decay)
  check_adam(b1, b2, eps, eps_root, nesterov, amsgrad)
  adam = adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad)
  scheduled = validation.is_schedule(weight_decay)

  def init_fn(params):
    _decay.check_mask_at_init(params, mask)
    return StableWeightDecayState(adam.init(params), _decay.schedule_state(scheduled))

  def update_fn(updates, state, params=None):
    _decay.require_params(params, "scale_by_adam_stable")
    steps, adam_state = adam.update(updates, state.adam, params)
    lam = validation.evaluate(weight_decay, _decay.count_of(state.schedule_state))
    new_state = StableWeightDecayState(adam_state, _decay.advance(state.schedule_state))
    kind = amsgrad_kind(amsgrad)
    if kind == "optax":
      v_hats = jax.tree.leaves(adam_state.nu_max)  # already debiased, as used
    else:  # v, or torch's running max of v, debiased
      raw = adam_state.nu_max if kind == "torch" else adam_state.nu
      v_hats = [x / (1 - b2**adam_state.count).astype(x.dtype) for x in jax.tree.leaves(raw)]
    size = sum(x.size for x in v_hats)
    if size == 0 or validation.is_static_zero(lam):  # nothing to decay (an empty tree has no v̄)
      return steps, new_state
    dtype = functools.reduce(jnp.promote_types, [_decay.coef_dtype(x) for x in v_hats])
    nu_mean = sum(jnp.sum(jnp.real(x).astype(dtype)) for x in v_hats) / size
    inv = jnp.where(nu_mean > 0, 1.0 / jnp.sqrt(jnp.where(nu_mean > 0, nu_mean, 1.0)), 0.0)
    lam = jnp.asarray(validation.real(lam), dtype) * inv  # λ_t/√v̄
    steps = _decay.add_decay(steps, params, optax.EmptyState(), lam=lam, mask=mask, sign=+1)
    return steps, new_state

  return optax.GradientTransformation(init_fn, update_fn)


def first_moment_split(opt_state: Any) -> tuple[optax.Updates, optax.Updates]:
  """``(m_loss, m_l2)``: Adam's first moment split into loss and L2 parts (m = m_loss + m_l2).

  Works on any state that contains one `scale_by_adam_l2(track_moments=True)` (e.g.
  ``adam_l2(..., track_moments=True)``, also inside `optax.inject_hyperparams`),
  under `jax.jit` and inside `jax.pmap`. The moments are the raw (not bias-corrected)
  EMAs; bias correction scales both parts alike.

  Args:
    opt_state: an optimizer state holding exactly one `TrackedAdamL2State`.

  Returns:
    ``(m_loss, m_l2)``, two pytrees shaped like the params.

  Raises:
    ValueError: the state has no tracked first moment.

  Example:
    >>> opt = wd_jax.adam_l2(0.1, 0.5, track_moments=True)
    >>> p = {"w": jnp.array([2.0, -1.0])}
    >>> _, state = opt.update({"w": jnp.array([1.0, 1.0])}, opt.init(p), p)
    >>> m_loss, m_l2 = wd_jax.first_moment_split(state)
    >>> print(m_loss["w"], m_l2["w"])  # m = m_loss + m_l2 after one step: (1 − β1)(g + λθ)
    [0.1 0.1] [ 0.1  -0.05]

  References:
    Bjorck, Weinberger & Gomes, "Understanding decoupled and early weight decay", AAAI 2021.
  """
  found = _decay.find_states(opt_state, TrackedAdamL2State)
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


def norm_share(m_loss: Any, m_l2: Any) -> chex.Array:
  """‖m_l2‖ / (‖m_loss‖ + ‖m_l2‖) of two trees (or leaves), 0 where both are 0."""
  a, b = optax.tree.norm(m_loss), optax.tree.norm(m_l2)
  total = a + b
  return jnp.where(total > 0, b / jnp.where(total > 0, total, 1.0), 0.0)


def l2_share(opt_state: Any) -> chex.Array:
  """‖m_l2‖ / (‖m_loss‖ + ‖m_l2‖) over the whole parameter tree (0 when both are 0).

  Measured for optimizers built with ``track_moments=True``; exactly 0 for wd_jax's
  decoupled optimizers (`with_weight_decay` and every recipe built on it, `adams`): their
  decay never enters a moment buffer, provided the optimizer they wrap adds none itself.
  Per-leaf and per-layer shares are in `wd_jax.diagnostics`.

  Args:
    opt_state: the optimizer's state (chained, masked or injected states are searched).

  Returns:
    A scalar array in [0, 1].

  Example:
    >>> opt = wd_jax.adam_l2(0.1, 0.5, track_moments=True)
    >>> p = {"w": jnp.array([2.0, -1.0])}
    >>> _, state = opt.update({"w": jnp.array([1.0, 1.0])}, opt.init(p), p)
    >>> print(f"{float(wd_jax.l2_share(state)):.3f}")  # ‖m_l2‖ / (‖m_loss‖ + ‖m_l2‖)
    0.442
    >>> opt = wd_jax.adamw(1e-3, weight_decay=0.1)
    >>> print(wd_jax.l2_share(opt.init({"w": jnp.ones(2)})))
    0.0

  Raises:
    ValueError: the optimizer is coupled (L2 or L1 in the moments) but untracked; or the
      state holds no wd_jax decay at all (e.g. optax's own ``chain(add_decayed_weights,
      scale_by_adam, ...)``, whose state does not record what entered the moments), so
      the share cannot be known.

  References:
    Bjorck, Weinberger & Gomes, "Understanding decoupled and early weight decay", AAAI 2021.
  """
  if _decay.find_states(opt_state, TrackedAdamL2State):
    return norm_share(*first_moment_split(opt_state))
  if _decay.find_states(opt_state, (AddL2State, AddL1State, AdamL2State)):
    raise ValueError(
      "l2_share of a coupled optimizer needs track_moments=True "
      "(e.g. wd_jax.adam_l2(lr, wd, track_moments=True)) to measure the L2 part of m."
    )
  decoupled = (DecoupledWeightDecayState, StableWeightDecayState, DecayDirectionState)
  if _decay.find_states(opt_state, decoupled):
    return jnp.zeros([], jnp.float32)
  raise ValueError(
    "l2_share cannot know the L2 share of this optimizer: its state holds no wd_jax weight "
    f"decay (found state types: {_state_types(opt_state)}), so what entered its moment "
    "buffers is not recorded (e.g. optax.chain(optax.add_decayed_weights(λ), "
    "optax.scale_by_adam(), ...) mixes λθ into m without a trace). Use "
    "wd_jax.adam_l2(lr, λ, track_moments=True) to measure it, or a wd_jax decoupled optimizer."
  )
