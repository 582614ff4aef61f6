#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (2 workers; 4 forced CPU devices per worker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 -q --durations=25 "$@"
