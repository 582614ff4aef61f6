"""What every study shares: claims, verdicts over seeds, summaries and one colour per variant.

A study states a claim from the literature, measures it over several seeds, and
says whether the measurement supports it. The verdict is deliberately conservative:
when the seeds' spreads overlap it says "inconclusive" rather than pick a side.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from wd_jax.runlog import write_atomic

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

# One colour per optimizer variant, the same in every figure of every study.
VARIANT_COLORS = {
  "adam_l2": "#d62728",  # red: coupled L2 through Adam (the polluted one)
  "adamw": "#1f77b4",  # blue: decoupled, lr-coupled λ (torch/optax)
  "adamw_schedule": "#17becf",  # cyan: decoupled, schedule-coupled λ (L&H, Composer)
  "adamw_constant": "#9467bd",  # purple: decoupled, λ alone
  "adamw_corrected": "#8c564b",  # brown: AdamC
  "adams": "#e377c2",  # pink: stable weight decay
  "l2_m_only": "#ff7f0e",  # orange: L2 in m, not in v
  "l2_v_only": "#bcbd22",  # olive: L2 in v, not in m
  "l2_neither": "#2ca02c",  # green: L2 in neither moment
  "sgd_l2": "#7f7f7f",  # grey
  "sgdw": "#000000",  # black
  "prox_l1": "#2ca02c",
  "add_l1": "#ff7f0e",
  "none": "#aaaaaa",
  "whole": "#1f77b4",
  "early": "#2ca02c",
  "late": "#d62728",
}


def color(variant: str) -> str:
  """The variant's colour (a stable fallback for names not in `VARIANT_COLORS`)."""
  if variant in VARIANT_COLORS:
    return VARIANT_COLORS[variant]
  palette = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]
  return palette[sum(map(ord, variant)) % len(palette)]


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value) of the finite values."""
  xs = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if xs.size == 0:
    return math.nan, math.nan
  return float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else 0.0


def fmt(values: Sequence[float], digits: int = 3) -> str:
  """``"0.912 ± 0.004 (n=3)"``; non-finite values (diverged runs) are counted, not averaged."""
  bad = sum(1 for v in values if v is None or not math.isfinite(v))
  if bad == len(values):
    return f"diverged (n={len(values)})"
  m, s = mean_spread(values)
  note = f", {bad} of {len(values)} diverged" if bad else ""
  return f"{m:.{digits}f} ± {s:.{digits}f} (n={len(values) - bad}{note})"


@dataclasses.dataclass(frozen=True)
class Verdict:
  status: str  # SUPPORTED | NOT_SUPPORTED | INCONCLUSIVE
  detail: str


def compare(
  a: Sequence[float],
  b: Sequence[float],
  *,
  expect: str,
  names: tuple[str, str] = ("A", "B"),
  margin: float = 0.0,
) -> Verdict:
  """Verdict on "A is greater/less than B" or "A is about equal to B" from per-seed values.

  ``expect="greater"``: supported when mean(A) − sd(A) > mean(B) + sd(B) + margin; not
  supported when A's band lies at or below B's; inconclusive when the bands overlap.
  ``"less"`` mirrors it. ``"equal"``: supported when |mean(A) − mean(B)| ≤ margin
  (margin > 0 required), not supported when the bands are separated by more than
  margin, inconclusive otherwise.
  """
  if expect not in ("greater", "less", "equal"):
    raise ValueError(f"expect must be 'greater', 'less' or 'equal', got {expect!r}.")
  (ma, sa), (mb, sb) = mean_spread(a), mean_spread(b)
  na, nb = names
  detail = f"{na} {fmt(a)} vs {nb} {fmt(b)}"
  if any(math.isnan(x) for x in (ma, mb)):
    return Verdict(INCONCLUSIVE, detail + " (no finite measurement)")
  if expect == "equal":
    if margin <= 0:
      raise ValueError(f"margin must be > 0 for expect='equal', got {margin}.")
    if abs(ma - mb) <= margin:
      return Verdict(SUPPORTED, detail + f": within {margin:g}")
    gap = max(ma - sa - (mb + sb), mb - sb - (ma + sa))
    if gap > margin:
      return Verdict(NOT_SUPPORTED, detail + f": apart by more than {margin:g}")
    return Verdict(INCONCLUSIVE, detail + ": seeds' spread overlaps the margin")
  if expect == "less":
    ma, mb, sa, sb = -ma, -mb, sa, sb
  lo_a, hi_a, lo_b, hi_b = ma - sa, ma + sa, mb - sb, mb + sb
  if lo_a > hi_b + margin:
    return Verdict(SUPPORTED, detail)
  if hi_a <= lo_b:
    return Verdict(NOT_SUPPORTED, detail)
  return Verdict(INCONCLUSIVE, detail + ": the seeds' spreads overlap")


@dataclasses.dataclass
class Finding:
  claim: str  # what the literature says
  source: str  # who says it (REFERENCES.md section / paper)
  verdict: Verdict
  measured: str = ""  # what this run measured, in words


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  def cell(x):
    return f"{x:.4g}" if isinstance(x, float) else str(x)

  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
  return "\n".join(lines)


def write_summary(
  workdir: str,
  title: str,
  findings: Sequence[Finding],
  *,
  intro: str = "",
  tables: Sequence[tuple[str, str]] = (),
  figures: Sequence[tuple[str, str]] = (),
  footer: str = "",
) -> str:
  """Writes ``summary.md``: the claims with their verdicts, then tables and figures."""
  out = [f"# {title}", ""]
  if intro:
    out += [intro, ""]
  out += ["## Claims and verdicts", ""]
  for f in findings:
    out += [
      f"- **Claim** ({f.source}): {f.claim}",
      f"  - **Measured**: {f.measured or f.verdict.detail}",
      f"  - **Verdict**: {f.verdict.status} — {f.verdict.detail}",
    ]
  out.append("")
  for heading, table in tables:
    out += [f"## {heading}", "", table, ""]
  for caption, path in figures:
    out += [f"![{caption}]({os.path.basename(path)})", "", f"*{caption}*", ""]
  if footer:
    out += [footer, ""]
  path = os.path.join(workdir, "summary.md")
  write_atomic(path, "\n".join(out))
  return path


def check_workdir(workdir: str) -> None:
  """Refuses a workdir that already holds a finished study (before anything is computed)."""
  if os.path.exists(os.path.join(workdir, "summary.md")):
    raise ValueError(f"workdir {workdir!r} already holds a finished study; use a new workdir.")


def begin(config, workdir: str) -> None:
  """`check_workdir`, then creates `workdir` and writes ``config.json`` first."""
  check_workdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  write_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2) + "\n")


def main(run_fn, claim_width: int | None = None) -> None:
  """The absl main of a study script: ``--config`` (path[:variant]) and ``--workdir``.

  Flags are defined here, when the script runs, not at import, so tests can import several
  studies into one process. `run_fn(config, workdir)` returns ``{"findings": [...], ...}``
  and optionally ``"wall_time_sec"``; each claim is printed cut to `claim_width` characters.
  """
  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Study config (path[:variant]).")
  flags.DEFINE_string("workdir", None, "Output directory.")
  flags.mark_flags_as_required(["config", "workdir"])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    workdir = flags.FLAGS.workdir
    out = run_fn(flags.FLAGS.config, workdir)
    for f in out["findings"]:
      print(f"{f.verdict.status:>13}: {f.claim[:claim_width]}")
    wall = f" ({out['wall_time_sec']:.0f} s)" if "wall_time_sec" in out else ""
    print(f"wrote {workdir}/summary.md{wall}")

  app.run(_main)
