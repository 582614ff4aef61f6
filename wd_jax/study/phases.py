"""The two phases of a study, apart by construction: tune (and pre-register), then confirm.

A two-phase study's config holds, beside its own fields:

- ``phase``: ``"tune"`` or ``"confirm"``;
- ``run``: the run config every arm trains (its data draw is set per phase);
- ``tune``: ``seeds`` (a few) and ``dataset`` (the tuning draw: the loader's kwargs);
- ``confirm``: ``seeds`` (≥ ``min_seeds``, none of the tuning seeds) and ``dataset`` (a fresh
  draw: another generator seed, other files), with large validation and test splits;
- ``preregistration``: the file the tune phase writes and the confirm phase reads;
- ``claims``: declared before the tune phase runs (`wd_jax.study.claims`).

`tune_arms` trains each arm's grid on the tuning draw and scores every validation item;
`select` picks each arm's cell on validation, with its stability under resampled items and
where it sits in its grid; `preregister` writes the selected cells, the claims and the rules
(`wd_jax.study.preregistration`). `open_confirm` refuses to confirm anything else: no
pre-registration, claims or run that differ from it, seeds or data that are not fresh, a
workdir started on another pre-registration; `confirm_arms` then runs only the pre-registered
cells and reads each run's test split once, per item. The study itself supplies the arms, the
grids, the measurements and the figures.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from wd_jax import study as study_lib
from wd_jax.engine import config as engine_config
from wd_jax.engine.runlog import write_atomic
from wd_jax.study import preregistration, protocol, report, schema

PHASES = ("tune", "confirm")


def fields(**tune: schema.Rule) -> dict[str, schema.Rule]:
  """The config fields every two-phase study has (`wd_jax.study.schema` rules); `tune`: the
  study's own tune fields (its grid) beside ``seeds`` and ``dataset``."""
  return {
    "phase": schema.choice(PHASES),
    "preregistration": schema.text(),
    "run": schema.run_config(),
    "tune": schema.section({"seeds": schema.ints(), "dataset": schema.mapping(), **tune}),
    "confirm": schema.section(
      {"seeds": schema.ints(), "dataset": schema.mapping(), "min_seeds": schema.integer(minimum=2)}
    ),
  }


def phase_run(config: Any, phase: str) -> Any:
  """`config.run` on the data draw of `phase` (the draw's loader kwargs over the run's own, e.g.
  a corpus's ``seq_len``)."""
  run = config.run.copy_and_resolve_references()
  run.dataset.kwargs = {**dict(run.dataset.kwargs), **dict(config[phase].dataset)}
  return run


def run_record(config: Any) -> dict[str, Any]:
  """`config.run` as the pre-registration keeps it (the data draw is the phases' own)."""
  run = config.run.to_dict()
  if not run["dataset"].get("kwargs"):
    run["dataset"].pop("kwargs", None)
  return run


def _portable(dataset: Mapping[str, Any]) -> dict[str, Any]:
  """A draw as the pre-registration records it: file paths by name (no machine's directories)."""
  out = dict(dataset)
  if "paths" in out:
    out["paths"] = sorted(os.path.basename(p) for p in out["paths"])
  return out


def check_fresh(tune: Mapping[str, Any], confirm: Any, min_seeds: int) -> None:
  """Refuses a confirm phase whose seeds or data draw are not fresh.

  Args:
    tune: the pre-registration's ``tune`` record (``seeds``, ``dataset``).
    confirm: the config's ``confirm`` field (``seeds``, ``dataset``).
    min_seeds: the fewest confirm seeds the pre-registration allows.

  Raises:
    ValueError: too few seeds, a tuning seed reused, the tuning draw reused (same generator
      seed, or a file shared with it).
  """
  seeds = [int(s) for s in confirm.seeds]
  if len(seeds) < min_seeds:
    raise ValueError(
      f"config.confirm.seeds has {len(seeds)} seeds; the pre-registration asks ≥ {min_seeds}."
    )
  reused = sorted(set(seeds) & {int(s) for s in tune["seeds"]})
  if reused:
    raise ValueError(
      f"config.confirm.seeds reuses the tuning seeds {reused}: confirm on fresh seeds."
    )
  then, now = tune["dataset"], _portable(confirm.dataset)
  if "seed" in then and then.get("seed") == now.get("seed"):
    raise ValueError(
      f"config.confirm.dataset.seed {now.get('seed')} is the tuning draw's: confirm on a "
      "fresh draw."
    )
  shared = sorted(set(then.get("paths", ())) & set(now.get("paths", ())))
  if shared:
    raise ValueError(
      f"config.confirm.dataset shares {len(shared)} files with the tuning draw ({shared[:3]}...)."
    )
  if then == now:
    raise ValueError("config.confirm.dataset is the tuning draw: confirm on a fresh draw.")


