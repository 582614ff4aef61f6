#!/usr/bin/env bash
# Creates ./.venv (once) and installs wd-jax with its test extras into it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.wd_jax_installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch is pinned to the CPU wheel; it is only a test-time parity reference.
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi
