#!/usr/bin/env bash
# Sets everything up and runs the headline study (L2 pollution of Adam's first moment) into a
# new runs/l2_pollution-<time> directory. Needs no network. Extra arguments go to the study.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py \
  --workdir="runs/l2_pollution-$(date +%Y%m%d-%H%M%S)" "$@"
