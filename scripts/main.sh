#!/usr/bin/env bash
# The main job: sets everything up, then runs the headline study's confirm phase (L2 pollution of
# Adam's first moment) into a new runs/l2_pollution-<time> directory. It runs only what the
# committed pre-registration (experiments/preregistered/l2_pollution.json) names, on fresh seeds
# and a fresh data draw, and refuses to run without it. Needs no network. Extra arguments go to
# the study (e.g. --config=experiments/configs/l2_pollution.py:replicate). The tune phase that
# wrote the pre-registration: --config.phase=tune (about 15 min on 2 cores; it rewrites the file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python experiments/l2_pollution.py --config=experiments/configs/l2_pollution.py \
  --workdir="runs/l2_pollution-$(date +%Y%m%d-%H%M%S)" "$@"
