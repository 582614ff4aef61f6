"""How a study picks configurations without fooling itself: select on validation, test once.

Every study's runs carve a fixed, seeded validation split from the training data
(``config.dataset.validation_fraction``; the same split for every seed and arm). Hyperparameters
are chosen on it — the configuration whose mean validation metric over the seeds is best — and the
test split is then read once, for the chosen configuration's seeds only (`selector` is the
``select`` callback of `wd_jax.engine.sweep.run_sweep`, which evaluates nothing else on test).
Configurations a claim names in advance (e.g. "at the largest λ") are chosen by the declaration,
not by data, so they may be read on test too (`fixed`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


def _matches(row: Row, values: Mapping[str, Any]) -> bool:
  for k, v in values.items():
    x = row.get(k)
    if isinstance(v, float) or isinstance(x, float):
      if x is None or not math.isclose(float(x), float(v), rel_tol=1e-9, abs_tol=0.0):
        return False
    elif x != v:
      return False
  return True


def configurations(rows: Sequence[Row], by: Sequence[str]) -> list[dict[str, Any]]:
  """The distinct values of the fields `by` among `rows`, in order of first appearance.

  Args:
    rows: sweep rows.
    by: the fields that make a configuration, e.g. ``("learning_rate", "weight_decay")``.

  Returns:
    One dict of `by`'s values per configuration (floats compared to 1e-9 relative).

  Example:
    >>> from wd_jax.study import protocol
    >>> rows = [  # sweep rows: one per (λ, seed), validation metrics only
    ...   {"weight_decay": 1e-4, "seed": 0, "val_accuracy": 0.80, "diverged": False},
    ...   {"weight_decay": 1e-4, "seed": 1, "val_accuracy": 0.82, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 1, "val_accuracy": 0.84, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 0, "val_accuracy": 0.85, "diverged": False},
    ... ]
    >>> protocol.configurations(rows, ("weight_decay",))
    [{'weight_decay': 0.0001}, {'weight_decay': 0.01}]

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010.
  """
  seen: list[dict[str, Any]] = []
  for r in rows:
    c = {k: r[k] for k in by}
    if not any(_matches(c, s) for s in seen):
      seen.append(c)
  return seen


def rows_of(rows: Sequence[Row], values: Mapping[str, Any]) -> list[Row]:
  """The rows whose fields equal `values`, sorted by seed (so arms pair up by seed).

  Args:
    rows: sweep rows (each with a ``seed``).
    values: field -> value (floats compared to 1e-9 relative).

  Returns:
    The matching rows, by seed.

  Example:
    >>> from wd_jax.study import protocol
    >>> rows = [  # sweep rows: one per (λ, seed), validation metrics only
    ...   {"weight_decay": 1e-4, "seed": 0, "val_accuracy": 0.80, "diverged": False},
    ...   {"weight_decay": 1e-4, "seed": 1, "val_accuracy": 0.82, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 1, "val_accuracy": 0.84, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 0, "val_accuracy": 0.85, "diverged": False},
    ... ]
    >>> [r["seed"] for r in protocol.rows_of(rows, {"weight_decay": 1e-2})]
    [0, 1]

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010.
  """
  return sorted((r for r in rows if _matches(r, values)), key=lambda r: r["seed"])


def score(rows: Sequence[Row], metric: str) -> float:
  """Mean of `metric` over `rows`; a diverged or missing value makes the configuration lose.

  Args:
    rows: the rows of one configuration (its seeds).
    metric: the metric to average, e.g. ``"val_accuracy"``.

  Returns:
    The mean, or NaN when a row diverged or lacks a finite value.

  Example:
    >>> from wd_jax.study import protocol
    >>> rows = [  # sweep rows: one per (λ, seed), validation metrics only
    ...   {"weight_decay": 1e-4, "seed": 0, "val_accuracy": 0.80, "diverged": False},
    ...   {"weight_decay": 1e-4, "seed": 1, "val_accuracy": 0.82, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 1, "val_accuracy": 0.84, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 0, "val_accuracy": 0.85, "diverged": False},
    ... ]
    >>> round(protocol.score(protocol.rows_of(rows, {"weight_decay": 1e-2}), "val_accuracy"), 3)
    0.845

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010.
  """
  vals = [r.get(metric, math.nan) for r in rows]
  if any(r.get("diverged") for r in rows) or not all(math.isfinite(v) for v in vals):
    return math.nan
  return float(np.mean(vals))


def select_best(
  rows: Sequence[Row], *, by: Sequence[str], metric: str, larger: bool = True
) -> dict[str, Any] | None:
  """The configuration (values of `by`) with the best mean validation `metric` over seeds.

  Args:
    rows: sweep rows (validation metrics only).
    by: the tuned fields, e.g. ``("learning_rate", "weight_decay")``.
    metric: a validation metric, e.g. ``"val_accuracy"`` (it must start with ``val_``: the test
      split is never a selection criterion).
    larger: whether larger is better.

  Returns:
    The chosen values of `by`, or None when no configuration has a finite score (every one
    diverged somewhere): nothing is selected, and the claims that read it are inconclusive.

  Raises:
    ValueError: `metric` is not a validation metric.

  Example:
    >>> from wd_jax.study import protocol
    >>> rows = [  # sweep rows: one per (λ, seed), validation metrics only
    ...   {"weight_decay": 1e-4, "seed": 0, "val_accuracy": 0.80, "diverged": False},
    ...   {"weight_decay": 1e-4, "seed": 1, "val_accuracy": 0.82, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 1, "val_accuracy": 0.84, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 0, "val_accuracy": 0.85, "diverged": False},
    ... ]
    >>> protocol.select_best(rows, by=("weight_decay",), metric="val_accuracy")
    {'weight_decay': 0.01}

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010.
  """
  if not metric.startswith("val_"):
    raise ValueError(f"selection reads the validation split only: metric {metric!r} is not val_*.")
  best, best_score = None, -math.inf
  for c in configurations(rows, by):
    s = score(rows_of(rows, c), metric)
    if math.isfinite(s) and (s if larger else -s) > best_score:
      best, best_score = c, s if larger else -s
  return best


def selector(
  *,
  by: Sequence[str] = (),
  metric: str = "val_accuracy",
  larger: bool = True,
  fixed: Sequence[Mapping[str, Any]] = (),
) -> Callable[[Sequence[Row]], list[int]]:
  """A ``select`` callback for `wd_jax.engine.sweep.run_sweep`: the rows whose test split is read.

  Args:
    by: tuned fields: every seed of the configuration `select_best` picks (none: no tuning).
    metric: the validation metric the tuning maximises (or minimises, `larger=False`).
    larger: whether larger is better.
    fixed: configurations declared in advance (e.g. ``{"weight_decay": 0.1}``): all their rows.

  Returns:
    ``select(rows) -> indices``: the rows of the best configuration's seeds and of the fixed
    configurations, whose test split `wd_jax.engine.sweep.run_sweep` then reads once.

  Example:
    >>> from wd_jax.study import protocol
    >>> rows = [  # sweep rows: one per (λ, seed), validation metrics only
    ...   {"weight_decay": 1e-4, "seed": 0, "val_accuracy": 0.80, "diverged": False},
    ...   {"weight_decay": 1e-4, "seed": 1, "val_accuracy": 0.82, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 1, "val_accuracy": 0.84, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 0, "val_accuracy": 0.85, "diverged": False},
    ... ]
    >>> select = protocol.selector(by=("weight_decay",))
    >>> select(rows)  # every seed of the best λ on validation
    [2, 3]
    >>> protocol.selector(by=("weight_decay",), fixed=[{"weight_decay": 1e-4}])(rows)
    [0, 1, 2, 3]

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010.
  """

  def select(rows: Sequence[Row]) -> list[int]:
    picked: list[Row] = []
    best = select_best(rows, by=by, metric=metric, larger=larger) if by else None
    if best is not None:
      picked += rows_of(rows, best)
    for values in fixed:
      picked += rows_of(rows, values)
    index = {id(r): i for i, r in enumerate(rows)}
    return sorted({index[id(r)] for r in picked})

  return select


def per_seed(rows: Sequence[Row], key: str, values: Mapping[str, Any] | None = None) -> list[float]:
  """`key` of the rows matching `values`, one per seed in seed order (NaN where diverged).

  Args:
    rows: sweep rows.
    key: the metric to read, e.g. ``"test_accuracy"``.
    values: the configuration (field -> value); None selects every row (a sweep over seeds
      only).

  Returns:
    One float per seed, in seed order: what `wd_jax.study.stats` pairs across arms.

  Example:
    >>> from wd_jax.study import protocol
    >>> rows = [  # sweep rows: one per (λ, seed), validation metrics only
    ...   {"weight_decay": 1e-4, "seed": 0, "val_accuracy": 0.80, "diverged": False},
    ...   {"weight_decay": 1e-4, "seed": 1, "val_accuracy": 0.82, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 1, "val_accuracy": 0.84, "diverged": False},
    ...   {"weight_decay": 1e-2, "seed": 0, "val_accuracy": 0.85, "diverged": False},
    ... ]
    >>> protocol.per_seed(rows, "val_accuracy", {"weight_decay": 1e-2})
    [0.85, 0.84]

  References:
    Student (1908), The probable error of a mean (the paired design these values feed).
  """
  chosen = rows_of(rows, values or {})
  return [math.nan if r.get("diverged") else float(r.get(key, math.nan)) for r in chosen]
