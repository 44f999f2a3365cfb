"""The CRF network: shapes, variants, and identical embeddings across execution modes and T."""
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.models.network import ModelConfig, build_crf_model

TINY = dict(filters=(4, 4, 4), embed_dim=8, dropout=0.0)


def _x(b=2, t=5, seed=0):
    return np.random.default_rng(seed).normal(size=(b, t, 128, 64, 5)).astype(np.float32)


@pytest.mark.parametrize("variant", ["cnn", "rnn", "cnn_rnn"])
def test_output_shape_per_variant(variant):
    m = build_crf_model(ModelConfig(variant=variant, **TINY))
    assert m.output_shape == (None, 8)
    assert m(_x(), training=False).shape == (2, 8)


def test_eager_graph_and_batch_composition_agree():
    m = build_crf_model(ModelConfig(**TINY))
    x = _x(3, 7)
    eager = m(x, training=False).numpy()
    fn = tf.function(lambda v: m(v, training=False),
                     input_signature=[tf.TensorSpec((None, None, 128, 64, 5), tf.float32)])
    np.testing.assert_allclose(fn(x).numpy(), eager, atol=1e-5)
    # The same sequence alone, and inside graphs traced for other T, gives the same embedding.
    np.testing.assert_allclose(fn(x[1:2]).numpy(), eager[1:2], atol=1e-5)
    fn(_x(2, 3))
    np.testing.assert_allclose(fn(x).numpy(), eager, atol=1e-5)
    np.testing.assert_allclose(m.predict(x, verbose=0), eager, atol=1e-5)


def test_fusion_is_cnn_plus_rnn():
    """x_F = x_C + x_R: with shared weights, the cnn_rnn output is the sum of the two others."""
    full = build_crf_model(ModelConfig(variant="cnn_rnn", **TINY))
    x = _x(2, 4)
    f = full.get_layer("frame_cnn")(x, training=False)
    x_c = tf.reduce_mean(f, 1)
    x_r = tf.reduce_mean(full.get_layer("rnn")(f), 1)
    np.testing.assert_allclose(full(x, training=False), x_c + x_r, atol=1e-5)


def test_rnn_recurrence_matches_definition():
    """o_t = W_i f_t + W_s relu(o_{t-1}) + b, x_R = mean_t o_t."""
    m = build_crf_model(ModelConfig(variant="rnn", **TINY))
    x = _x(1, 4)
    f = m.get_layer("frame_cnn")(x, training=False).numpy()[0]
    cell = m.get_layer("rnn").cell
    wi, ws, b = cell.w_i.numpy(), cell.w_s.numpy(), cell.bias.numpy()
    r, outs = np.zeros(8), []
    for t in range(4):
        o = f[t] @ wi + r @ ws + b
        outs.append(o)
        r = np.maximum(o, 0)
    np.testing.assert_allclose(m(x, training=False).numpy()[0], np.mean(outs, 0), atol=1e-4)


def test_temporal_order_matters_only_for_rnn():
    x = _x(1, 6)
    rev = x[:, ::-1].copy()
    cnn = build_crf_model(ModelConfig(variant="cnn", **TINY))
    rnn = build_crf_model(ModelConfig(variant="rnn", **TINY))
    np.testing.assert_allclose(cnn(x, training=False), cnn(rev, training=False), atol=1e-5)
    assert not np.allclose(rnn(x, training=False), rnn(rev, training=False), atol=1e-5)


def test_paper_architecture_sizes():
    m = build_crf_model(ModelConfig())
    enc = m.get_layer("frame_cnn")
    assert [c.filters for c in enc.convs] == [16, 32, 32]
    assert all(c.kernel_size == (5, 5) for c in enc.convs)
    assert enc.dense.units == 128 and m.output_shape == (None, 128)


def test_bad_config_errors():
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(variant="lstm")
    with pytest.raises(ValueError, match="--filters: 7 max-pooling stages need an input divisible by 128"):
        ModelConfig(filters=(4,) * 7, part="upper")
    for kwargs, flag in [({"embed_dim": 0}, "--embed_dim"), ({"dropout": 1.0}, "--dropout"),
                         ({"kernel_size": 0}, "--kernel_size"), ({"part": "torso"}, "--part")]:
        with pytest.raises(ValueError, match=flag):
            ModelConfig(**kwargs)


@pytest.mark.parametrize("part,rows", [("upper", slice(0, 64)), ("lower", slice(64, 128))])
def test_part_model_crops_its_rows_itself(part, rows):
    import keras
    keras.utils.set_random_seed(3)
    m = build_crf_model(ModelConfig(part=part, **TINY))
    assert m.input_shape == (None, None, 128, 64, 5)
    assert m.get_layer(f"crop_{part}").compute_output_shape((None, 4, 128, 64, 5))[2] == 64
    x = _x(2, 3)
    inner = m.get_layer("frame_cnn")
    f = inner(x[:, :, rows], training=False)
    ref = m.get_layer("x_f")([m.get_layer("x_c")(f), m.get_layer("x_r")(m.get_layer("rnn")(f))])
    np.testing.assert_allclose(m(x, training=False), ref, atol=1e-5)
