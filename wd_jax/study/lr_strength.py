"""A tune grid over peak learning rate × decay strength (τ/T), plus no decay.

Studies that tune one decayed arm grid it as lr × τ/T (`wd_jax.study.strength` turns each τ/T
into the optimizer's own λ at that lr) and add the λ = 0 cells, so that "no decay" is a
candidate of the same selection (`wd_jax.study.phases.select`, whose figure is
`wd_jax.study.phases.tune_panels`).

>>> from wd_jax.study import lr_strength
>>> [c["weight_decay"] for c in lr_strength.off([0.1, 0.2])]
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wd_jax.study import strength


def cells(
  run_at: Callable[[float], Any],
  optimizer: str,
  learning_rates: Sequence[float],
  tau_over_T: Sequence[float],
) -> list[dict[str, Any]]:
  """Every lr × τ/T cell: ``learning_rate``, ``weight_decay`` (the optimizer's λ for τ/T at
  that lr, `wd_jax.study.strength.weight_decays`) and ``tau_over_T``.

  Args:
    run_at: lr -> the run config at that peak lr.
    optimizer: the recipe name λ is computed for (e.g. ``"sgd_l2"``).
    learning_rates: the peak lrs.
    tau_over_T: the strengths.

  Returns:
    The cells, lr-major.
  """
  out = []
  for lr in learning_rates:
    lams = strength.weight_decays(run_at(lr), optimizer, tau_over_T)
    out += [
      {"learning_rate": lr, "weight_decay": x, "tau_over_T": t} for t, x in zip(tau_over_T, lams)
    ]
  return out


def off(learning_rates: Sequence[float]) -> list[dict[str, Any]]:
  """The λ = 0 cell of every lr (``tau_over_T`` None: no decay)."""
  return [{"learning_rate": lr, "weight_decay": 0.0, "tau_over_T": None} for lr in learning_rates]


def find(grid: Sequence[Mapping[str, Any]], pick: Mapping[str, Any]) -> dict[str, Any]:
  """The cell of `grid` whose values agree with the selection's `pick` on every key it has."""
  return dict(next(c for c in grid if all(c[k] == v for k, v in pick.items())))
