"""Ready optimizers: each an `optax.chain` of optax's pieces and wd_jax's decay transforms.

Every `learning_rate` and `weight_decay` takes a float or an optax schedule. The
docstrings say which factors multiply λ; the README's table collects them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from wd_jax import _validation
from wd_jax.masks import Mask
from wd_jax.moments import scale_by_adam_l2, scale_by_adam_stable
from wd_jax.transforms import add_l2, decoupled_weight_decay

ScalarOrSchedule = float | optax.Schedule


def _check_adam(learning_rate, b1, b2, eps) -> None:
  _validation.check_learning_rate(learning_rate)
  _validation.check_beta("b1", b1)
  _validation.check_beta("b2", b2)
  _validation.check_number("eps", eps, lower=0.0, allow_schedule=False)


def _check_momentum(momentum) -> None:
  _validation.check_beta("momentum", momentum)


def adam_l2(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  mask: Mask = None,
  l2_in_first_moment: bool = True,
  l2_in_second_moment: bool = True,
  track_moments: bool = False,
) -> optax.GradientTransformation:
  """Adam with coupled L2: torch ``Adam(weight_decay=λ)`` when both flags are True.

  ``g' = g + λ_t·m·θ``; m, v are Adam's EMAs of g' and g'²; θ ← θ − α_t m̂/(√v̂ + ε).
  λ is multiplied by α_t *and* rescaled by 1/(√v̂ + ε), and mixed into m's history.
  The flags give the 2×2 ablation of REFERENCES §2; `track_moments` keeps the exact
  split m = m_loss + m_l2 for `first_moment_split` / `l2_share` (one extra buffer).

  Example:
    >>> opt = wd_jax.adam_l2(1e-3, 1e-4, track_moments=True)
    >>> state = opt.init(params)
    >>> updates, state = opt.update(grads, state, params)
    >>> wd_jax.l2_share(state)  # fraction of m that is L2
  """
  _check_adam(learning_rate, b1, b2, eps)
  lr = optax.scale_by_learning_rate(learning_rate)
  if l2_in_first_moment and l2_in_second_moment and not track_moments:
    return optax.chain(add_l2(weight_decay, mask=mask), optax.scale_by_adam(b1, b2, eps), lr)
  return optax.chain(
    scale_by_adam_l2(
      weight_decay,
      b1=b1,
      b2=b2,
      eps=eps,
      mask=mask,
      l2_in_first_moment=l2_in_first_moment,
      l2_in_second_moment=l2_in_second_moment,
      track_moments=track_moments,
    ),
    lr,
  )


def adamw(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Adam with decoupled weight decay.

  θ ← θ − c_t λ_t m θ − α_t m̂/(√v̂ + ε), with c_t from `coupling`: ``"lr"`` α_t (torch
  ``AdamW``, ``optax.adamw``), ``"schedule"`` α_t/α_peak (Loshchilov & Hutter, Composer),
  ``"constant"`` 1, ``"corrected"`` α_t²/α_peak (AdamC). The decay never enters m or v.
  `peak_learning_rate` is required for ``"schedule"``/``"corrected"`` when the learning
  rate is a schedule.
  """
  _check_adam(learning_rate, b1, b2, eps)
  return optax.chain(
    optax.scale_by_adam(b1, b2, eps),
    optax.scale_by_learning_rate(learning_rate),
    decoupled_weight_decay(
      weight_decay,
      coupling=coupling,
      learning_rate=learning_rate,
      peak_learning_rate=peak_learning_rate,
      mask=mask,
    ),
  )


def _momentum(momentum: float, nesterov: bool) -> optax.GradientTransformation:
  return optax.trace(decay=momentum, nesterov=nesterov) if momentum else optax.identity()


def sgd_l2(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule,
  *,
  momentum: float = 0.0,
  nesterov: bool = False,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """SGD with coupled L2: torch ``SGD(weight_decay=λ, momentum=μ, nesterov=...)``.

  g' = g + λ_t·m·θ; b ← μ b + g'; θ ← θ − α_t b (nesterov: θ ← θ − α_t (g' + μ b)).
  λ is multiplied by α_t and accumulated in the momentum buffer.
  """
  _validation.check_learning_rate(learning_rate)
  _check_momentum(momentum)
  return optax.chain(
    add_l2(weight_decay, mask=mask),
    _momentum(momentum, nesterov),
    optax.scale_by_learning_rate(learning_rate),
  )


def sgdw(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule,
  *,
  momentum: float = 0.0,
  nesterov: bool = False,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """SGD with decoupled weight decay: θ ← θ − c_t λ_t m θ − α_t b, b the momentum buffer of g.

  c_t as in `adamw`'s `coupling`. With μ = 0 and ``coupling="lr"`` this equals
  `sgd_l2` (Loshchilov & Hutter, Prop. 1); with momentum it does not.
  """
  _validation.check_learning_rate(learning_rate)
  _check_momentum(momentum)
  return optax.chain(
    _momentum(momentum, nesterov),
    optax.scale_by_learning_rate(learning_rate),
    decoupled_weight_decay(
      weight_decay,
      coupling=coupling,
      learning_rate=learning_rate,
      peak_learning_rate=peak_learning_rate,
      mask=mask,
    ),
  )


def adams(
  learning_rate: ScalarOrSchedule,
  weight_decay: ScalarOrSchedule,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  mask: Mask = None,
) -> optax.GradientTransformation:
  """Adam with stable weight decay (SWD, "AdamS"; Xie et al. 2023).

  θ ← θ (1 − α_t λ_t m / √v̄) − α_t m̂/(√v̂ + ε), v̄ the mean of v̂ over all elements:
  λ is multiplied by α_t and by 1/√v̄, never mixed into the moments.
  """
  _check_adam(learning_rate, b1, b2, eps)
  return optax.chain(
    scale_by_adam_stable(weight_decay, b1=b1, b2=b2, eps=eps, mask=mask),
    optax.scale_by_learning_rate(learning_rate),
  )


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
  "adam_l2": adam_l2,
  "adamw": adamw,
  "sgd_l2": sgd_l2,
  "sgdw": sgdw,
  "adams": adams,
}


def get_optimizer(name: str, **hyperparams: Any) -> optax.GradientTransformation:
  """The recipe called `name` (one of `OPTIMIZERS`) built with `hyperparams`.

  Example:
    >>> opt = get_optimizer("adamw", learning_rate=1e-3, weight_decay=0.1, coupling="schedule")
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"name must be one of {sorted(OPTIMIZERS)}, got {name!r}.")
  return OPTIMIZERS[name](**hyperparams)
