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


def metric_columns(split: str) -> tuple[str, ...]:
  """The metric columns of a sweep evaluated on `split` ("test", or "val" with a validation
  split: the test split is then not read by the sweep at all)."""
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
  extra = []
  for row in rows:
    for k in row:
      if k not in ("index", "name", *HYPER_COLUMNS, *metrics, "wall_time_sec", "state"):
        if k not in extra:
          extra.append(k)
  return ["index", "name", *HYPER_COLUMNS, *extra, *metrics]


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


def best_row(rows: Sequence[Mapping[str, Any]], split: str) -> Mapping[str, Any] | None:
  """The row with the best final `split` accuracy (else `split` loss, else train loss)."""
  ok = [r for r in rows if not r["diverged"]]
  for key, sign in ((f"{split}_accuracy", 1), (f"{split}_loss", -1), ("loss", -1)):
    scored = [r for r in ok if math.isfinite(r.get(key, math.nan))]
    if scored:
      return max(scored, key=lambda r: sign * r[key])
  return None


def _markdown_table(rows, columns, split) -> str:
  best = best_row(rows, split)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    cells = [_md_value(r.get(c)) for c in columns]
    if best is not None and r["index"] == best["index"]:
      cells = [f"**{c}**" if c else c for c in cells]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_outputs(workdir, base_config, rows, info, wall, split: str) -> None:
  """results.csv, results.md, strategy.json and summary.md of a finished sweep."""
  columns = _columns(rows, split)
  name = {"test": "test", "val": "validation"}[split]
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  for r in rows:
    writer.writerow([_csv_value(r.get(c)) for c in columns])
  write_atomic(os.path.join(workdir, "results.csv"), buf.getvalue())
  md_cols = [c for c in columns if c not in ("strategy", "run_dir")]
  write_atomic(
    os.path.join(workdir, "results.md"),
    f"# Sweep results\n\nOne row per configuration; the best (final {name} accuracy) in bold.\n\n"
    + _markdown_table(rows, md_cols, split),
  )
  write_atomic(os.path.join(workdir, "strategy.json"), json.dumps(info, indent=2) + "\n")
  c, o = base_config, base_config.optimizer
  diverged = [r for r in rows if r["diverged"]]
  best = best_row(rows, split)
  lines = [
    f"# Sweep: {c.dataset.name} / {c.model.name} / {o.name} (base config)",
    "",
    f"- grid fields: {', '.join(info['fields'])}",
    f"- {len(rows)} configurations, {len(diverged)} diverged; steps {c.steps}, batch "
    f"{c.batch_size}; lr schedule {o.lr_schedule} (the swept lr is its peak), λ schedule "
    f"{o.wd_schedule}",
    f"- strategy: {info['chosen']} (requested {info['requested']}); wall time {wall:.1f} s",
  ]
  if best is not None:
    hp = ", ".join(f"{k} {_md_value(best.get(k))}" for k in columns[2 : columns.index("loss")])
    lines.append(
      f"- best: {best['name']} ({hp}): final {name} accuracy "
      f"{_md_value(best[f'{split}_accuracy'])}, best {_md_value(best[f'best_{split}_accuracy'])}"
      f" at step {best[f'best_{split}_step']}, {name} loss {_md_value(best[f'{split}_loss'])}, "
      f"train loss {_md_value(best['loss'])}"
    )
  if diverged:
    lines.append("- diverged: " + ", ".join(r["name"] for r in diverged))
  if info.get("interrupted"):
    stopped = info["interrupted"]
    lines.append(
      f"- **interrupted** by signal {stopped['signal']}: {stopped['rows_written']} of "
      f"{info['configurations']} runs written; rows with fewer steps than the config stopped "
      "early"
    )
  if info.get("recorded_choice"):
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["recorded_choice"]["measured_at"]))
    lines.append(f"- auto: the choice recorded for this sweep's shape on {when} (not measured)")
  if info.get("measurements"):
    lines += ["", "## auto: measurements (predicted seconds for the whole sweep)", ""]
    for name, v in info["measurements"].items():
      if isinstance(v, dict):
        lines.append(f"- {name}: " + ", ".join(f"{k} {_md_value(x)}" for k, x in v.items()))
  lines += ["", "## Top configurations", ""]
  key = f"{split}_accuracy"
  ranked = sorted(
    (r for r in rows if not r["diverged"]),
    key=lambda r: -r[key] if math.isfinite(r[key]) else math.inf,
  )[:5]
  lines.append(_markdown_table(ranked, md_cols, split) if ranked else "(none finished)\n")
  lines.append("All rows: results.md / results.csv; per-run metrics: runs/<name>/metrics.jsonl.")
  write_atomic(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")


def jsonable_grid(grid_or_list: Any) -> Any:
  return json.loads(json.dumps(grid_or_list, default=lambda v: repr(v)))
