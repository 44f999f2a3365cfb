#!/usr/bin/env bash
# GPU figures in one command: the float32 and float16 matmul peaks, the training step and the
# embedding with --mixed_precision and --jit_compile each on and off, and the input pipeline
# pinned to 1..16 cores; one JSON object per line on stdout (progress and logs on stderr). A
# benchmark that fails prints {"error": ...} and the others still run.
#
#   PYTHONPATH=. tools/bench_gpu.sh > gpu.jsonl
#
# Compare each step's pairs/s (bench_train) with the pipeline's pairs/s at the host's cores
# (bench_pipeline): the pipeline must deliver more than the step consumes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}

run() {  # run a benchmark; on failure print a JSON error line naming it
  "$PY" "$@" || echo "{\"error\": \"exit $? of $*\"}"
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader >&2 || true
run tools/bench_peak.py --sizes=2048,4096,8192
run tools/bench_peak.py --sizes=2048,4096,8192 --dtype=float16
for mp in nomixed_precision mixed_precision; do
  for jit in nojit_compile jit_compile; do
    run tools/bench_train.py --$mp --$jit --pipeline
    run tools/bench_embed.py --$mp --$jit --batch_sizes=1,8,32,64
  done
done
CORES=$("$PY" -c "import os; n = len(os.sched_getaffinity(0)); print(','.join(str(c) for c in (1, 2, 4, 8, 16, 32) if c <= n))")
run tools/bench_pipeline.py --cores="$CORES" --rounds=1 --num_ids=60
