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
  .venv/bin/python -m pip install --quiet -e ".[test]"
  # torch is only the parity tests' reference (the `parity` extra): the CPU build, from PyTorch's
  # CPU index, since PyPI's Linux wheel is the CUDA build (several GB). WD_JAX_TORCH_INDEX names
  # another index; set empty, or if the index cannot be reached (pip would retry it for every
  # package), pip's own configuration alone decides (a mirror or find-links with a CPU wheel).
  torch_index=${WD_JAX_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
  if [ -n "$torch_index" ] && ! .venv/bin/python -c \
    'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20)' \
    "$torch_index/" 2>/dev/null; then
    echo "setup.sh: $torch_index cannot be reached; torch as pip's configuration offers it" >&2
    torch_index=
  fi
  .venv/bin/python -m pip install --quiet -e ".[parity]" ${torch_index:+--extra-index-url "$torch_index"}
  touch "$stamp"
fi
