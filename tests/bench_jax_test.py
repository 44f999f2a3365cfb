"""tools/bench_jax.py (the GPU script's Python part) on CPU at a tiny size, both precisions."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_jax_reports_both_precisions():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": REPO}
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "bench_jax.py"), "--batch_sizes=2",
         "--seq_len=2", "--filters=4,8", "--embed_dim=16", "--steps=1", "--warmup=0",
         "--peak_size=128", "--peak_repeats=1"], env=env, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    rows = [r for r in lines if r["benchmark"] == "jax_train"]
    assert [r["precision"] for r in rows] == ["float32", "bfloat16"]
    for r in rows:
        assert "error" not in r, r
        assert r["pairs_per_s"] > 0 and 0 < r["fraction_of_peak"] < 10
    summary = lines[-1]
    assert summary["benchmark"] == "jax_summary" and summary["errors"] == 0
    assert set(summary["peak_gflops"]) == {"float32", "bfloat16"}
