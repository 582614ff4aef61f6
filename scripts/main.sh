#!/usr/bin/env bash
# Sets everything up and runs the headline experiment into runs/main (no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python experiments/demo.py --workdir=runs/main "$@"
