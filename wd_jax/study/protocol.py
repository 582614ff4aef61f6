"""How a study picks configurations without fooling itself: tune, pre-register, confirm.

**Two phases.** The tune phase trains each arm's grid on a *tuning* data draw with a few seeds
(`run_cells`), scores every validation item (`item_outcomes`), selects each arm's cell on
validation (`choose`, with its stability under resampled validation items) and says where the
pick sits in its grid (`grid_edges`); the study then writes a pre-registration
(`wd_jax.study.preregistration`). The confirm phase runs only the pre-registered cells on fresh
seeds and a fresh data draw, reads the test split once per run (``test_items.npz``, per item)
and decides the claims over seeds × items (`seeds_items`, `wd_jax.study.stats`).

**Selection within one run set** (the helpers below, used by single-phase studies too):

Every study's runs carve a fixed, seeded validation split from the training data
(``config.dataset.validation_fraction``; the same split for every seed and arm). Hyperparameters
are chosen on it — the configuration whose mean validation metric over the seeds is best — and the
test split is then read once, for the chosen configuration's seeds only (`selector` is the
``select`` callback of `wd_jax.engine.sweep.run_sweep`, which evaluates nothing else on test).
Configurations a claim names in advance (e.g. "at the largest λ") are chosen by the declaration,
not by data, so they may be read on test too (`fixed`). Why selection reads validation only:
Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
performance evaluation", JMLR 2010.
"""

from __future__ import annotations

