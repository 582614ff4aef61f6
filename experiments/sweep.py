"""Train every configuration of a sweep config, then draw its heat maps.

python experiments/sweep.py --config=experiments/configs/sweep_mnist1d_mlp.py --workdir=runs/sweep
python experiments/sweep.py --config=experiments/configs/sweep_mnist1d_mlp.py:smoke --workdir=/tmp/s
python experiments/sweep.py --config=... --workdir=... --config.sweep.strategy=sequential
"""

import os

from absl import app, flags

from wd_jax.engine import cli, sweep
from wd_jax.engine.runlog import write_atomic
from wd_jax.study import report

_CONFIG = cli.define_config(
  help="Sweep config file (path[:variant]) with fields base, grid, sweep."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the sweep.", required=True)
flags.mark_flag_as_required("config")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  c, workdir = _CONFIG.value, _WORKDIR.value
  grid = {field: list(values) for field, values in c.grid.items()}
  sweep.run_sweep(
    c.base,
    grid,
    workdir,
    strategy=c.sweep.strategy,
    chunk_size=c.sweep.chunk_size,
    num_workers=c.sweep.num_workers,
    remeasure=c.sweep.get("remeasure", False),
  )
  figures = [report.heatmap(workdir, metric=m) for m in c.report_metrics]
  summary = os.path.join(workdir, "summary.md")
  with open(summary) as f:
    text = f.read()
  text += "\n" + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in figures)
  write_atomic(summary, text)
  print("\n".join(["wrote:", summary, *figures]))


if __name__ == "__main__":
  cli.run(main)
