"""Argument checks shared by every layer: fail at construction, name the argument and the value.

The one place the project checks numbers, integers and choices (the optax layer, the engine's
configs and loaders and the studies all call it), so every message has the same shape:
``"<name> must be <rule>, got <value>."``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_schedule(value: Any) -> bool:
  """True for an optax-style schedule (a callable of the step count)."""
  return callable(value)


def concrete_float(value: Any) -> float | None:
  """The value as a Python float, or None when it is traced (e.g. inside `inject_hyperparams`)."""
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    arr = np.asarray(value)
    if np.iscomplexobj(arr):  # inject_hyperparams casts to a complex params' dtype
      if np.any(arr.imag != 0):
        return None
      arr = arr.real
    return float(arr)
  except (TypeError, ValueError):
    return None


def check_number(
  name: str,
  value: Any,
  *,
  lower: float | None = None,
  lower_inclusive: bool = True,
  upper: float | None = None,
  upper_inclusive: bool = True,
  allow_schedule: bool = True,
) -> None:
  """Raises `ValueError` naming `name` unless `value` is a finite number in range.

  Schedules (callables) pass when `allow_schedule`; traced values pass unchecked,
  because `optax.inject_hyperparams` rebuilds the transform inside `jit`. A concrete JAX
  array may equal its upper bound: inject_hyperparams rounds it to the params' dtype.
  """
  if is_schedule(value):
    if allow_schedule:
      return
    raise ValueError(f"{name} must be a number, not a schedule; got {value!r}.")
  if isinstance(value, jax.core.Tracer):
    return
  if isinstance(value, jax.Array):
    # inject_hyperparams casts hyperparameters to the params' dtype: in bfloat16, 0.999 is 1.
    upper_inclusive = True
  if isinstance(value, (str, bytes)) or value is None:
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  x = concrete_float(value)
  if x is None:
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  if not math.isfinite(x):
    raise ValueError(f"{name} must be finite, got {value!r}.")
  if lower is not None and (x < lower or (x == lower and not lower_inclusive)):
    op = ">=" if lower_inclusive else ">"
    raise ValueError(f"{name} must be {op} {lower}, got {value!r}.")
  if upper is not None and (x > upper or (x == upper and not upper_inclusive)):
    op = "<=" if upper_inclusive else "<"
    raise ValueError(f"{name} must be {op} {upper}, got {value!r}.")


def check_int(
  name: str, value: Any, *, lower: int | None = None, upper: int | None = None, hint: str = ""
) -> None:
  """Raises `ValueError` naming `name` unless `value` is an integer (not a bool) in range.

  NumPy integers pass; floats (even 3.0) and bools do not. `hint` is appended to the message
  (e.g. how to pass the value under `optax.inject_hyperparams`).
  """
  bounds = []
  if lower is not None:
    bounds.append(f">= {lower}")
  if upper is not None:
    bounds.append(f"<= {upper}")
  rule = "an int" + (" " + " and ".join(bounds) if bounds else "")
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  if ok and lower is not None and value < lower:
    ok = False
  if ok and upper is not None and value > upper:
    ok = False
  if not ok:
    raise ValueError(f"{name} must be {rule}{hint}, got {value!r}.")


def did_you_mean(name: str, known: Any, prefix: str = "") -> str:
  """``"; did you mean <prefix>.<closest>?"`` for an unknown `name` among `known`, else ``""``."""
  close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
  if not close:
    return ""
  return f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?"


def check_weight_decay(value: Any, name: str = "weight_decay") -> None:
  check_number(name, value, lower=0.0)


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
  """α ≥ 0 or a schedule: 0 is a learning rate (a warmup's first step, a cosine's last)."""
  check_number(name, value, lower=0.0)


def check_peak_learning_rate(value: Any, name: str = "peak_learning_rate") -> None:
  """α_peak: a number > 0 (a coupling divides by it), never a schedule."""
  check_number(name, value, lower=0.0, lower_inclusive=False, allow_schedule=False)


def check_beta(name: str, value: Any) -> None:
  check_number(name, value, lower=0.0, upper=1.0, upper_inclusive=False, allow_schedule=False)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


def evaluate(value: float | Callable[[Any], Any], count: Any) -> Any:
  """A hyperparameter at step `count`: calls schedules, passes constants through."""
  return value(count) if is_schedule(value) else value


def real(value: Any) -> Any:
  """The real part of a (possibly complex, e.g. injected) hyperparameter; others unchanged."""
  if isinstance(value, (jax.Array, np.ndarray, np.generic, complex)) and np.iscomplexobj(value):
    return jnp.real(value)
  return value


def is_host_number(value: Any) -> bool:
  """True for a Python or NumPy number: a value fixed when the transform is built.

  JAX arrays are not: `optax.inject_hyperparams` passes every numeric hyperparameter to the
  factory as a JAX array, rebuilding the transform with the current value at every step.
  """
  if isinstance(value, bool):
    return False
  if isinstance(value, (int, float, np.number)):
    return True
  return isinstance(value, np.ndarray) and value.ndim == 0


def is_static_zero(value: Any) -> bool:
  """True only for a host number equal to 0 (a traced or scheduled value is never skipped)."""
  return is_host_number(value) and float(value) == 0.0
