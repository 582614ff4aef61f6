"""One validation dialect for study configs: declare each field's rule, `check` them all.

A study lists its fields once,

>>> FIELDS = {"seeds": ints(minimum=0), "variants": choices(("adamw", "adam_l2")),
...           "strategy": choice(("vmap", "sequential"))}

and `check(config, FIELDS)` raises a `ValueError` naming the field and the value before anything
is built or written. Rules are small functions ``(where, value) -> None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wd_jax import validation

Rule = Callable[[str, Any], None]


def _seq(where: str, value: Any, nonempty: bool) -> list[Any]:
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
    raise ValueError(f"{where} must be a list or tuple, got {value!r}.")
  if nonempty and not value:
    raise ValueError(f"{where} is empty.")
  return list(value)


def _is_number(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def choice(options: Sequence[str]) -> Rule:
  """One of `options`."""

  def rule(where: str, value: Any) -> None:
    if value not in options:
      raise ValueError(f"{where} must be one of {list(options)}, got {value!r}.")

  return rule


def choices(options: Sequence[str], *, nonempty: bool = True) -> Rule:
  """A list of distinct members of `options`."""

  def rule(where: str, value: Any) -> None:
    items = _seq(where, value, nonempty)
    for v in items:
      if v not in options:
        raise ValueError(f"{where} has {v!r}; valid: {list(options)}.")
    if len(set(items)) != len(items):
      raise ValueError(f"{where} repeats a value: {items}.")

  return rule


def ints(*, minimum: int = 0, nonempty: bool = True, distinct: bool = True) -> Rule:
  """A list of ints >= `minimum` (seeds, step counts)."""

  def rule(where: str, value: Any) -> None:
    items = _seq(where, value, nonempty)
    for v in items:
      if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{where} must hold ints >= {minimum}, got {v!r}.")
    if distinct and len(set(items)) != len(items):
      raise ValueError(f"{where} repeats a value: {items}.")

  return rule


def integer(*, minimum: int = 0, maximum: int | None = None) -> Rule:
  """One int in [minimum, maximum]."""

  def rule(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      raise ValueError(f"{where} must be an int >= {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
      raise ValueError(f"{where} must be an int <= {maximum}, got {value!r}.")

  return rule


def numbers(*, positive: bool = True, nonempty: bool = True) -> Rule:
  """A list of finite numbers, > 0 if `positive` (λ and lr grids)."""

  def rule(where: str, value: Any) -> None:
    items = _seq(where, value, nonempty)
    for v in items:
      if not _is_number(v) or (positive and v <= 0):
        raise ValueError(
          f"{where} must hold finite numbers{' > 0' if positive else ''}, got {v!r}."
        )

  return rule


def number(*, low: float | None = None, high: float | None = None, open_low: bool = False) -> Rule:
  """One finite number in [low, high] ((low, high] with `open_low`)."""

  def rule(where: str, value: Any) -> None:
    ok = _is_number(value)
    if ok and low is not None:
      ok = value > low if open_low else value >= low
    if ok and high is not None:
      ok = value <= high
    if not ok:
      lo = "" if low is None else (f"> {low}" if open_low else f">= {low}")
      hi = "" if high is None else f"<= {high}"
      bounds = " and ".join(b for b in (lo, hi) if b)
      raise ValueError(
        f"{where} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}."
      )

  return rule


def text() -> Rule:
  """A string (a note the summary quotes)."""

  def rule(where: str, value: Any) -> None:
    if not isinstance(value, str):
      raise ValueError(f"{where} must be a string, got {value!r}.")

  return rule


def flag() -> Rule:
  """A bool."""

  def rule(where: str, value: Any) -> None:
    if not isinstance(value, bool):
      raise ValueError(f"{where} must be True or False, got {value!r}.")

  return rule


def run_config(*, datasets: Sequence[str] | None = None, validation: bool = True) -> Rule:
  """A run config (`wd_jax.engine.config` schema) that `wd_jax.engine.config.validate` accepts;
  optionally
  one of `datasets`, and with a validation split (the protocol selects on it)."""

  def rule(where: str, value: Any) -> None:
    from wd_jax.engine import config as config_lib

    try:
      config_lib.validate(value)
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from e
    if datasets is not None and value.dataset.name not in datasets:
      raise ValueError(
        f"{where}.dataset.name must be one of {list(datasets)}, got {value.dataset.name!r}."
      )
    if validation and not value.dataset.get("validation_fraction", 0.0) > 0:
      raise ValueError(
        f"{where}.dataset.validation_fraction must be > 0: the study selects on a validation "
        "split and reads the test split once."
      )

  return rule


def each(rules: Mapping[str, Rule]) -> Rule:
  """A mapping name -> sub-config, each checked against `rules` (a study's tasks)."""

  def rule(where: str, value: Any) -> None:
    if not value or not len(value):
      raise ValueError(f"{where} is empty.")
    for name, sub in dict(value).items():
      check(sub, rules, prefix=f"{where}.{name}")

  return rule


def section(rules: Mapping[str, Rule]) -> Rule:
  """A sub-config whose fields are checked against `rules` (a study's ``tune``, ``confirm``)."""

  def rule(where: str, value: Any) -> None:
    if not hasattr(value, "keys"):
      raise ValueError(f"{where} must be a config section, got {value!r}.")
    check(value, rules, prefix=where)

  return rule


def mapping() -> Rule:
  """A non-empty mapping of keyword arguments (e.g. a data loader's)."""

  def rule(where: str, value: Any) -> None:
    if not hasattr(value, "keys") or not len(value):
      raise ValueError(f"{where} must be a non-empty mapping, got {value!r}.")

  return rule


def check(config: Any, fields: Mapping[str, Rule], *, prefix: str = "config") -> None:
  """Checks every declared field of `config`; `ValueError` naming the first bad one, or a field
  that is not declared (a typo on the command line). ``claims`` is checked by
  `wd_jax.study.claims`."""

  for key in config.keys():
    if key not in fields and key != "claims":
      hint = validation.did_you_mean(key, fields, prefix)
      raise ValueError(f"{prefix}.{key} is not a field of this config{hint}")
  for name, rule in fields.items():
    where = f"{prefix}.{name}"
    if name not in config:
      raise ValueError(f"{where} is missing.")
    rule(where, config[name])
