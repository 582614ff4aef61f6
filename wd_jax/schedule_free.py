"""Schedule-free AdamW (Defazio et al. 2024) with every decay choice of `with_weight_decay`: optax's
``contrib.schedule_free_adamw`` positional arguments and defaults, its warmup composed with a
scheduled learning rate; parity-tested against optax (tests/test_parity_optax.py).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from wd_jax import validation
from wd_jax._recipe import STATIC_HINT, ScalarOrSchedule, scaled_and_decayed, second_argument
from wd_jax.masks import Mask


def _warmup(learning_rate: Any, warmup_steps: int) -> Any:
  """A linear warmup from 0 over `warmup_steps`: optax's for a number, composed for a schedule."""
  if not validation.is_schedule(learning_rate):
    return optax.warmup_constant_schedule(0.0, learning_rate, warmup_steps)
  ramp = optax.warmup_constant_schedule(0.0, 1.0, warmup_steps)
  return lambda count: ramp(count) * learning_rate(count)


def schedule_free_adamw(
  learning_rate: ScalarOrSchedule = 0.0025,
  warmup_steps: int | None = None,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: ScalarOrSchedule = 0.0,
  weight_lr_power: float = 2.0,
  state_dtype: Any = None,
  *,
  coupling: str = "lr",
  peak_learning_rate: float | None = None,
  mask: Mask = None,
  cautious: bool = False,
  reference: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Schedule-free AdamW (Defazio et al. 2024): ``optax.contrib.schedule_free_adamw``'s arguments.

  The decay acts at the gradient point y, on z's step. With v̂ the debiased EMA of g² and
  c_{t+1} the schedule-free averaging weight:

  .. math::

    z \leftarrow z - \alpha_t \frac{g(y)}{\sqrt{\hat v} + \epsilon}
      - c_t \lambda_t k\, a \odot (y - \theta_0), \quad
    x \leftarrow (1 - c_{t+1})\, x + c_{t+1} z, \quad
    y \leftarrow \beta_1 x + (1-\beta_1) z

  λ is multiplied by c_t (α_t by default, as optax). The returned updates move y (the
  params); evaluate at x with ``optax.contrib.schedule_free_eval_params(state, params)``.

  Args:
    learning_rate: α ≥ 0 (default 0.0025, as optax): a float or a schedule; with
      `warmup_steps`, a float is the peak of a linear warmup from 0 (as optax) and a schedule
      is multiplied by that warmup's ramp (optax refuses a schedule there).
    warmup_steps, b1, b2, eps, weight_lr_power, state_dtype: as ``schedule_free_adamw``.
    weight_decay: λ ≥ 0 (default 0, as optax and the reference ``schedulefree``).
    coupling, peak_learning_rate, mask, cautious, reference: see `with_weight_decay`
      (with `warmup_steps` and a float `learning_rate`, α_peak is that float).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is optax's
    ``ScheduleFreeState``; its `update` needs the params.

  Raises:
    ValueError: a bad argument, named; a `warmup_steps` that is not an int says that λ is a
      keyword now.

  Example:
    >>> opt = wd_jax.schedule_free_adamw(0.1, weight_decay=0.5)
    >>> p = jnp.array([2.0])
    >>> u, _ = opt.update(jnp.zeros(1), opt.init(p), p)
    >>> print(round(float((p + u)[0]), 4))  # zero gradient: z, x and y shrink by α λ
    1.9
    >>> lr = optax.cosine_decay_schedule(1e-3, 1000)
    >>> opt = wd_jax.schedule_free_adamw(lr, 100, weight_decay=1e-4)  # warmup × cosine

  References:
    Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The road less scheduled",
    NeurIPS 2024. ``optax.contrib.schedule_free_adamw``.
  """
  validation.check_learning_rate(learning_rate)
  validation.check_number(
    "b1",
    b1,
    lower=0.0,
    lower_inclusive=False,
    upper=1.0,
    upper_inclusive=False,
    allow_schedule=False,
  )
  validation.check_beta("b2", b2)
  validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  validation.check_number("weight_lr_power", weight_lr_power, allow_schedule=False)
  lr = learning_rate
  if warmup_steps is not None:
    with second_argument("schedule_free_adamw", "warmup_steps"):
      validation.check_int("warmup_steps", warmup_steps, lower=1, hint=STATIC_HINT)
    if peak_learning_rate is None and validation.is_host_number(learning_rate):
      peak_learning_rate = learning_rate
    lr = _warmup(learning_rate, warmup_steps)
  direction = optax.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True)
  inner = scaled_and_decayed(
    direction, weight_decay, lr, coupling, peak_learning_rate, mask, cautious, reference
  )
  return _schedule_free(inner, lr, b1, weight_lr_power, state_dtype)


def _schedule_free(inner, learning_rate, b1, weight_lr_power, state_dtype):
  """``optax.contrib.schedule_free`` that also takes trees mixing bfloat16 and float16.

  optax keeps its scalars (b1, the weight sum, the max lr) in the params' lowest dtype,
  which does not exist for bfloat16 next to float16; there they are float32 and each
  update is cast back to its leaf's dtype. Other trees get optax's state unchanged.
  """
  sf = optax.contrib.schedule_free(
    inner,
    learning_rate=learning_rate,
    b1=b1,
    weight_lr_power=weight_lr_power,
    state_dtype=state_dtype,
  )

  def init_fn(params):
    try:
      optax.tree.dtype(params, "lowest")
    except ValueError:
      z = params if state_dtype is None else optax.tree.cast(params, state_dtype)
      return optax.contrib.ScheduleFreeState(
        b1=jnp.asarray(b1, jnp.float32),
        weight_sum=jnp.zeros([], jnp.float32),
        step_count=jnp.ones([], jnp.int32),
        max_lr=jnp.zeros([], jnp.float32),
        base_optimizer_state=inner.init(params),
        z=jax.tree.map(lambda t: jnp.array(t, copy=True), z),
      )
    return sf.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    updates, state = sf.update(updates, state, params, **extra_args)
    return jax.tree.map(lambda u, p: u.astype(jnp.asarray(p).dtype), updates, params), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