# ----------------------------------------------------------------------------------------------
# Tune.


def work(config: Any, confirm_cells: int, tune_arms: int = 1) -> int:
  """Configuration-steps the phase trains (its progress line's total): a tune phase over
  learning rates × (τ/T values + no decay) per arm and seed; a confirm phase's cells per seed."""
  if config.phase == "tune":
    cells = len(config.tune.learning_rates) * (len(config.tune.tau_over_T) + 1)
    return cells * tune_arms * len(config.tune.seeds) * config.run.steps
  return confirm_cells * len(config.confirm.seeds) * config.run.steps


def tune_arms(
  runs: Mapping[str, Any],
  grids: Mapping[str, Sequence[Mapping[str, Any]]],
  config: Any,
  workdir: str,
) -> dict[str, list[dict[str, Any]]]:
  """Trains each arm's grid × ``config.tune.seeds`` on the tuning draw (`protocol.run_cells`,
  every validation item scored); the test split is never read.

  Args:
    runs: arm -> its run config on the tuning draw (`phase_run` with the arm's optimizer).
    grids: arm -> its cells.
    config: the study config.
    workdir: the tune workdir (one sweep per arm inside).

  Returns:
    arm -> rows (with ``val_items``).
  """
  return {
    arm: protocol.run_cells(
      runs[arm], grids[arm], config.tune.seeds, os.path.join(workdir, arm), strategy=config.strategy
    )
    for arm in grids
  }


@dataclasses.dataclass(frozen=True)
class Selection:
  """An arm's selected cell: the `protocol.Choice` and where the pick sits in its grid."""

  choice: protocol.Choice
  edges: tuple[str, ...]

  def record(self) -> dict[str, Any]:
    """What the pre-registration keeps of it."""
    c = self.choice
    return {
      "pick": c.pick,
      "validation_score": c.score,
      "runner_up": c.runner_up,
      "gap_to_runner_up": c.gap,
      "stability": c.stability,
      "resamples": c.resamples,
      "alternatives": [{"cell": cell, "share": share} for cell, share in c.alternatives],
      "edges": list(self.edges),
    }


def select(
  candidates: Mapping[str, Sequence[tuple[Mapping[str, Any], np.ndarray]]],
  axes: Mapping[str, Sequence[Any]],
  *,
  larger: bool,
  resamples: int,
) -> dict[str, Selection]:
  """Each arm's cell selected on validation items (`protocol.choose`) and its grid edges.

  Args:
    candidates: arm -> (cell, (seeds, items) validation outcomes) pairs.
    axes: the grid's axes (name -> values; None for "off"), for `protocol.grid_edges`.
    larger: whether larger is better.
    resamples: item resamples for the stability.

  Returns:
    arm -> `Selection`.
  """
  out = {}
  for arm, cells in candidates.items():
    choice = protocol.choose(cells, larger=larger, resamples=resamples)
    edges = protocol.grid_edges(choice.pick, axes) if choice.pick else ["every cell diverged"]
    out[arm] = Selection(choice, tuple(edges))
  return out


def _code_commit() -> str:
  try:
    out = subprocess.run(
      ["git", "describe", "--always", "--dirty"],
      capture_output=True,
      text=True,
      timeout=30,
      cwd=os.path.dirname(__file__),
    )
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return out.stdout.strip() or "unknown"


