#!/usr/bin/env bash
# The CRF training step on Keras's JAX backend on the lent GPU machine (it has JAX, no
# TensorFlow): float32 and bfloat16 at batch sizes that fill the GPU, pairs/s and share of the
# matmul peak in the same precision; one JSON object per line on stdout (tools/bench_jax.py),
# logs on stderr. Extra arguments go to bench_jax.py (e.g. --batch_sizes=16,64).
#
# Here, once: downloads this venv's keras and the two packages it needs that the GPU image
# lacks (namex, optree; ~3 MB of Python 3.12 wheels) into .whl/, which git ignores:
#     bash tools/bench_gpu_jax.sh --download
# There (device tool `run`, carry [".whl"], timeout_s 540; about 5 minutes):
#     bash tools/bench_gpu_jax.sh 2>&1 | tee $OUT/gpu_jax.jsonl
# Here, a CPU check of the same code at a tiny size (needs jax in .venv):
#     PYTHON=.venv/bin/python bash tools/bench_gpu_jax.sh --batch_sizes=2 --seq_len=2 \
#         --filters=4,8 --embed_dim=16 --steps=2 --warmup=1 --peak_size=256
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
SITE=${SITE:-/tmp/site}  # where the carried wheels are installed
PY=${PYTHON:-python3}

if [ "${1:-}" = "--download" ]; then
  HERE=${PYTHON:-.venv/bin/python}
  KERAS_VERSION=$("$HERE" -c "import keras; print(keras.__version__)") || exit 2
  mkdir -p "$WHEELS"
  "$HERE" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "keras==$KERAS_VERSION" namex optree || exit 2
  ls -l "$WHEELS" >&2
  exit 0
fi

if ! "$PY" -c "import keras" 2>/dev/null; then
  if ! ls "$WHEELS"/keras-*.whl >/dev/null 2>&1; then
    echo "keras is not installed and $WHEELS/ holds no keras wheel: run" \
         "'bash tools/bench_gpu_jax.sh --download' here and carry $WHEELS" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || exit 2
  export PYTHONPATH=$SITE
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader >&2 || true
timeout 470 "$PY" tools/bench_jax.py --batch_sizes=32,128,512 "$@"
