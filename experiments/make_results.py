"""Runs every study's default config and writes docs/RESULTS.md with its figures.

  python experiments/make_results.py --runs_dir=runs/results          # run what is missing, write
  python experiments/make_results.py --runs_dir=runs/results --only=l2_pollution,norms

A study whose workdir already has a summary.md is not run again (delete it to rerun). Each
study runs as its own process (the command a reader would type) and its wall time on this
machine is recorded in ``<runs_dir>/<study>/runtime.json`` with the load average of the machine
(`os.getloadavg`) before and after, and quoted in the page. With ``--only``, the other studies'
sections of the existing page are kept as they are. A study's extra variants (``EXTRA``: the
headline's replication on other seeds and another draw, its second task) follow its section when
their workdir ``<runs_dir>/<study>-<variant>`` holds a summary (``--run_extra`` runs them).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

from absl import app, flags

from wd_jax.engine.runlog import write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = (
  "l2_pollution",
  "lr_wd_grid",
  "early_wd",
  "norms",
  "equilibrium",
  "l1_vs_l2",
  "coupling",
  "why_wd",
  "scaling",
)
# A study's variants shown after its default run: variant -> the heading above it.
EXTRA = {
  "l2_pollution": {
    "replicate": "Replication: the same pre-registration on other seeds and another data draw",
    "char_lm": "Second task: a character-level Transformer (LayerNorm, embeddings)",
  },
  "why_wd": {"vision": "Vision part: an over-parameterised MLP, SGD with a step lr drop"},
}

_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs/results", "Where the study workdirs live.")
_ONLY = flags.DEFINE_list("only", [], "Studies to include (default: every study that exists).")
_OUT = flags.DEFINE_string("out", os.path.join(ROOT, "docs"), "Directory of RESULTS.md.")
_RUN = flags.DEFINE_bool("run", True, "Run studies that have no summary.md yet.")
_RUN_EXTRA = flags.DEFINE_bool("run_extra", False, "Also run the EXTRA variants that are missing.")


def command(study: str, workdir: str, variant: str = "") -> list[str]:
  config = f"experiments/configs/{study}.py" + (f":{variant}" if variant else "")
  return [
    sys.executable,
    os.path.join("experiments", f"{study}.py"),
    f"--config={config}",
    f"--workdir={workdir}",
  ]


def run_study(study: str, workdir: str, variant: str = "") -> float:
  load = os.getloadavg()[0]
  t0 = time.perf_counter()
  subprocess.run(command(study, workdir, variant), cwd=ROOT, check=True)
  seconds = time.perf_counter() - t0
  info = {"seconds": seconds, "cpus": os.cpu_count(), "machine": platform.machine()}
  info["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # before, after
  write_atomic(os.path.join(workdir, "runtime.json"), json.dumps(info) + "\n")
  return seconds


def existing_sections(path: str) -> dict[str, str]:
  """The sections of an existing results page by study (a section and its subsections end with
  the line that reproduces them, which names the study's script)."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    text = f.read()
  out: dict[str, str] = {}
  for chunk in re.split(r"\n(?=## )", text)[1:]:
    found = re.findall(r"\*Reproduce:\* `python experiments/(\w+)\.py", chunk)
    if found:
      out[found[-1]] = out.get(found[-1], "") + chunk.strip() + "\n\n"
  return out


def section(study: str, workdir: str, fig_dir: str, variant: str = "") -> str:
  with open(os.path.join(workdir, "summary.md")) as f:
    body = f.read()
  runtime = ""
  rt_path = os.path.join(workdir, "runtime.json")
  if os.path.exists(rt_path):
    with open(rt_path) as f:
      rt = json.load(f)
    load = rt.get("load_average")
    during = f" (load average {load[0]:.1f} before, {load[1]:.1f} after)" if load else ""
    runtime = f" Wall time {rt['seconds'] / 60:.1f} min on {rt['cpus']} CPU cores{during}."
  tag = f"{study}-{variant}" if variant else study

  def move_figure(match: re.Match) -> str:
    caption, name = match.group(1), match.group(2)
    target = f"{tag}_{name}"
    shutil.copyfile(os.path.join(workdir, name), os.path.join(fig_dir, target))
    return f"![{caption}](figures/{target})"

  body = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", move_figure, body)
  body = re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)  # each study is a section of the page
  config = f"experiments/configs/{study}.py" + (f":{variant}" if variant else "")
  cmd = f"python experiments/{study}.py --config={config} --workdir=..."
  if variant:  # a subsection of the study's section
    body = re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)
    body = f"### {EXTRA[study][variant]}\n\n{body.strip()}"
  return f"{body.strip()}\n\n*Reproduce:* `{cmd}`.{runtime}\n"


def study_section(study: str, fig_dir: str) -> str | None:
  """The study's section (its default run, then its EXTRA variants that have run), running
  what is missing when allowed; None when the default has not run and may not."""
  workdir = os.path.join(_RUNS_DIR.value, study)
  if not os.path.exists(os.path.join(workdir, "summary.md")):
    if not _RUN.value:
      print(f"skipping {study}: no summary.md in {workdir}")
      return None
    print(f"running {study} ...")
    run_study(study, workdir)
  parts = [section(study, workdir, fig_dir)]
  for variant in EXTRA.get(study, {}):
    vdir = f"{workdir}-{variant}"
    if not os.path.exists(os.path.join(vdir, "summary.md")) and _RUN_EXTRA.value:
      print(f"running {study}:{variant} ...")
      run_study(study, vdir, variant)
    if os.path.exists(os.path.join(vdir, "summary.md")):
      parts.append(section(study, vdir, fig_dir, variant))
  return "\n".join(parts)


def main(argv):
  del argv
  studies = _ONLY.value or [
    s for s in STUDIES if os.path.exists(os.path.join(ROOT, "experiments", f"{s}.py"))
  ]
  page = os.path.join(_OUT.value, "RESULTS.md")
  kept = existing_sections(page) if _ONLY.value else {}
  fig_dir = os.path.join(_OUT.value, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  parts = [
    "# wd-jax results",
    "",
    "Each study's default config, run on this repository's CI-class machine (2 CPU cores, no GPU, "
    "shared with other work: each wall time quotes the load average). Every claim was declared "
    "before the run (measurement, comparison, margin, α) and cites its source; verdicts come from "
    "`wd_jax.study.stats` on the two-sided (1−2α) t interval, equivalence by TOST, with the power "
    "of the design and, for an inconclusive verdict, the number of seeds that would decide it. "
    "The headline study runs in two phases: tuned on a tuning data draw, its selected "
    "configurations and claims frozen in a pre-registration (its digest is quoted), then "
    "confirmed on fresh seeds and a fresh draw with intervals over seeds and test items, Holm "
    "over its claims. The other studies select on a validation split carved from the training "
    "data, read the test split once and decide over paired seeds. Tables give mean ± sample sd "
    "over the seeds listed unless they say otherwise. Generated by "
    "`python experiments/make_results.py`; do not edit by hand.",
    "",
  ]
  for study in STUDIES:
    text = study_section(study, fig_dir) if study in studies else kept.get(study)
    if text:
      parts.append(text.strip() + "\n")
  write_atomic(page, "\n".join(parts))
  print(f"wrote {page}")


if __name__ == "__main__":
  app.run(main)