def preregister(
  config: Any,
  study: str,
  cells: Mapping[str, Sequence[Mapping[str, Any]]],
  selections: Mapping[str, Selection],
  tune_extra: Mapping[str, Any],
) -> preregistration.Preregistration:
  """Writes the pre-registration to ``config.preregistration``.

  Args:
    config: the study config (its claims, run, tune and confirm fields).
    study: the study's name (and task).
    cells: arm -> the cells the confirm phase runs (each with a ``role``).
    selections: arm -> its `Selection` on the tuning draw.
    tune_extra: more of the tune phase to record (e.g. its grid).

  Returns:
    The `wd_jax.study.preregistration.Preregistration` written.
  """
  body = {
    "study": study,
    "claims": config.claims,
    "run": run_record(config),
    "tune": {
      "seeds": list(config.tune.seeds),
      "dataset": _portable(config.tune.dataset),
      **tune_extra,
    },
    "rules": {
      "min_confirm_seeds": int(config.confirm.min_seeds),
      "fresh_seeds": True,
      "fresh_data": True,
    },
    "cells": {arm: list(c) for arm, c in cells.items()},
    "selection": {arm: s.record() for arm, s in selections.items()},
    "written": {
      "utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "code": _code_commit(),
    },
  }
  return preregistration.write(config.preregistration, body)


# ----------------------------------------------------------------------------------------------
# Confirm.


def open_confirm(config: Any, workdir: str) -> preregistration.Preregistration:
  """Reads the pre-registration and refuses anything it does not allow; then ties the workdir to
  it (`wd_jax.study.preregistration.bind`). Raises before anything is trained.

  Args:
    config: the study config (phase "confirm").
    workdir: the confirm workdir.

  Returns:
    The pre-registration.

  Raises:
    ValueError: no pre-registration, claims or run that differ from it (naming its digest),
      seeds or data that are not fresh, a workdir bound to another pre-registration.
  """
  prereg = preregistration.read(config.preregistration)
  preregistration.check_same(prereg, "config.claims", config.claims, "claims")
  preregistration.check_same(
    prereg, "config.run", run_record(config), "run", engine_config.ABSENT_MEANS
  )
  check_fresh(prereg.body["tune"], config.confirm, prereg.body["rules"]["min_confirm_seeds"])
  preregistration.bind(workdir, prereg)
  return prereg


def start_confirm(config: Any, workdir: str, arm_run: Callable[[Any, str, str], Any]):
  """`open_confirm`, then the workdir begun (`wd_jax.study.begin`) and every pre-registered
  arm's cells run on the confirm draw (`confirm_arms`; ``arm_run(config, arm, "confirm")`` is
  the arm's run config).

  Returns:
    (the pre-registration, its cells by arm, the rows by arm).
  """
  prereg = open_confirm(config, workdir)
  study_lib.begin(config, workdir)
  cells = prereg.body["cells"]
  runs = {arm: arm_run(config, arm, "confirm") for arm in cells}
  return prereg, cells, confirm_arms(runs, prereg, config, workdir)


def confirm_arms(
  runs: Mapping[str, Any], prereg: preregistration.Preregistration, config: Any, workdir: str
) -> dict[str, list[dict[str, Any]]]:
  """Runs every pre-registered cell × ``config.confirm.seeds`` on the confirm draw and reads
  each run's test split once (``row["test_items"]``).

  Args:
    runs: arm -> its run config on the confirm draw.
    prereg: the pre-registration (`open_confirm`).
    config: the study config.
    workdir: the confirm workdir.

  Returns:
    arm -> rows.
  """
  return {
    arm: protocol.run_cells(
      runs[arm],
      cells,
      config.confirm.seeds,
      os.path.join(workdir, arm),
      strategy=config.strategy,
      read_test=True,
    )
    for arm, cells in prereg.body["cells"].items()
  }


def describe_prereg(prereg: preregistration.Preregistration) -> str:
  """The summary's line: digest, file and the commit that holds it."""
  rel = os.path.relpath(prereg.path)
  return f"sha256 `{prereg.digest}` ({rel}), {preregistration.provenance(prereg)}"


