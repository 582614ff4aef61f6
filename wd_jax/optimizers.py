"""Ready optimizers: optax's base optimizers with wd_jax's weight decay, each in one call.

Every decoupled recipe is `with_weight_decay` around a complete base optimizer built from
optax's pieces, so its decay sits after the whole step whatever the base does, and takes
the same options: ``coupling`` (what multiplies λ), ``cautious``, ``reference`` (L2-SP)
and ``mask``. Every `learning_rate` (≥ 0) and `weight_decay` takes a float or an optax
schedule; every numeric hyperparameter can be injected with `optax.inject_hyperparams`
(integer ones that set shapes or loop counts, ``ns_steps``, ``min_dim_size_to_factor``,
``warmup_steps``, and mask callables need ``static_args``). The README's table collects what
multiplies λ in each.

A recipe named as an optax optimizer (``adamw``, ``nadamw``, ``lion``, ``lamb``, ``adan``,
``adafactor``, and ``muon`` / ``schedule_free_adamw`` of ``optax.contrib``) takes its
positional arguments and defaults, λ included (0 for LAMB, Adan and Muon, None for
Adafactor), so ``optax.X(*args, **kw)`` and ``wd_jax.X(*args, **kw)`` are one optimizer;
wd-jax's own options are keywords. The recipes without an optax namesake (``adam_l2``,
``adams``, ``sgdw``, ``sgd_l2``) take λ second, default 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from wd_jax import validation
from wd_jax._recipe import (
  ScalarOrSchedule,
  adam_direction,
  check_adam,
  scaled_and_decayed,
  second_argument,
)
from wd_jax.factored import adafactor
from wd_jax.masks import Mask
from wd_jax.moments import scale_by_adam_l2, scale_by_adam_stable
from wd_jax.other_optimizers import adan, lamb, lion, muon
from wd_jax.schedule_free import schedule_free_adamw
from wd_jax.transforms import add_l2


def adam_l2(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule = 1e-4,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  nesterov: bool = False,
  amsgrad: bool | str = False,
  mask: Mask = None,
  reference: Any = None,
  l2_in_first_moment: bool = True,
  l2_in_second_moment: bool = True,
  track_moments: bool = False,
) -> optax.GradientTransformation:
  r"""Adam with coupled L2: torch ``Adam(weight_decay=λ)`` when both flags are True.

  With k the leaf's mask multiplier and θ₀ = 0 unless `reference` (L2-SP):

  .. math::

    g' = g + \lambda_t k (\theta - \theta_0), \quad
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g', \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g'^2,

    \theta \leftarrow \theta
      - \alpha_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon}

  λ is multiplied by α_t *and* rescaled by 1/(√v̂ + ε), and mixed into the history of m
  (the first moment). The flags give the 2×2 ablation of Bjorck et al. (2021), λθ in or out
  of m and of v (see `scale_by_adam_l2`); `track_moments` keeps the exact split
  m = m_loss + m_l2 for `first_moment_split` / `l2_share` (one extra buffer).

  Args:
    learning_rate: α, a float or a schedule.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4, as ``optax.adamw``).
    b1, b2, eps, eps_root, mu_dtype, nesterov: as `optax.adam`.
    amsgrad: ``True``/``"optax"`` (the max of v̂, ``optax.amsgrad``) or ``"torch"`` (the max of
      v, debiased at the current step: ``torch.optim.Adam(amsgrad=True)``).
    mask: which leaves get the L2 gradient, and by how much.
    reference: None, ``"init"`` or a pytree θ₀ (L2-SP, coupled).
    l2_in_first_moment, l2_in_second_moment, track_moments: see `scale_by_adam_l2`.

  Returns:
    An `optax.GradientTransformation`: ``chain(add_l2, scale_by_adam, scale_by_learning_rate)``
    with both flags and no tracking (torch's order), else ``chain(scale_by_adam_l2,
    scale_by_learning_rate)``. Its `update` needs the params.

  Example:
    >>> opt = wd_jax.adam_l2(1e-3, 1e-4, track_moments=True)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> updates, state = opt.update({"w": jnp.ones((2, 2))}, opt.init(params), params)
    >>> print(f"{float(wd_jax.l2_share(state)):.6f}")  # fraction of m that is L2
    0.000100

  References:
    Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015. PyTorch
    ``torch.optim.Adam(weight_decay=λ)``. Loshchilov & Hutter, "Decoupled weight decay
    regularization", ICLR 2019. Bjorck, Weinberger & Gomes, "Understanding decoupled and
    early weight decay", AAAI 2021 (L2 in the first moment).
  """
  validation.check_learning_rate(learning_rate)
  check_adam(b1, b2, eps, eps_root, nesterov, amsgrad)
  lr = optax.scale_by_learning_rate(learning_rate)
  if l2_in_first_moment and l2_in_second_moment and not track_moments:
    return optax.chain(
      add_l2(weight_decay, mask=mask, reference=reference),
      adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad),
      lr,
    )
  return optax.chain(
    scale_by_adam_l2(
      weight_decay,
      b1=b1,
      b2=b2,
      eps=eps,
      eps_root=eps_root,
      mu_dtype=mu_dtype,
      nesterov=nesterov,
      amsgrad=amsgrad,
      mask=mask,
      reference=reference,
      l2_in_first_moment=l2_in_first_moment,
      l2_in_second_moment=l2_in_second_moment,
      track_moments=track_moments,
    ),
    lr,
  )


def adamw(
  learning_rate: ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  weight_decay: ScalarOrSchedule = 1e-4,
  mask: Mask = None,
  *,
  nesterov: bool = False,
  amsgrad: bool | str = False,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam with decoupled weight decay: ``optax.adamw``'s arguments, and torch ``AdamW``.

  With m̂, v̂ Adam's debiased moments of the loss gradient alone:

  .. math::

    \theta \leftarrow \theta
      - \alpha_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon}
      - c_t \lambda_t k\, a \odot (\theta - \theta_0)

  λ is multiplied by c_t from `coupling`: ``"lr"`` α_t (torch, optax), ``"schedule"``
  α_t/α_peak (Loshchilov & Hutter, Composer), ``"constant"`` 1, ``"corrected"`` α_t²/α_peak
  (AdamC); k is the mask multiplier; a = 1[update and θ − θ₀ agree in sign] when `cautious`,
  else 1; θ₀ = 0 unless `reference`. The decay never enters m or v. The positional arguments
  and their defaults are ``optax.adamw``'s, so ``optax.adamw(*args, **kw)`` and
  ``wd_jax.adamw(*args, **kw)`` are the same optimizer; wd-jax's options are keywords.

  Args:
    learning_rate: α ≥ 0, a float or a schedule (a warmup may start at 0).
    b1, b2, eps, eps_root, mu_dtype: as `optax.adamw`.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4, as ``optax.adamw``).
    mask: which leaves to decay, and by how much (`optax.adamw`'s bool trees and callables,
      and wd_jax's multipliers and rules, see `wd_jax.masks`).
    nesterov: as `optax.adamw`.
    amsgrad: ``True`` or ``"optax"``: divide by the running max of the bias-corrected v̂
      (``optax.scale_by_amsgrad``); ``"torch"``: by the running max of the raw v, divided
      by the current bias correction (``torch.optim.AdamW(amsgrad=True)``).
    coupling, peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs`: `with_weight_decay` around
    ``chain(scale_by_adam, scale_by_learning_rate)``; its `update` needs the params.

  Raises:
    ValueError: a bad argument, named; a `b1` outside [0, 1) says that λ is a keyword now.

  Example:
    >>> opt = wd_jax.adamw(0.1, weight_decay=0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient: θ (1 − α λ)
    [1.9]
    >>> lr = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)
    >>> opt = wd_jax.adamw(lr, weight_decay=0.1, coupling="schedule", peak_learning_rate=1e-3)

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019. Kingma & Ba,
    "Adam", ICLR 2015. Reddi, Kale & Kumar, "On the convergence of Adam and beyond", ICLR
    2018 (AMSGrad). Defazio et al., "Why gradients rapidly increase near the end of
    training", 2025 (``"corrected"``). Chen et al., "Cautious weight decay",
    arXiv:2510.12402, 2025.
  """
  validation.check_learning_rate(learning_rate)
  with second_argument("adamw", "b1"):
    check_adam(b1, b2, eps, eps_root, nesterov, amsgrad)
  direction = adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad)
  return scaled_and_decayed(
    direction, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
  )


