"""tools/bench_backends.py: TensorFlow and JAX give the same loss on the same weights and batch."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "tools", "bench_backends.py")


@pytest.mark.slow
def test_tensorflow_and_jax_losses_agree_on_a_tiny_model():
    pytest.importorskip("jax")
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run(
        [sys.executable, BENCH, "--filters=4,8", "--embed_dim=16", "--batch_size=4",
         "--seq_len=2", "--num_classes=10", "--dropout=0", "--warmup=0", "--steps=1",
         "--nopeak"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    tf_run, jax_run = out["backends"]["tensorflow"], out["backends"]["jax"]
    assert tf_run["loss"] > 0
    assert abs(tf_run["loss"] - jax_run["loss"]) <= 1e-4 * abs(tf_run["loss"])
    # dropout 0: one SGD update of the two backends lands on the same loss too
    assert abs(tf_run["loss_after_step"] - jax_run["loss_after_step"]) <= 1e-4 * abs(tf_run["loss"])
    assert tf_run["loss_after_step"] != tf_run["loss"]
    assert out["losses_agree"] and jax_run["pairs_per_s"] > 0
    assert not jax_run["tensorflow_imported"]
