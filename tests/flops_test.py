"""FLOP counts of the CRF network: by hand for the paper's model, and against tf.profiler."""
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.models.flops import (crf_flops_breakdown, crf_forward_flops, crf_train_flops,
                                         measure_matmul_gflops, throughput_figures,
                                         time_interleaved)
from keras_crf_reid.models.network import ModelConfig, build_crf_model


def test_paper_model_matches_hand_count():
    # Per frame, 128x64x5 input, 5x5 kernels, filters 16-32-32, 128-d embedding.
    conv1 = 2 * 25 * 5 * 16 * 128 * 64 + 16 * 128 * 64      # 32,768,000 MACs*2 + bias
    conv2 = 2 * 25 * 16 * 32 * 64 * 32 + 32 * 64 * 32
    conv3 = 2 * 25 * 32 * 32 * 32 * 16 + 32 * 32 * 16
    pools = 128 * 64 * 16 + 64 * 32 * 32 + 32 * 16 * 32
    fc = 2 * (16 * 8 * 32) * 128 + 128
    rnn = 2 * 2 * 128 * 128 + 2 * 128
    per_frame = conv1 + conv2 + conv3 + pools + fc + rnn
    assert per_frame == 112_951_680
    assert crf_forward_flops(ModelConfig(), 1) == per_frame
    assert crf_forward_flops(ModelConfig(), 16 * 32) == per_frame * 512
    conv1_input_grad = 2 * 25 * 5 * 16 * 128 * 64
    assert crf_train_flops(ModelConfig(), 10) == (3 * per_frame - conv1_input_grad) * 10


def test_variants_and_parts():
    full = crf_flops_breakdown(ModelConfig(), 1)
    assert "rnn" not in crf_flops_breakdown(ModelConfig(variant="cnn"), 1)
    upper = crf_flops_breakdown(ModelConfig(part="upper"), 1)
    # Half the rows: conv, pool and fc work halve (not the fc bias), the RNN's does not.
    for k in ("conv1", "conv2", "conv3", "pool1", "pool2", "pool3"):
        assert 2 * upper[k] == full[k]
    assert 2 * (upper["fc"] - 128) == full["fc"] - 128
    assert upper["rnn"] == full["rnn"]


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(filters=(4, 8, 8), embed_dim=16,
                                                                 variant="cnn_rnn")])
def test_matches_tf_profiler(config):
    """tf.profiler's float-op count of the traced graph agrees exactly.

    The profiler sees the RNN's while-loop body once, so its RNN ops are scaled by T, and it
    also counts the per-sequence temporal means and the final add, which we ignore.
    """
    batch, steps = 2, 4
    model = build_crf_model(config)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((batch, steps, 128, 64, 5)))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(fn.graph, options=opts)
    rnn_body = sum(c.total_float_ops for c in prof.children if "/rnn" in c.name)
    per_sequence = sum(c.total_float_ops for c in prof.children
                       if "/x_c" in c.name or "/x_r" in c.name or "/x_f" in c.name)
    profiled = prof.total_float_ops - rnn_body - per_sequence + rnn_body * steps
    assert profiled == crf_forward_flops(config, batch * steps)
    assert rnn_body * steps == crf_flops_breakdown(config, batch * steps)["rnn"]


def test_measure_matmul_gflops_is_positive():
    assert np.isfinite(measure_matmul_gflops(size=128, chain=2, repeats=2))
    assert measure_matmul_gflops(size=128, chain=2, repeats=2) > 0.1


def test_throughput_figures_from_interleaved_samples():
    m = time_interleaved(lambda: None, calls=3, probe=lambda: (100.0, 50.0))
    assert len(m["seconds"]) == 3 and m["peak"] == [100.0] * 3
    m = {"seconds": [2.0, 1.0, 4.0], "cpu_seconds": [4.0, 2.0, 8.0], "peak": [80.0, 100.0],
         "peak_per_cpu_s": [40.0, 50.0, 60.0]}
    out = throughput_figures(m, flops=50 * 10 ** 9, items=10, unit="pairs")
    assert out["pairs_per_s"] == 5.0 and out["pairs_per_s_best"] == 10.0
    assert out["fraction_of_peak"] == 0.5          # 50 GFLOP/s best call vs 100 peak
    assert out["fraction_of_peak_cpu"] == 0.25     # 12.5 GFLOP per CPU second vs 50
    assert out["cpu_s_per_pair"] == 0.4
    assert throughput_figures(m, 50 * 10 ** 9, 10, "pairs", peak_gflops=200.0)[
        "fraction_of_peak"] == 0.25
