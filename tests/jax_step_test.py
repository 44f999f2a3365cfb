"""jax_step: the JAX training step (run in a KERAS_BACKEND=jax subprocess) and its clipping."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.training.jax_step import JaxTrainStep, clip_by_global_norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "helpers", "jax_step_worker.py")


@pytest.mark.parametrize("clipnorm", [0.5, 100.0])
def test_clip_by_global_norm_matches_tensorflow(clipnorm):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    ours, norm = clip_by_global_norm([tf.constant(g) for g in grads], clipnorm)
    ref, ref_norm = tf.clip_by_global_norm([tf.constant(g) for g in grads], clipnorm)
    np.testing.assert_allclose(float(norm), float(ref_norm), rtol=1e-6)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-6)


def test_refuses_a_non_jax_backend():
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=jax"):
        JaxTrainStep(None, None, None)


@pytest.mark.slow
def test_step_learns_on_pairs_and_identity_batches_skips_non_finite_without_tensorflow():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, WORKER], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    assert out["nan_finite"] == 0.0 and out["unchanged_after_nan"]
    losses = out["losses"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    pk = out["pk_losses"]
    assert all(np.isfinite(pk)) and pk[-1] < pk[0], pk
    assert out["synced"]
    assert not out["tensorflow_imported"]
