"""Train any model/dataset/optimizer combination from an ml_collections config.

python experiments/train.py --config=experiments/configs/mnist1d_cnn.py --workdir=runs/cnn
python experiments/train.py --config=experiments/configs/mnist1d_cnn.py:smoke --workdir=/tmp/s
python experiments/train.py --config=... --workdir=runs/cnn --config.optimizer.weight_decay=0.1
python experiments/train.py --config=... --workdir=runs/cnn --resume   # after a crash or kill
"""

from absl import app, flags
from ml_collections import config_flags

from wd_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory for this run.", required=True)
_RESUME = flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --workdir.")
flags.mark_flag_as_required("config")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  result = train.fit(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
  if result.get("diverged"):
    raise SystemExit(f"diverged: {result['message']} (see {_WORKDIR.value}/summary.md)")


if __name__ == "__main__":
  app.run(main)
