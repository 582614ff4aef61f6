"""What the optimizer recipes share: Adam's direction and its checks, the decay wrapper, and the
messages that turn a call shaped for the former signatures into the new one."""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import optax

from wd_jax import validation
from wd_jax.decoupled import with_weight_decay

ScalarOrSchedule = float | optax.Schedule
# Integers that set shapes or loop counts cannot be traced.
STATIC_HINT = " (under optax.inject_hyperparams pass it in static_args)"
AMSGRAD = ("optax", "torch")


def amsgrad_kind(amsgrad) -> str | None:
  """None (plain Adam), ``"optax"`` (True) or ``"torch"``."""
  if amsgrad is False or amsgrad is None:
    return None
  if amsgrad is True:
    return "optax"
  if isinstance(amsgrad, str) and amsgrad in AMSGRAD:
    return amsgrad
  raise ValueError(f"amsgrad must be False, True (optax's), 'optax' or 'torch', got {amsgrad!r}.")


def check_adam(b1, b2, eps, eps_root=0.0, nesterov=False, amsgrad=False) -> None:
  """Adam's constants, as optax's ``scale_by_adam`` / ``scale_by_amsgrad`` take them."""
  validation.check_beta("b1", b1)
  validation.check_beta("b2", b2)
  validation.check_number("eps", eps, lower=0.0, allow_schedule=False)
  validation.check_number("eps_root", eps_root, lower=0.0, allow_schedule=False)
  if nesterov and amsgrad_kind(amsgrad):
    raise ValueError("nesterov=True and amsgrad cannot be combined (as in optax), got both.")


def scale_by_amsgrad_torch(b1, b2, eps, eps_root, mu_dtype) -> optax.GradientTransformation:
  """torch's AMSGrad: the running max of the raw v, divided by the current bias correction.

  m̂/(√(max_{s≤t} v_s / (1 − β2^t) + ε_root) + ε), as ``torch.optim.Adam(amsgrad=True)``;
  optax's ``scale_by_amsgrad`` takes the max of the bias-corrected v̂ instead. The state is
  optax's ``ScaleByAmsgradState``, its ``nu_max`` the max of the raw v.
  """

  def init_fn(params):
    zeros = optax.tree.zeros_like(params)
    mu = optax.tree.zeros_like(params, dtype=mu_dtype)
    return optax.ScaleByAmsgradState(jnp.zeros([], jnp.int32), mu, zeros, zeros)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
    v_hat = optax.tree.bias_correction(nu_max, b2, count)
    m_hat = optax.tree.bias_correction(mu, b1, count)
    updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), m_hat, v_hat)
    return updates, optax.ScaleByAmsgradState(count, optax.tree.cast(mu, mu_dtype), nu, nu_max)

  return optax.GradientTransformation(init_fn, update_fn)


def adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov, amsgrad):
  """m̂/(√(v̂ + ε_root) + ε): optax's ``scale_by_adam``, ``scale_by_amsgrad`` or torch's."""
  kind = amsgrad_kind(amsgrad)
  if kind == "torch":
    return scale_by_amsgrad_torch(b1, b2, eps, eps_root, mu_dtype)
  if kind == "optax":
    return optax.scale_by_amsgrad(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype)
  return optax.scale_by_adam(
    b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
  )


def decayed(base, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, ref):
  """`with_weight_decay` around a recipe's base optimizer (built here without decay)."""
  return with_weight_decay(
    base,
    weight_decay,
    learning_rate=learning_rate,
    coupling=coupling,
    peak_learning_rate=peak_learning_rate,
    mask=mask,
    cautious=cautious,
    reference=ref,
    allow_base_decay=True,
  )


def scaled_and_decayed(
  direction, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, ref
):
  """`decayed` around ``chain(direction, scale_by_learning_rate(α))``: the base optimizer of
  most recipes is a direction scaled by the learning rate."""
  base = optax.chain(direction, optax.scale_by_learning_rate(learning_rate))
  return decayed(
    base, weight_decay, learning_rate, coupling, peak_learning_rate, mask, cautious, ref
  )


@contextlib.contextmanager
def second_argument(recipe: str, argument: str, decay: str = "weight_decay"):
  """Adds, to a `ValueError` about `argument`, that it is the recipe's second positional
  argument (as in optax) where the former signature took λ."""
  try:
    yield
  except ValueError as e:
    if not str(e).startswith(argument):
      raise
    raise ValueError(
      f"{e} The second positional argument of wd_jax.{recipe} is {argument}, as in optax's "
      f"{recipe}; λ is a keyword: wd_jax.{recipe}(learning_rate, {decay}=λ) (CHANGELOG.md)."
    ) from None


def renamed(recipe: str, **new_calls: str):
  """Refuses the former keywords of `recipe`, showing the call to write instead: `new_calls`
  maps each to its replacement, ``{}`` standing for the value given."""

  def wrap(fn):
    @functools.wraps(fn)
    def recipe_fn(*args, **kwargs):
      for old, new in new_calls.items():
        if old in kwargs:
          raise ValueError(
            f"wd_jax.{recipe} has no {old}= (it takes optax's arguments): write "
            f"wd_jax.{recipe}(..., {new.format(repr(kwargs[old]))}) (CHANGELOG.md)."
          )
      return fn(*args, **kwargs)

    return recipe_fn

  return wrap
