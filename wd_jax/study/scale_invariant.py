"""The scale-invariant weights of a run, read from its metric records.

A training step with diagnostics logs, for every scale-invariant leaf (a weight followed by a
normalisation, `wd_jax.engine.models`), its norm ``param_norm/<path>`` and its gradient at unit
norm ``grad_norm_unit/<path>`` (`wd_jax.engine.experiment.make_train_step`). Studies of norm
growth, early decay and rotational equilibrium read them here, the same way.

>>> from wd_jax.study import scale_invariant
>>> rec = {"step": 10, "param_norm/a": 3.0, "grad_norm_unit/a": 1.0, "param_norm/b": 4.0,
...        "grad_norm_unit/b": 2.0, "param_norm/head": 9.0}
>>> scale_invariant.paths(rec), scale_invariant.norm(rec)
(['a', 'b'], 5.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

KEY = "si_norm"  # the record field `add_norms` writes


def paths(record: Mapping[str, Any]) -> list[str]:
  """The scale-invariant leaves a record measured (those with ``grad_norm_unit/<path>``)."""
  return sorted(k.split("/", 1)[1] for k in record if k.startswith("grad_norm_unit/"))


def norm(record: Mapping[str, Any]) -> float | None:
  """‖w‖ over every scale-invariant leaf of a record (None if it measured none)."""
  ps = paths(record)
  return math.sqrt(sum(float(record[f"param_norm/{p}"]) ** 2 for p in ps)) if ps else None


def add_norms(rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes `norm` into every record of every row that measured one, under `KEY`."""
  for r in rows:
    for rec in r["records"]:
      n = norm(rec)
      if n is not None:
        rec[KEY] = n


def value_at(records: Sequence[Mapping[str, Any]], key: str, step: float = math.inf) -> float:
  """`key` at the last record at or before `step` that has it (NaN if none)."""
  xs = [rec[key] for rec in records if rec.get(key) is not None and rec["step"] <= step]
  return float(xs[-1]) if xs else math.nan
