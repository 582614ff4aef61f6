"""A sweep's outputs: results.csv, results.md, strategy.json and summary.md."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from wd_jax.engine.runlog import write_atomic

# Columns every results row has, before the other grid fields and the metrics.
HYPER_COLUMNS = ("optimizer", "learning_rate", "weight_decay", "seed")
# What a row carries that is not a column: timings, the state, the shard that trained it.
NOT_COLUMNS = ("wall_time_sec", "state", "shard")
# The metrics of the runs whose test split a sweep read once (after selecting on validation).
TEST_COLUMNS = ("test_loss", "test_accuracy")


def metric_columns(split: str) -> tuple[str, ...]:
  """The metric columns of a sweep evaluated on `split` ("test", or "val" with a validation
  split: the test split is then read only for the selected rows, `TEST_COLUMNS`)."""
  return (
    "loss",
    "accuracy",
    f"{split}_loss",
    f"{split}_accuracy",
    f"best_{split}_accuracy",
    f"best_{split}_step",
    "diverged",
    "diverged_at_step",
    "steps",
    "strategy",
    "run_dir",
  )


def _columns(rows: Sequence[Mapping[str, Any]], split: str) -> list[str]:
  metrics = metric_columns(split)
  tests = list(TEST_COLUMNS) if split == "val" and any("test_loss" in r for r in rows) else []
  known = ("index", "name", *HYPER_COLUMNS, *metrics, *NOT_COLUMNS, *tests)
  extra = list(dict.fromkeys(k for row in rows for k in row if k not in known))
  return ["index", "name", *HYPER_COLUMNS, *extra, *metrics, *tests]


def _csv_value(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return repr(v)
  if isinstance(v, (tuple, list)):
    return json.dumps(list(v))
  return str(v)


def _md_value(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, bool):
    return "yes" if v else ""
  if isinstance(v, float):
    return "" if math.isnan(v) else f"{v:.4g}"
  return _csv_value(v)


def best_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
  """The row with the best final validation accuracy (else validation loss); None when the
  rows have no validation metrics: a sweep never picks its best cell on the test split."""
  ok = [r for r in rows if not r["diverged"]]
  for key, sign in (("val_accuracy", 1), ("val_loss", -1)):
    scored = [r for r in ok if math.isfinite(r.get(key, math.nan))]
    if scored:
      return max(scored, key=lambda r: sign * r[key])
  return None


def _markdown_table(rows, columns, best) -> str:
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    cells = [_md_value(r.get(c)) for c in columns]
    if best is not None and r["index"] == best["index"]:
      cells = [f"**{c}**" if c else c for c in cells]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _tables(dest: str, rows, split: str) -> list[str]:
  """results.csv and results.md; returns the markdown columns."""
  columns = _columns(rows, split)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  for r in rows:
    writer.writerow([_csv_value(r.get(c)) for c in columns])
  write_atomic(os.path.join(dest, "results.csv"), buf.getvalue())
  md_cols = [c for c in columns if c not in ("strategy", "run_dir")]
  if split == "val":
    note = "the best (final validation accuracy) in bold; test metrics only for the selected rows"
  else:
    note = "no validation split, so no row is marked best (see summary.md)"
  write_atomic(
    os.path.join(dest, "results.md"),
    f"# Sweep results\n\nOne row per configuration; {note}.\n\n"
    + _markdown_table(rows, md_cols, best_row(rows)),
  )
  return md_cols


def _status_line(info: Mapping[str, Any]) -> str:
  done, total = info["runs_done"], info["configurations"]
  if info["status"] == "preempted":
    return (
      f"- status: **preempted** (interrupted by signal {info['signal']}): {done} of {total} runs "
      "done and written; continue with --resume (finished runs are kept, the others trained "
      "again from step 0)"
    )
  if info.get("shard"):
    return f"- status: shard {info['shard']} completed: {done} of {total} runs; merge the shards"
  return f"- status: completed, {done} of {total} runs"


def _selection_lines(rows, split: str, info: Mapping[str, Any], columns) -> list[str]:
  """Which cell is best and what its test split says, or why none is picked."""
  if info["status"] != "completed" or info.get("shard"):
    return ["- best: none picked until every run has finished (and the shards are merged)"]
  if split != "val":
    return [
      "- best: none picked: without a validation split the runs were evaluated on the test "
      "split, and a best cell picked on it would be optimistic; set "
      "config.dataset.validation_fraction > 0 to select on validation"
    ]
  best = best_row(rows)
  if best is None:
    return ["- best: none (every run diverged)"]
  hp = ", ".join(f"{k} {_md_value(best.get(k))}" for k in columns[2 : columns.index("loss")])
  line = (
    f"- best on validation: {best['name']} ({hp}): final validation accuracy "
    f"{_md_value(best['val_accuracy'])}, best {_md_value(best['best_val_accuracy'])} at step "
    f"{best['best_val_step']}, validation loss {_md_value(best['val_loss'])}"
  )
  if "test_loss" in best:
    line += (
      f"; test accuracy {_md_value(best.get('test_accuracy'))}, test loss "
      f"{_md_value(best['test_loss'])} (the test split, read once)"
    )
  lines = [line]
  if info.get("test_read_for"):
    lines.append("- test split read once, for: " + ", ".join(info["test_read_for"]))
  return lines


def write_outputs(dest: str, base_config, rows, info: Mapping[str, Any], split: str) -> None:
  """results.csv, results.md, strategy.json and summary.md in `dest`.

  `info` is strategy.json's content; it names the status (``completed`` or ``preempted``),
  ``runs_done``, ``configurations``, the strategy and the wall time.
  """
  md_cols = _tables(dest, rows, split)
  write_atomic(os.path.join(dest, "strategy.json"), json.dumps(info, indent=2) + "\n")
  c, o = base_config, base_config.optimizer
  diverged = [r for r in rows if r["diverged"]]
  lines = [
    f"# Sweep: {c.dataset.name} / {c.model.name} / {o.name} (base config)",
    "",
    _status_line(info),
    f"- grid fields: {', '.join(info['fields'])}",
    f"- {info['configurations']} configurations, {len(diverged)} diverged; steps {c.steps}, "
    f"batch {c.batch_size}; lr schedule {o.lr_schedule} (the swept lr is its peak), λ schedule "
    f"{o.wd_schedule}",
    f"- strategy: {info['chosen']} (requested {info['requested']}); wall time "
    f"{info['wall_time_sec']:.1f} s",
    *_selection_lines(rows, split, info, md_cols),
  ]
  if diverged:
    lines.append("- diverged: " + ", ".join(r["name"] for r in diverged))
  lines += _auto_lines(info)
  lines += ["", "## Top configurations", ""]
  key = f"{split}_accuracy"
  ranked = sorted(
    (r for r in rows if not r["diverged"]),
    key=lambda r: -r[key] if math.isfinite(r[key]) else math.inf,
  )[:5]
  best = best_row(rows) if info["status"] == "completed" else None
  lines.append(_markdown_table(ranked, md_cols, best) if ranked else "(none finished)\n")
  lines.append("All rows: results.md / results.csv; per-run metrics: runs/<name>/metrics.jsonl.")
  write_atomic(os.path.join(dest, "summary.md"), "\n".join(lines) + "\n")


def _auto_lines(info: Mapping[str, Any]) -> list[str]:
  lines = []
  if info.get("recorded_choice"):
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["recorded_choice"]["measured_at"]))
    lines.append(f"- auto: the choice recorded for this sweep's shape on {when} (not measured)")
  if info.get("measurements"):
    lines += ["", "## auto: measurements (predicted seconds for the whole sweep)", ""]
    for name, v in info["measurements"].items():
      if isinstance(v, dict):
        lines.append(f"- {name}: " + ", ".join(f"{k} {_md_value(x)}" for k, x in v.items()))
  return lines


def jsonable_grid(grid_or_list: Any) -> Any:
  return json.loads(json.dumps(grid_or_list, default=lambda v: repr(v)))