def write_tune_summary(
  workdir: str,
  title: str,
  prereg: preregistration.Preregistration,
  selections: Mapping[str, Selection],
  tables: Sequence[tuple[str, str]] = (),
) -> str:
  """The tune phase's ``summary.md``: the pre-registration written, each arm's selection (cell,
  validation score, runner-up and gap, stability, grid edges) and the study's tables. No claim is
  decided here: the claims are the confirm phase's."""
  from wd_jax import study as study_lib

  rows = []
  for arm, s in selections.items():
    c = s.choice
    rows.append(
      [
        arm,
        cell_text(c.pick),
        f"{c.score:.4f}",
        f"{cell_text(c.runner_up)} ({c.gap:+.4f})",
        f"{c.stability:.2f}",
        "; ".join(s.edges) or "interior",
      ]
    )
  header = ["arm", "selected", "validation", "runner-up (gap)", "stability", "grid edges"]
  out = [f"# {title}", "", f"**Pre-registration written**: {describe_prereg(prereg)}.", ""]
  out += [
    "No claim is decided here. Commit the pre-registration; the confirm phase runs only its "
    "cells, on fresh seeds and a fresh data draw. Stability: the share of bootstrap resamples of "
    "the validation items (the same resample for every cell) that pick the same cell.",
    "",
    "## Selected on validation",
    "",
    study_lib.markdown_table(header, rows),
    "",
  ]
  for heading, table in tables:
    out += [f"## {heading}", "", table, ""]
  path = os.path.join(workdir, "summary.md")
  write_atomic(path, "\n".join(out))
  return path


def cell_text(cell: Mapping[str, Any] | None) -> str:
  """A cell in words: ``"learning_rate 0.02, tau_over_T 0.125"`` ("none" for None)."""
  if not cell:
    return "none"
  return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in cell.items())


# ----------------------------------------------------------------------------------------------
# What a study's tables and measurements read from the rows.


def scored(
  rows: Sequence[Mapping[str, Any]],
  cells: Sequence[Mapping[str, Any]],
  key: str,
  metric: str,
  seeds: Sequence[int],
  labels: Sequence[str] = ("learning_rate", "tau_over_T"),
) -> list[tuple[dict[str, Any], np.ndarray]]:
  """(cell labels, (seeds, items) outcomes) for each cell: what `select` and the claims read.

  Args:
    rows: one arm's rows (`protocol.run_cells`).
    cells: its cells.
    key: ``"val_items"`` (tune) or ``"test_items"`` (confirm).
    metric: ``"accuracy"`` or ``"loss"``.
    seeds: the seed order.
    labels: the cell keys that name it (the grid's axes).

  Returns:
    One pair per cell, in order.
  """
  out = []
  for c in cells:
    cell_rows = protocol.rows_of(rows, protocol.fields_of(c))
    label = {k: c[k] for k in labels}
    out.append((label, protocol.seeds_items(cell_rows, key, metric, seeds)))
  return out


def per_seed(rows: Sequence[Mapping[str, Any]], cell: Mapping[str, Any], fn) -> list[float]:
  """`fn(row)` for each seed's row of `cell` (seed order), NaN where the run diverged."""
  cell_rows = protocol.rows_of(rows, protocol.fields_of(cell))
  return [math.nan if r["diverged"] else float(fn(r)) for r in cell_rows]


def arms_table(
  prereg: preregistration.Preregistration,
  items: Mapping[str, np.ndarray],
  metric: str,
  reference: str,
  alpha: float = 0.05,
) -> str:
  """Each arm's pre-registered (tuned) cell, its selection's stability and grid edges, its test
  metric over seeds × items and its difference from the `reference` arm, with (1−2α) intervals
  over seeds and items (`wd_jax.study.stats.seeds_items_interval`).

  Args:
    prereg: the pre-registration (cells and selections).
    items: arm -> (seeds, items) test outcomes at its tuned cell.
    metric: the metric's name, for the header.
    reference: the arm the differences are taken from (e.g. plain Adam).
    alpha: the interval's level.

  Returns:
    A markdown table.
  """
  from wd_jax import study as study_lib
  from wd_jax.study import stats

  pct = f"{100 * (1 - 2 * alpha):.0f}%"
  rows = []
  for arm, v in items.items():
    s, c = prereg.body["selection"][arm], prereg.body["cells"][arm][0]
    m, lo, hi = stats.seeds_items_interval(v, alpha=alpha)
    diff = "—"
    if arm != reference:
      d, dlo, dhi = stats.seeds_items_interval(v, items[reference], alpha)
      diff = f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
    cell = ", ".join(f"{k} {c[k]:.3g}" for k in ("learning_rate", "weight_decay") if k in c)
    if c.get("tau_over_T") is not None:
      cell += f", τ/T {c['tau_over_T']:g}"
    edges = "; ".join(s["edges"]) or "interior"
    rows.append([arm, cell, f"{s['stability']:.2f}", edges, f"{m:.4f} [{lo:.4f}, {hi:.4f}]", diff])
  head = ["arm", "pre-registered cell", "stability", "grid edges", f"{metric} [{pct} CI]"]
  return study_lib.markdown_table([*head, f"− {reference} [{pct} CI]"], rows)


