"""Ready optimizers: optax's base optimizers with wd_jax's weight decay, each in one call.

Every decoupled recipe is `with_weight_decay` around a complete base optimizer built from
optax's pieces, so its decay sits after the whole step whatever the base does, and takes
the same options: ``coupling`` (what multiplies λ), ``cautious``, ``reference`` (L2-SP)
and ``mask``. Every `learning_rate` and `weight_decay` takes a float or an optax schedule;
every numeric hyperparameter can be injected with `optax.inject_hyperparams` (integer ones
that set shapes or loop counts, ``ns_steps``, ``min_dim_size_to_factor``, ``warmup_steps``,
need ``static_args``). The README's table collects what multiplies λ in each.

Default λ per recipe: the value the reference implementation ships where it decays by
default (``optax.adamw``/``nadamw`` 1e-4, ``optax.lion`` 1e-3, torch ``Muon`` 0.1), else
the value of the method's paper (LAMB 0.01, Adan 0.02), else none (Adafactor and
schedule-free AdamW: 0.0, as torch and optax). The Adam/SGD recipes share adamw's 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from wd_jax import _validation
from wd_jax._recipe import ScalarOrSchedule, _adam_direction, _check_adam, _decay
from wd_jax.masks import Mask
from wd_jax.moments import scale_by_adam_l2, scale_by_adam_stable
from wd_jax.other_optimizers import adafactor, adan, lamb, lion, muon, schedule_free_adamw
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
  amsgrad: bool = False,
  mask: Mask = None,
  reference: Any = None,
  l2_in_first_moment: bool = True,
  l2_in_second_moment: bool = True,
  track_moments: bool = False,
) -> optax.GradientTransformation:
  """Adam with coupled L2: torch ``Adam(weight_decay=λ)`` when both flags are True.

  ``g' = g + λ_t·m·(θ − θ₀)``; m, v are Adam's EMAs of g' and |g'|²;
  θ ← θ − α_t m̂/(√(v̂ + ε_root) + ε). λ is multiplied by α_t *and* rescaled by 1/(√v̂ + ε),
  and mixed into m's history. The flags give the 2×2 ablation of REFERENCES §2;
  `track_moments` keeps the exact split m = m_loss + m_l2 for `first_moment_split` /
  `l2_share` (one extra buffer). θ₀ = 0 unless `reference` (L2-SP).

  Example:
    >>> opt = wd_jax.adam_l2(1e-3, 1e-4, track_moments=True)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> updates, state = opt.update({"w": jnp.ones((2, 2))}, opt.init(params), params)
    >>> print(f"{float(wd_jax.l2_share(state)):.6f}")  # fraction of m that is L2
    0.000100

  Args:
    learning_rate: α, a float or a schedule.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4, as ``optax.adamw``).
    b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad: as `optax.adam` / `optax.amsgrad`.
    mask: which leaves get the L2 gradient, and by how much.
    reference: None, ``"init"`` or a pytree θ₀ (L2-SP, coupled).
    l2_in_first_moment, l2_in_second_moment, track_moments: see `scale_by_adam_l2`.
  """
  _check_adam(learning_rate, b1, b2, eps, eps_root, nesterov, amsgrad)
  lr = optax.scale_by_learning_rate(learning_rate)
  if l2_in_first_moment and l2_in_second_moment and not track_moments:
    return optax.chain(
      add_l2(weight_decay, mask=mask, reference=reference),
      _adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad),
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
  weight_decay: ScalarOrSchedule = 1e-4,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  nesterov: bool = False,
  amsgrad: bool = False,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """Adam with decoupled weight decay (``optax.adamw`` / torch ``AdamW`` at ``coupling="lr"``).

  θ ← θ − c_t λ_t m a⊙(θ − θ₀) − α_t m̂/(√(v̂ + ε_root) + ε), with c_t from `coupling`:
  ``"lr"`` α_t, ``"schedule"`` α_t/α_peak (Loshchilov & Hutter, Composer), ``"constant"`` 1,
  ``"corrected"`` α_t²/α_peak (AdamC); a = 1[update and θ − θ₀ agree in sign] when
  `cautious`, else 1; θ₀ = 0 unless `reference`. The decay never enters m or v.

  Example:
    >>> opt = wd_jax.adamw(0.1, 0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)  # zero gradient: θ (1 − α λ)
    [1.9]

  Args:
    learning_rate: α, a float or a schedule.
    weight_decay: λ ≥ 0, a float or a schedule (default 1e-4, as ``optax.adamw``).
    b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad: as `optax.adamw` / `optax.amsgrad`.
    coupling, peak_learning_rate, mask, cautious, reference: see `with_weight_decay`.
  """
  _check_adam(learning_rate, b1, b2, eps, eps_root, nesterov, amsgrad)
  base = optax.chain(
    _adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad),
    optax.scale_by_learning_rate(learning_rate),
  )
  return _decay(
    base, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
  )


def nadamw(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule = 1e-4,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any = None,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """AdamW with Nesterov momentum (``optax.nadamw``): `adamw` with ``nesterov=True``.

  m̂_t = β1 m_t/(1−β1^{t+1}) + (1−β1) g_t/(1−β1^t) (Dozat 2016); the decay, its coupling and
  the other options are `adamw`'s (λ multiplied by α_t at the default ``coupling="lr"``).

  Example:
    >>> opt = wd_jax.nadamw(1e-3, 1e-4, coupling="schedule")
  """
  return adamw(
    learning_rate,
    weight_decay,
    b1=b1,
    b2=b2,
    eps=eps,
    eps_root=eps_root,
    mu_dtype=mu_dtype,
    nesterov=True,
    coupling=coupling,
    peak_learning_rate=peak_learning_rate,
    mask=mask,
    cautious=cautious,
    reference=reference,
  )


def _momentum(momentum: Any, nesterov: bool, accumulator_dtype: Any):
  # Only a host 0/None skips the buffer: inside inject_hyperparams momentum is an array at
  # init and a tracer at update, and both must build the same state.
  if momentum is None or _validation.is_static_zero(momentum):
    return optax.identity()
  return optax.trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)


def _check_sgd(learning_rate, momentum) -> None:
  _validation.check_learning_rate(learning_rate)
  if momentum is not None:
    _validation.check_beta("momentum", momentum)


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
  """SGD with coupled L2: torch ``SGD(weight_decay=λ, momentum=μ, nesterov=...)``.

  g' = g + λ_t·m·(θ − θ₀); b ← μ b + g'; θ ← θ − α_t b (nesterov: θ ← θ − α_t (g' + μ b)).
  λ is multiplied by α_t and accumulated in the momentum buffer.

  Example:
    >>> opt = wd_jax.sgd_l2(0.1, 0.5, momentum=0.9)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(p + u)
    [1.9]
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
  """SGD with decoupled weight decay: θ ← θ − c_t λ_t m a⊙(θ − θ₀) − α_t b, b the momentum of g.

  c_t as in `adamw`'s `coupling`. With μ = 0 and ``coupling="lr"`` this equals
  `sgd_l2` (Loshchilov & Hutter, Prop. 1); with momentum it does not.

  Example:
    >>> opt = wd_jax.sgdw(0.1, 0.5, momentum=0.9, cautious=True)
  """
  _check_sgd(learning_rate, momentum)
  base = optax.chain(
    _momentum(momentum, nesterov, accumulator_dtype), optax.scale_by_learning_rate(learning_rate)
  )
  return _decay(
    base, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, reference
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
  amsgrad: bool = False,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Adam with stable weight decay (SWD, "AdamS"; Xie et al. 2023).

  θ ← θ (1 − α_t λ_t m / √v̄) − α_t m̂/(√(v̂ + ε_root) + ε), v̄ the mean of v̂ over all
  elements (with amsgrad, of the running max used as denominator): λ is multiplied by α_t
  and by 1/√v̄, never mixed into the moments.

  Example:
    >>> opt = wd_jax.adams(1e-3, 1e-4)
    >>> state = opt.init({})  # an empty tree has no v̄: no decay, no division by zero
  """
  _check_adam(learning_rate, b1, b2, eps, eps_root, nesterov, amsgrad)
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


def get_optimizer(name: str, **hyperparams: Any) -> optax.GradientTransformation:
  """The recipe called `name` (one of `OPTIMIZERS`) built with `hyperparams`.

  Example:
    >>> opt = wd_jax.get_optimizer("lion", learning_rate=1e-4, weight_decay=0.1)
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}.")
  return OPTIMIZERS[name](**hyperparams)
