"""Train every configuration of a sweep config, select on validation, then draw its heat maps.

python experiments/sweep.py --config=experiments/configs/sweep_mnist1d_mlp.py --workdir=runs/sweep
python experiments/sweep.py --config=experiments/configs/sweep_mnist1d_mlp.py:smoke --workdir=/tmp/s
python experiments/sweep.py --config=... --workdir=... --config.sweep.strategy=sequential
python experiments/sweep.py --config=... --workdir=... --resume        # after a kill or preemption

Across jobs (BUILD.md, "Sweeps across machines"): each job trains its part of the grid into the
shared workdir, then one merges:

python experiments/sweep.py --config=... --workdir=/shared/sweep --shard=2/8 --resume
python experiments/sweep.py --config=... --workdir=/shared/s --shard=slurm --resume  # array task
python experiments/sweep.py --config=... --workdir=/shared/sweep --merge
python experiments/sweep.py --config=... --workdir=/shared/sweep --submit=8   # submitit: all of it
"""

import os

from absl import app, flags

from wd_jax.engine import cli, sweep
from wd_jax.engine.runlog import write_atomic
from wd_jax.study import report

_CONFIG = cli.define_config(
  help="Sweep config file (path[:variant]) with fields base, grid, sweep, submit."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the sweep.", required=True)
_RESUME = flags.DEFINE_bool(
  "resume", False, "Continue the sweep in --workdir: its finished runs are kept."
)
_SHARD = flags.DEFINE_string(
  "shard",
  None,
  "Train only part i of n of the grid ('i/n'), or this SLURM array task's part "
  "('slurm'), into the shared --workdir; then --merge.",
)
_MERGE = flags.DEFINE_bool(
  "merge", False, "Merge the shards in --workdir (every cell must have run once), then select."
)
_SUBMIT = flags.DEFINE_integer(
  "submit",
  None,
  "Submit N shards as one job array through submitit (config.submit), wait for them and merge.",
)
flags.mark_flag_as_required("config")


def _submit(c, grid, workdir: str, num_shards: int, options: dict) -> None:
  import submitit

  executor = submitit.AutoExecutor(
    folder=os.path.join(workdir, "submitit"), cluster=c.submit.get("cluster")
  )
  executor.update_parameters(timeout_min=c.submit.timeout_min, **dict(c.submit.parameters))
  jobs = sweep.submit(c.base, grid, workdir, num_shards, executor, verbose=False, **options)
  for job in jobs:
    job.result()  # raises the shard's error, if any


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  c, workdir = _CONFIG.value, _WORKDIR.value
  grid = {field: list(values) for field, values in c.grid.items()}
  options = {
    "strategy": c.sweep.strategy,
    "chunk_size": c.sweep.chunk_size,
    "num_workers": c.sweep.num_workers,
    "remeasure": c.sweep.get("remeasure", False),
  }
  if _SHARD.value is not None:
    rows = sweep.run_sweep(
      c.base, grid, workdir, shard=_SHARD.value, resume=_RESUME.value, **options
    )
    print(f"{len(rows)} runs of this shard done in {workdir}; merge with --merge")
    return
  if _SUBMIT.value is not None:
    _submit(c, grid, workdir, _SUBMIT.value, options)
  if _MERGE.value or _SUBMIT.value is not None:
    sweep.merge(workdir)
  else:
    sweep.run_sweep(c.base, grid, workdir, resume=_RESUME.value, **options)
  figures = [report.heatmap(workdir, metric=m) for m in c.report_metrics]
  summary = os.path.join(workdir, "summary.md")
  with open(summary) as f:
    text = f.read()
  text += "\n" + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in figures)
  write_atomic(summary, text)
  print("\n".join(["wrote:", summary, *figures]))


if __name__ == "__main__":
  cli.run(main)
