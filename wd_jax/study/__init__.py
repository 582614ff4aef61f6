"""What every study shares: its absl main, its workdir, summaries and one colour per variant.

A study declares its claims in its config before it runs (`wd_jax.study.claims`), selects
configurations on a validation split and reads the test split once (`wd_jax.study.protocol`),
measures over paired seeds, and lets `wd_jax.study.stats` decide each claim. Config fields are
checked by declared rules (`wd_jax.study.schema`) before anything is written.
"""

from __future__ import annotations

from wd_jax._extras import missing
from wd_jax.engine import progress  # first: the studies run on the engine (names its extra)

try:
  import matplotlib  # noqa: F401
  import scipy  # noqa: F401
except ModuleNotFoundError as e:
  raise missing("studies", e) from None

# isort: split

import contextlib
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from wd_jax.engine.runlog import write_atomic
from wd_jax.study import claims, schema, stats

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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  def cell(x):
    return f"{x:.4g}" if isinstance(x, float) else str(x)

  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
  return "\n".join(lines)


def _finding_lines(f: claims.Finding) -> list[str]:
  d = f.decision
  lines = [
    f"- **{f.claim.name}** ({f.claim.source}): {f.claim.statement}",
    f"  - **Declared**: {d.comparison}"
    + (f", margin {d.margin:g}" if d.comparison != "slope_within" else "")
    + f", α = {d.alpha:g}",
  ]
  if f.measured:
    lines.append(f"  - **Measured**: {f.measured}")
  lines.append(f"  - **Verdict**: {d.verdict} — {d.detail}")
  if f.survives_holm is not None:
    kept = "survives" if f.survives_holm else "does not survive"
    lines.append(f"  - **Holm**: adjusted p = {f.holm_p:.2g}; {kept} the correction")
  if d.verdict == stats.INCONCLUSIVE and not d.n_needed and "would not decide" not in d.detail:
    lines.append("  - **Seeds**: more seeds would not decide it at the observed effect")
  elif d.verdict != stats.INCONCLUSIVE and math.isfinite(d.power):  # (inconclusive: in detail)
    lines.append(f"  - **Power**: {d.power:.2f} at effect {d.power_at:+.3g}")
  return lines


def write_summary(
  workdir: str,
  title: str,
  findings: Sequence[claims.Finding],
  *,
  intro: str = "",
  tables: Sequence[tuple[str, str]] = (),
  figures: Sequence[tuple[str, str]] = (),
  footer: str = "",
  preregistered: str = "",
) -> str:
  """Writes ``summary.md``: the pre-registered claims and their verdicts (empirical ones, then
  those true by construction), the multiple-claims note, then tables and figures.

  `preregistered`: where the claims were frozen (a confirm phase names the pre-registration's
  digest and the commit that holds it); default: the run's own config.json."""
  out = [f"# {title}", ""]
  if intro:
    out += [intro, ""]
  empirical = [f for f in findings if f.claim.kind == "empirical"]
  built_in = [f for f in findings if f.claim.kind == "construction"]
  where = preregistered or "declared in the config before the run (config.json)"
  out += [
    "## Claims and verdicts",
    "",
    f"**Pre-registration**: {where}.",
    "",
    "Each claim (measurement, comparison, margin, α) is decided by `wd_jax.study.stats` on the "
    "two-sided (1−2α) t interval of its effect (equivalence by TOST): paired by seed, and for "
    "measurements per test item over seeds × items (crossed random effects), so the interval "
    "counts the test set as a sample too.",
    "",
  ]
  for f in empirical:
    out += _finding_lines(f)
  if empirical:
    alpha = empirical[0].decision.alpha
    note = stats.multiple_claims_note({f.claim.name: f.decision for f in empirical}, alpha)
    out += ["", f"*Multiple claims*: {note}", ""]
  if built_in:
    out += [
      "## True by construction",
      "",
      "These follow from identities or the algebra of the update; they are measured to check "
      "the code, not evidence about training.",
      "",
    ]
    for f in built_in:
      out += _finding_lines(f)
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


def check(config, workdir: str, fields, measurement_names) -> list[claims.Claim]:
  """Everything a study checks before it computes anything: its config fields (declared
  `schema` rules), its claims (each reads a measurement in `measurement_names(config)`), and
  its workdir. Returns the parsed claims."""
  schema.check(config, fields)
  declared = claims.check(config.claims, measurement_names(config))
  check_workdir(workdir)
  return declared


def decide_claims(config, values: dict[str, Any]) -> list[claims.Finding]:
  """The config's claims decided from the measurements `values` (`claims.decide`), each finding
  saying what it measured: a seeds × items array by its mean, per-seed values by `fmt`."""
  fmt_one = lambda v: f"{np.nanmean(v):.4f}" if np.ndim(v) == 2 else fmt(v, 4)
  said = lambda c: "; ".join(f"{m}: {fmt_one(values[m])}" for m in c.measurements)
  return claims.decide(claims.parse(config.claims), values, said)


def two_phases(tune, confirm, fields, measurement_names):
  """The ``run(config, workdir)`` of a two-phase study: `check`, then `tune` or `confirm` by
  ``config.phase``."""

  def run(config, workdir: str) -> dict[str, Any]:
    check(config, workdir, fields, measurement_names)
    return tune(config, workdir) if config.phase == "tune" else confirm(config, workdir)

  return run


def check_workdir(workdir: str) -> None:
  """Refuses a workdir that already holds a finished study (before anything is computed)."""
  if os.path.exists(os.path.join(workdir, "summary.md")):
    raise ValueError(f"workdir {workdir!r} already holds a finished study; use a new workdir.")


def begin(config, workdir: str) -> None:
  """`check_workdir`, then creates `workdir` and writes ``config.json`` first."""
  check_workdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  write_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2) + "\n")


def main(run_fn, claim_width: int | None = None, work=None) -> None:
  """The absl main of a study script: ``--config`` (path[:variant]) and ``--workdir``.

  Flags are defined here, when the script runs, not at import, so tests can import several
  studies into one process. `run_fn(config, workdir)` returns ``{"findings": [...], ...}``
  and optionally ``"wall_time_sec"`` and ``"lines"`` (more to print, e.g. a tune phase's
  selections); each claim is printed cut to `claim_width` characters.
  `work(config)`, the configuration-steps the study will train, gives the study one progress
  line with an ETA over all its sweeps. Exit codes and one-line errors as `wd_jax.engine.cli` says.
  """
  from absl import app, flags

  from wd_jax.engine import cli

  cli.define_config(help="Study config (path[:variant]).")
  flags.DEFINE_string("workdir", None, "Output directory.")
  flags.mark_flags_as_required(["config", "workdir"])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    workdir, config = flags.FLAGS.workdir, flags.FLAGS.config
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    with progress.task(f"study {name}", work(config)) if work else contextlib.nullcontext():
      out = run_fn(config, workdir)
    for f in out["findings"]:
      print(f"{f.decision.verdict:>13}: {f.claim.name}: {f.claim.statement[:claim_width]}")
    for line in out.get("lines", ()):
      print(line)
    wall = f" ({out['wall_time_sec']:.0f} s)" if "wall_time_sec" in out else ""
    print(f"wrote {workdir}/summary.md{wall}")

  cli.run(_main)