def write_run_lines(
  workdir: str,
  rows: Mapping[str, Sequence[Mapping[str, Any]]],
  cells: Mapping[str, Sequence[Mapping[str, Any]]],
  extra: Mapping[str, Any] | None = None,
) -> str:
  """Writes ``metrics.jsonl``: one line per run (arm, cell roles, lr, λ, τ/T, seed, the
  validation and test metrics, diverged) plus ``name: fn(row)`` for each of `extra`.

  Returns:
    "k of n" runs diverged.
  """
  keep = ("learning_rate", "weight_decay", "tau_over_T", "seed", "val_accuracy", "val_loss")
  keep += ("test_accuracy", "test_loss", "diverged")
  lines, bad, total = [], 0, 0
  for arm, arm_rows in rows.items():
    for r in arm_rows:
      roles = [c["roles"] for c in cells[arm] if protocol.rows_of([r], protocol.fields_of(c))]
      line = {"arm": arm, "roles": roles[0] if roles else [], **{k: r.get(k) for k in keep}}
      line.update(
        {k: math.nan if r["diverged"] else float(fn(r)) for k, fn in (extra or {}).items()}
      )
      lines.append(json.dumps(line) + "\n")
      bad, total = bad + bool(r["diverged"]), total + 1
  write_atomic(os.path.join(workdir, "metrics.jsonl"), "".join(lines))
  return f"{bad} of {total}"


def tune_panels(
  candidates: Mapping[str, Sequence[tuple[Mapping[str, Any], np.ndarray]]],
  selections: Mapping[str, Selection],
  path: str,
  *,
  x: str = "learning_rate",
  y: str = "tau_over_T",
  y_value=lambda v: 0.0 if v is None else 1.0 / v,
  labels: tuple[str, str] = ("peak lr", "T/τ (0: no decay)"),
  higher_is_better: bool = True,
) -> str:
  """A tune phase's figure: each arm's mean validation metric over its grid, one heat-map panel
  per arm on a shared colour scale (`wd_jax.study.report.heatmap_panel`), its pick outlined.

  Args:
    candidates: arm -> (cell, (seeds, items) validation outcomes), as `select` read them.
    selections: arm -> its `Selection`.
    path: the PNG to write.
    x: the cell key of the columns.
    y: the cell key of the rows.
    y_value: a row's position from its key's value (default: T/τ, 0 for no decay).
    labels: the x and y axis labels.
    higher_is_better: the colour map's direction.

  Returns:
    `path`.
  """
  cells = [c for cs in candidates.values() for c, _ in cs]
  xs, ys = sorted({c[x] for c in cells}), sorted({y_value(c[y]) for c in cells})
  at = lambda c: (ys.index(y_value(c[y])), xs.index(c[x]))
  panels = {}
  for arm, cs in candidates.items():
    grid = np.full((len(ys), len(xs)), np.nan)
    for c, v in cs:
      grid[at(c)] = np.mean(v)
    choice = selections[arm].choice
    panels[f"{arm} (stability {choice.stability:.2f})"] = (grid, at(choice.pick))
  norm, _ = report.heatmap_scale([g for g, _ in panels.values()])
  cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r")
  fig, axes = report.panel_axes(len(panels))
  for ax, (title, (grid, pick)) in zip(axes.flat, panels.items()):
    report.heatmap_panel(ax, xs, ys, grid, norm=norm, cmap=cmap, outline=pick, fmt="{:.3f}".format)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(labels[0], fontsize=8)
    ax.set_ylabel(labels[1], fontsize=8)
  fig.savefig(path, dpi=report.DPI)
  plt.close(fig)
  return path


def tune_lines(selections: Mapping[str, Selection]) -> list[str]:
  """One printed line per arm: its pick, stability and grid edges."""
  return [
    f"{arm}: {cell_text(s.choice.pick)}, stability {s.choice.stability:.2f}, "
    f"{'; '.join(s.edges) or 'interior'}"
    for arm, s in selections.items()
  ]