def nadamw(
  learning_rate: ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  weight_decay: ScalarOrSchedule = 1e-4,
  mask: Mask = None,
  *,
  nesterov: bool = True,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamW with Nesterov momentum: ``optax.nadamw``'s arguments; `adamw` with ``nesterov=True``.

  .. math::

    \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t},
    \quad
    \theta \leftarrow \theta
      - \alpha_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon}
      - c_t \lambda_t k\, a \odot (\theta - \theta_0)

  The decay, its coupling and the other options are `adamw`'s: λ is multiplied by c_t
  (α_t at the default ``coupling="lr"``, as ``optax.nadamw``).

  Args:
    learning_rate: α ≥ 0, a float or a schedule.
    b1, b2, eps, eps_root, mu_dtype: as `optax.nadamw`.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4, as ``optax.nadamw``).
    mask: which leaves to decay, and by how much.
    nesterov: as `optax.nadamw` (True).
    coupling, peak_learning_rate, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs` (as `adamw`).

  Example:
    >>> opt = wd_jax.nadamw(0.1, weight_decay=0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient: θ (1 − α λ)
    [1.9]

  References:
    Dozat, "Incorporating Nesterov momentum into Adam", ICLR workshop 2016. Loshchilov &
    Hutter, "Decoupled weight decay regularization", ICLR 2019.
  """
  with second_argument("nadamw", "b1"):
    validation.check_beta("b1", b1)
  return adamw(
    learning_rate,
    b1,
    b2,
    eps,
    eps_root,
    mu_dtype,
    weight_decay,
    mask,
    nesterov=nesterov,
    coupling=coupling,
    peak_learning_rate=peak_learning_rate,
    cautious=cautious,
    reference=reference,
  )


def _momentum(momentum: Any, nesterov: bool, accumulator_dtype: Any):
  # Only a host 0/None skips the buffer: inside inject_hyperparams momentum is an array at
  # init and a tracer at update, and both must build the same state.
  if momentum is None or validation.is_static_zero(momentum):
    return optax.identity()
  return optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)


def _check_sgd(learning_rate, momentum) -> None:
  validation.check_learning_rate(learning_rate)
  if momentum is not None:
    validation.check_beta("momentum", momentum)


def sgd_l2(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule = 1e-4,
  *,
  momentum: float | None = 0.0,
  nesterov: bool = False,
  accumulator_dtype: Any = None,
  mask: Mask = None,
  reference: Any = None,
) -> optax.GradientTransformation:
  r"""SGD with coupled L2: torch ``SGD(weight_decay=λ, momentum=μ, nesterov=...)``.

  .. math::

    g' = g + \lambda_t k (\theta - \theta_0), \quad b \leftarrow \mu b + g', \quad
    \theta \leftarrow \theta - \alpha_t b
    \quad (\text{nesterov: } \theta \leftarrow \theta - \alpha_t (g' + \mu b))

  λ is multiplied by α_t and accumulated in the momentum buffer (so by ≈ α_t/(1 − μ) at
  steady state).

  Args:
    learning_rate: α, a float or a schedule.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4).
    momentum: μ (0 or None: no momentum buffer).
    nesterov: Nesterov momentum, as torch and ``optax.trace(nesterov=True)``.
    accumulator_dtype: dtype of the momentum buffer (None: the params').
    mask: which leaves get the L2 gradient, and by how much.
    reference: None, ``"init"`` or a pytree θ₀ (L2-SP, coupled).

  Returns:
    An `optax.GradientTransformation`: ``chain(add_l2, trace, scale_by_learning_rate)``;
    its `update` needs the params.

  Example:
    >>> opt = wd_jax.sgd_l2(0.1, 0.5, momentum=0.9)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # θ − α λ θ at the first step (b = λθ)
    [1.9]

  References:
    PyTorch ``torch.optim.SGD(weight_decay=λ)``. Sutskever, Martens, Dahl & Hinton, "On the
    importance of initialization and momentum in deep learning", ICML 2013.
  """
  _check_sgd(learning_rate, momentum)
  return optax.chain(
    add_l2(weight_decay, mask=mask, reference=reference),
    _momentum(momentum, nesterov, accumulator_dtype),
    optax.scale_by_learning_rate(learning_rate),
  )


def sgdw(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule = 1e-4,
  *,
  momentum: float | None = 0.0,
  nesterov: bool = False,
  accumulator_dtype: Any = None,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with decoupled weight decay: the momentum buffer holds the loss gradient only.

  .. math::

    b \leftarrow \mu b + g, \quad
    \theta \leftarrow \theta - \alpha_t b - c_t \lambda_t k\, a \odot (\theta - \theta_0)

  λ is multiplied by c_t as in `adamw`'s `coupling` (α_t by default). With μ = 0 and
  ``coupling="lr"`` this equals `sgd_l2` (Loshchilov & Hutter, Prop. 1); with momentum it
  does not.

  Args:
    learning_rate: α, a float or a schedule.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4).
    momentum: μ (0 or None: no momentum buffer).
    nesterov: Nesterov momentum (``optax.trace(nesterov=True)``).
    accumulator_dtype: dtype of the momentum buffer (None: the params').
    coupling, peak_learning_rate, mask, cautious, reference: see `with_weight_decay`.

  Returns:
    An `optax.GradientTransformationExtraArgs`: `with_weight_decay` around
    ``chain(trace, scale_by_learning_rate)``; its `update` needs the params.

  Example:
    >>> opt = wd_jax.sgdw(0.1, 0.5, momentum=0.9)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient: θ (1 − α λ)
    [1.9]

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019 (SGDW).
  """
  _check_sgd(learning_rate, momentum)
  direction = _momentum(momentum, nesterov, accumulator_dtype)
  return scaled_and_decayed(
    direction, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
  )


def adams(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule = 1e-4,
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
  r"""Adam with stable weight decay (SWD, "AdamS"; Xie et al. 2023).

  .. math::

    \theta \leftarrow \theta \Big(1 - \frac{\alpha_t \lambda_t k}{\sqrt{\bar v_t}}\Big)
      - \alpha_t \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon}

  v̄ is the mean of v̂ over all parameter elements (with amsgrad, of the running max used as
  denominator): λ is multiplied by α_t and by 1/√v̄, never mixed into the moments. Where
  v̄ = 0 (no gradient yet, or no parameters) no decay is applied.

  Args:
    learning_rate: α, a float or a schedule.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4).
    b1, b2, eps, eps_root, mu_dtype, nesterov: as `optax.adam`.
    amsgrad: ``True``/``"optax"`` (the max of v̂, ``optax.amsgrad``) or ``"torch"`` (the max of
      v, debiased at the current step: ``torch.optim.Adam(amsgrad=True)``).
    mask: which leaves to decay, and by how much.

  Returns:
    An `optax.GradientTransformation`: ``chain(scale_by_adam_stable,
    scale_by_learning_rate)``; its `update` needs the params.

  Example:
    >>> opt = wd_jax.adams(0.1, 0.5)
    >>> p, g = jnp.array([1.0, 2.0]), jnp.array([0.5, -0.5])
    >>> u, _ = opt.update(g, opt.init(p), p)  # v̄ = 0.25: θ (1 − 0.1) − 0.1 sign(g)
    >>> print([round(float(x), 3) for x in p + u])
    [0.8, 1.9]

  References:
    Xie, Xu, Zhang, Sato & Sugiyama, "On the overlooked pitfalls of weight decay and how to
    mitigate them: a gradient-norm perspective", NeurIPS 2023.
  """
  validation.check_learning_rate(learning_rate)  # the rest: scale_by_adam_stable
  return optax.chain(
    scale_by_adam_stable(
      weight_decay,
      b1=b1,
      b2=b2,
      eps=eps,
      eps_root=eps_root,
      mu_dtype=mu_dtype,
      nesterov=nesterov,
      amsgrad=amsgrad,
      mask=mask,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
  "adam_l2": adam_l2,
  "adamw": adamw,
  "nadamw": nadamw,
  "sgd_l2": sgd_l2,
  "sgdw": sgdw,
  "adams": adams,
  "lion": lion,
  "lamb": lamb,
  "adan": adan,
  "muon": muon,
  "adafactor": adafactor,
  "schedule_free_adamw": schedule_free_adamw,
}


# The recipes whose λ or mask keyword is optax's other name (configs use one name for all).
_KEYWORDS = {
  "adafactor": {"weight_decay": "weight_decay_rate", "mask": "weight_decay_mask"},
  "muon": {"mask": "weight_decay_mask"},
}


def get_optimizer(name: str, **hyperparams: Any) -> optax.GradientTransformation:
  """The recipe called `name` (one of `OPTIMIZERS`) built with `hyperparams`.

  What multiplies λ is the recipe's (see each recipe and :doc:`/semantics`). ``weight_decay``
  and ``mask`` name λ and the mask of every recipe here, also where optax's namesake calls
  them otherwise (`adafactor`'s ``weight_decay_rate`` and ``weight_decay_mask``, `muon`'s
  ``weight_decay_mask``).

  Args:
    name: a key of `OPTIMIZERS`, e.g. ``"adamw"``, ``"adam_l2"``, ``"lion"``.
    **hyperparams: the recipe's arguments, by keyword (``learning_rate``,
      ``weight_decay``, ``mask``, ``coupling``, ...).

  Returns:
    The recipe's optax transformation.

  Raises:
    ValueError: `name` is not a recipe (the valid names are listed); a bad hyperparameter
      (the recipe's own message).

  Example:
    >>> opt = wd_jax.get_optimizer("adamw", learning_rate=0.1, weight_decay=0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)
    [1.9]

  References:
    The recipe's own (e.g. `adamw`): each names the implementation it matches.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}.")
  names = _KEYWORDS.get(name, {})
  return OPTIMIZERS[name](**{names.get(k, k): v for k, v in hyperparams.items()})