import dataclasses
import math
import os
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
    >>> rows = [{"weight_decay": wd, "seed": s, "val_accuracy": a}  # one per (λ, seed)
    ...         for wd, s, a in [(1e-4, 0, 0.8), (1e-4, 1, 0.82), (1e-2, 1, 0.84), (1e-2, 0, 0.85)]]
    >>> protocol.configurations(rows, ("weight_decay",))
    [{'weight_decay': 0.0001}, {'weight_decay': 0.01}]


  References:
    Cawley & Talbot, JMLR 2010 (module docstring): the configurations a selection ranks.
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
    >>> rows = [{"weight_decay": wd, "seed": s, "val_accuracy": a}  # one per (λ, seed)
    ...         for wd, s, a in [(1e-4, 0, 0.8), (1e-4, 1, 0.82), (1e-2, 1, 0.84), (1e-2, 0, 0.85)]]
    >>> [r["seed"] for r in protocol.rows_of(rows, {"weight_decay": 1e-2})]
    [0, 1]


  References:
    Cawley & Talbot, JMLR 2010 (module docstring): the seeds a selection averages.
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
    >>> rows = [{"weight_decay": wd, "seed": s, "val_accuracy": a}  # one per (λ, seed)
    ...         for wd, s, a in [(1e-4, 0, 0.8), (1e-4, 1, 0.82), (1e-2, 1, 0.84), (1e-2, 0, 0.85)]]
    >>> round(protocol.score(protocol.rows_of(rows, {"weight_decay": 1e-2}), "val_accuracy"), 3)
    0.845


  References:
    Cawley & Talbot, JMLR 2010 (module docstring): the score a selection ranks.
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
    >>> rows = [{"weight_decay": wd, "seed": s, "val_accuracy": a}  # one per (λ, seed)
    ...         for wd, s, a in [(1e-4, 0, 0.8), (1e-4, 1, 0.82), (1e-2, 1, 0.84), (1e-2, 0, 0.85)]]
    >>> protocol.select_best(rows, by=("weight_decay",), metric="val_accuracy")
    {'weight_decay': 0.01}


  References:
    Cawley & Talbot, JMLR 2010 (module docstring): selection on validation.
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
    >>> rows = [{"weight_decay": wd, "seed": s, "val_accuracy": a}  # one per (λ, seed)
    ...         for wd, s, a in [(1e-4, 0, 0.8), (1e-4, 1, 0.82), (1e-2, 1, 0.84), (1e-2, 0, 0.85)]]
    >>> select = protocol.selector(by=("weight_decay",))
    >>> select(rows)  # every seed of the best λ on validation
    [2, 3]
    >>> protocol.selector(by=("weight_decay",), fixed=[{"weight_decay": 1e-4}])(rows)
    [0, 1, 2, 3]


  References:
    Cawley & Talbot, JMLR 2010 (module docstring): the test split read once, after selection.
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
    >>> rows = [{"weight_decay": wd, "seed": s, "val_accuracy": a}  # one per (λ, seed)
    ...         for wd, s, a in [(1e-4, 0, 0.8), (1e-4, 1, 0.82), (1e-2, 1, 0.84), (1e-2, 0, 0.85)]]
    >>> protocol.per_seed(rows, "val_accuracy", {"weight_decay": 1e-2})
    [0.85, 0.84]

  References:
    Student (1908), The probable error of a mean (the paired design these values feed).
  """
  chosen = rows_of(rows, values or {})
  return [math.nan if r.get("diverged") else float(r.get(key, math.nan)) for r in chosen]


# ----------------------------------------------------------------------------------------------
# Two phases: tune on one data draw (selection on validation items), confirm on another.


SWEEP_FIELDS = ("learning_rate", "weight_decay")


def fields_of(cell: Mapping[str, Any]) -> dict[str, Any]:
  """The sweep fields of a cell (``learning_rate``, ``weight_decay``, dotted config paths): its
  other keys (e.g. ``tau_over_T``) are labels for readers and the pre-registration."""
  return {k: v for k, v in cell.items() if k in SWEEP_FIELDS or "." in k}


def run_cells(
  run: Any,
  cells: Sequence[Mapping[str, Any]],
  seeds: Sequence[int],
  workdir: str,
  *,
  strategy: str = "vmap",
  read_test: bool = False,
) -> list[dict[str, Any]]:
  """Trains every cell × seed of one arm through `wd_jax.engine.sweep.run_sweep`.

  Tune (``read_test=False``): the final states are kept long enough to score every validation
  item (``row["val_items"]``, `item_outcomes`); the test split is not read. Confirm
  (``read_test=True``): every run is pre-registered, so the test split is read once for each
  (``row["test_items"]`` from the ``test_items.npz`` the sweep writes). Each row also gets its
  cell's labels and its run's metric records (``row["records"]``).

  Args:
    run: the arm's run config (its optimizer set), with a validation split.
    cells: the configurations: sweep fields plus labels (`fields_of`).
    seeds: the seeds (each cell runs every seed).
    workdir: the arm's sweep workdir.
    strategy: the sweep strategy.
    read_test: confirm (True) or tune (False).

  Returns:
    The sweep rows, in cell-major, seed-minor order.
  """
  from wd_jax.engine import sweep
  from wd_jax.engine.runlog import read_metrics

  points = [{**fields_of(c), "seed": int(s)} for c in cells for s in seeds]
  # Confirm reads every run's test split; tune reads none (the sweep's default would read its
  # best row's).
  select = (lambda rows: list(range(len(rows)))) if read_test else (lambda rows: [])
  rows = sweep.run_sweep(
    run,
    points,
    workdir,
    strategy=strategy,
    verbose=False,
    select=select,
    return_states=not read_test,
  )
  if not read_test:
    outcomes = item_outcomes(run, [r.get("state") for r in rows], "val")
  for k, r in enumerate(rows):
    r.update({k2: v for k2, v in cells[k // len(seeds)].items() if k2 not in r})
    r.pop("state", None)
    r["records"] = read_metrics(os.path.join(workdir, r["run_dir"], "metrics.jsonl"))
    if read_test and not r["diverged"]:  # a diverged run has no test items (NaN in the claims)
      with np.load(os.path.join(workdir, r["run_dir"], "test_items.npz")) as f:
        r["test_items"] = {name: f[name] for name in f.files}
    elif not read_test:
      r["val_items"] = outcomes[k] if not r["diverged"] else {}
  return rows


def item_outcomes(run: Any, states: Sequence[Any], split: str = "val") -> list[dict[str, Any]]:
  """Each state's per-item ``loss`` (and ``accuracy``) over one split of `run`'s data.

  Args:
    run: the run config the states were trained under (its dataset and validation split).
    states: final ``TrainState`` objects (host arrays), None for a run that has none.
    split: ``"val"`` or ``"test"``.

  Returns:
    One dict of (items,) float64 arrays per state ({} for None).
  """
  import jax

  from wd_jax.engine import data as data_lib
  from wd_jax.engine import experiment

  exp = experiment.build(run)
  step = jax.jit(experiment.make_item_step(exp))
  batches = list(data_lib.eval_batches(exp.dataset, run.eval_batch_size, split=split))
  out = []
  for state in states:
    if state is None:
      out.append({})
      continue
    parts: dict[str, list[np.ndarray]] = {}
    for x, y, w in batches:
      got = jax.device_get(step(state.params, state.rest, x, y))
      for k, v in got.items():
        parts.setdefault(k, []).append(np.asarray(v, np.float64)[np.asarray(w) > 0])
    out.append({k: np.concatenate(v) for k, v in parts.items()})
  return out


def seeds_items(rows: Sequence[Row], key: str, metric: str, seeds: Sequence[int]) -> np.ndarray:
  """The (seeds, items) array of one cell's per-item `metric` (rows' ``key`` dict, e.g.
  ``"test_items"``), in the order of `seeds`; a diverged seed is a row of NaN.

  Args:
    rows: one cell's rows (one per seed).
    key: ``"val_items"`` or ``"test_items"``.
    metric: ``"accuracy"`` or ``"loss"``.
    seeds: the seed order.

  Returns:
    Float64 array (len(seeds), items).
  """
  by_seed = {int(r["seed"]): r.get(key, {}).get(metric) for r in rows}
  width = max((len(v) for v in by_seed.values() if v is not None), default=0)
  return np.stack(
    [
      np.full(width, np.nan) if by_seed.get(int(s)) is None else np.asarray(by_seed[int(s)])
      for s in seeds
    ]
  )


@dataclasses.dataclass(frozen=True)
class Choice:
  """The configuration selected on validation items, and how firmly.

  Attributes:
    pick: the selected cell (None: every cell diverged somewhere).
    score: its mean validation metric over seeds and items.
    runner_up: the second-best cell (None if there is none).
    gap: ``score`` minus the runner-up's, toward better (≥ 0).
    stability: the share of item resamples (bootstrap of the validation items, the same
      resample for every cell) whose best cell is `pick`.
    alternatives: the other cells picked in some resample, with their shares.
    resamples: how many resamples.
  """

  pick: dict[str, Any] | None
  score: float
  runner_up: dict[str, Any] | None
  gap: float
  stability: float
  alternatives: tuple[tuple[dict[str, Any], float], ...]
  resamples: int


def choose(
  cells: Sequence[tuple[Mapping[str, Any], np.ndarray]],
  *,
  larger: bool,
  resamples: int = 200,
  seed: int = 0,
) -> Choice:
  """Selects the cell with the best mean validation metric and measures how stable the pick is.

  Stability: resample the validation items with replacement `resamples` times (multinomial
  weights, the same for every cell, since every cell is scored on the same items) and count how
  often each cell comes out best. A pick that changes under item resampling is a tie on this
  validation set, whatever its mean says.

  Args:
    cells: (cell, (seeds, items) validation outcomes) pairs; a cell with a non-finite value
      (a diverged seed) is never picked.
    larger: whether larger is better (accuracy) or smaller (loss).
    resamples: bootstrap resamples of the items.
    seed: the resampling's seed.

  Returns:
    The `Choice`.

  Example:
    >>> import numpy as np
    >>> from wd_jax.study import protocol
    >>> rng = np.random.default_rng(0)
    >>> a = (rng.random((3, 400)) < 0.70).astype(float)  # 3 seeds × 400 validation items
    >>> b = (rng.random((3, 400)) < 0.60).astype(float)
    >>> c = protocol.choose([({"lr": 0.01}, a), ({"lr": 0.02}, b)], larger=True)
    >>> c.pick, c.stability  # the share of 200 resamples of the items that pick it
    ({'lr': 0.01}, 0.99)

  References:
    Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
    performance evaluation", JMLR 2010; Efron & Tibshirani (1993), An Introduction to the
    Bootstrap.
  """
  ok = [(dict(c), np.asarray(v, np.float64)) for c, v in cells if np.all(np.isfinite(v))]
  if not ok:
    return Choice(None, math.nan, None, math.nan, math.nan, (), resamples)
  sign = 1.0 if larger else -1.0
  means = np.stack([v.mean(axis=0) for _, v in ok])  # (cells, items): mean over seeds
  scores = sign * means.mean(axis=1)
  order = np.argsort(-scores, kind="stable")
  best = int(order[0])
  items = means.shape[1]
  weights = np.random.default_rng(seed).multinomial(items, np.full(items, 1.0 / items), resamples)
  picks = np.argmax(sign * means @ weights.T / items, axis=0)
  shares = np.bincount(picks, minlength=len(ok)) / resamples
  runner = int(order[1]) if len(ok) > 1 else None
  others = [(ok[k][0], float(shares[k])) for k in np.argsort(-shares) if shares[k] and k != best]
  return Choice(
    pick=ok[best][0],
    score=float(means[best].mean()),
    runner_up=ok[runner][0] if runner is not None else None,
    gap=float(scores[best] - scores[runner]) if runner is not None else math.nan,
    stability=float(shares[best]),
    alternatives=tuple(others),
    resamples=resamples,
  )


def grid_edges(cell: Mapping[str, Any], grids: Mapping[str, Sequence[Any]]) -> list[str]:
  """Where a selected cell sits in its grid: one phrase per axis on which it is at an end.

  Args:
    cell: the selected cell (axis -> value; None for "off", e.g. no decay).
    grids: axis -> the values tuned over (None: the off value).

  Returns:
    E.g. ``["learning_rate 0.08 is the grid's largest"]``; empty when it is interior on every
    axis (then the grid straddles the optimum).

  Example:
    >>> from wd_jax.study import protocol
    >>> grids = {"learning_rate": [0.01, 0.02, 0.04], "tau_over_T": [None, 4.0, 1.0, 0.25]}
    >>> protocol.grid_edges({"learning_rate": 0.04, "tau_over_T": 1.0}, grids)
    ["learning_rate 0.04 is the grid's largest"]
    >>> protocol.grid_edges({"learning_rate": 0.02, "tau_over_T": None}, grids)
    ['tau_over_T is off (the grid includes no decay)']

  References:
    Bouthillier et al., "Accounting for variance in machine learning benchmarks", MLSys 2021
    (an optimum on a grid's edge is not an optimum).
  """
  out = []
  for axis, grid in grids.items():
    value = cell.get(axis)
    numbers = sorted(float(v) for v in grid if v is not None)
    if value is None:
      out.append(f"{axis} is off (the grid includes no decay)")
    elif len(numbers) < 2:
      continue
    elif math.isclose(float(value), numbers[0]):
      out.append(f"{axis} {value:g} is the grid's smallest")
    elif math.isclose(float(value), numbers[-1]):
      out.append(f"{axis} {value:g} is the grid's largest")
  return out


def record_mean(
  records: Sequence[Mapping[str, Any]], key: str, *, lr_at_least: float | None = None
) -> float:
  """The mean of `key` over a run's metric records, or over those whose logged learning rate is
  at least `lr_at_least` (the phase of a schedule where the step, and a decay multiplied by it,
  act: e.g. α_t ≥ α/2); NaN when none logged it.

  Args:
    records: a run's records (`wd_jax.engine.runlog.read_metrics`).
    key: a record field, e.g. ``"step_cos"``.
    lr_at_least: keep records with ``learning_rate`` ≥ this (None: all).

  Returns:
    The mean.

  Example:
    >>> from wd_jax.study import protocol
    >>> recs = [{"learning_rate": 0.02, "c": 0.9}, {"learning_rate": 0.005, "c": 0.5}]
    >>> protocol.record_mean(recs, "c"), protocol.record_mean(recs, "c", lr_at_least=0.01)
    (0.7, 0.9)

  References:
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019 (the decay's step
    is α_t λ θ: it acts while α_t is large).
  """
  xs = [
    float(r[key])
    for r in records
    if r.get(key) is not None
    and (lr_at_least is None or float(r.get("learning_rate", math.nan)) >= lr_at_least)
  ]
  return float(np.mean(xs)) if xs else math.nan
