"""Train any model/dataset/optimizer combination from an ml_collections config.

  python experiments/train.py --config=experiments/configs/mnist1d_cnn.py --workdir=runs/cnn
  python experiments/train.py --config=experiments/configs/mnist1d_cnn.py:smoke --workdir=/tmp/s
  python experiments/train.py --config=... --workdir=runs/cnn --config.optimizer.weight_decay=0.1
  python experiments/train.py --config=... --workdir=runs/cnn --resume  # after a crash or kill

Exit codes (wd_jax.engine.cli): 0 done, 1 diverged / workdir busy / damaged checkpoint or
config.json / a gap in the records / a failed read or write, 2 bad config or flag (or a resume
with another config or model), 128+s stopped by signal s (--resume goes on).
  python experiments/train.py --config=... --workdir=runs/cnn --config.parallel=sharded

Several hosts: run the same command once per process, adding
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (or the
``WD_JAX_COORDINATOR_ADDRESS`` / ``WD_JAX_NUM_PROCESSES`` / ``WD_JAX_PROCESS_ID`` variables);
see BUILD.md for GPU clusters and TPU pod slices.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from wd_jax.engine import cli, parallel, train, workdir

_CONFIG = cli.define_config(help="Run config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory for this run.", required=True)
_RESUME = flags.DEFINE_bool(
  "resume",
  False,
  "Continue from the newest intact checkpoint in --workdir (a completed run: nothing to do, "
  "unless --config.steps grew). steps and the cadences keep the run's recorded values unless "
  "given on the command line.",
)
_FALLBACK = flags.DEFINE_bool(
  "resume_fallback",
  True,
  "With --resume: if the newest checkpoint is damaged, say so, move it to "
  "checkpoints/damaged/ and use the newest intact one (--noresume_fallback: stop instead).",
)
_ACCEPT_GAP = flags.DEFINE_bool(
  "resume_accept_gap",
  False,
  "With --resume: continue even though metrics.jsonl lacks records written before the "
  "checkpoint (lost outside the run); without it such a resume stops and names the gap.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "Multi-host: host:port of process 0 (or WD_JAX_COORDINATOR_ADDRESS)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.mark_flag_as_required("config")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _COORDINATOR.value or _NUM_PROCESSES.value or "WD_JAX_COORDINATOR_ADDRESS" in os.environ:
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _CONFIG.value
  if _RESUME.value:  # the run's own steps and cadences, unless the command line asks otherwise
    asked = config_flags.get_override_values(flags.FLAGS["config"])
    config = workdir.keep_recorded(config, _WORKDIR.value, asked)
  result = train.fit(
    config,
    _WORKDIR.value,
    resume=_RESUME.value,
    fallback=_FALLBACK.value,
    accept_gap=_ACCEPT_GAP.value,
  )
  cli.finish_run(result, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
