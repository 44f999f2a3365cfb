#!/usr/bin/env bash
# Creates .venv (if missing) and installs keras_crf_reid with its test, JAX-backend and serving
# dependencies.
# tensorflow-serving-api declares the full `tensorflow` wheel; it is installed with --no-deps
# beside tensorflow-cpu, whose modules it actually needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,jax]'
.venv/bin/python -m pip install -q --no-deps 'tensorflow-serving-api==2.21.0'
