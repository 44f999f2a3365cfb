"""Contrastive + softmax losses against hand-computed values; finite gradients at d = 0."""
import numpy as np
import tensorflow as tf

from keras_crf_reid.losses import LossWeights, contrastive_loss, crf_loss


def test_contrastive_hand_values():
    a = tf.constant([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = tf.constant([[3.0, 4.0], [1.0, 0.0], [3.0, 0.0]])
    label = tf.constant([1.0, 0.0, 0.0])
    # positive d=5: 0.5*25; negative d=1 < 2: 0.5*(2-1)^2; negative d=3 > margin: 0
    np.testing.assert_allclose(contrastive_loss(a, b, label, 2.0).numpy(), [12.5, 0.5, 0.0], atol=1e-6)


def test_gradient_finite_at_zero_distance():
    a = tf.Variable([[1.0, 2.0], [1.0, 2.0]])
    b = tf.constant([[1.0, 2.0], [1.0, 2.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(contrastive_loss(a, b, tf.constant([1.0, 0.0]), 2.0))
    g = tape.gradient(loss, a).numpy()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(loss.numpy(), 0.5 * 4.0)


def test_crf_loss_weights_and_softmax():
    ea = tf.constant([[0.0, 0.0]])
    eb = tf.constant([[1.0, 0.0]])
    logits = tf.constant([[0.0, 0.0, 0.0, 0.0]])  # uniform over 4 classes: CE = ln 4
    terms = crf_loss(ea, eb, logits, logits, tf.constant([1.0]), tf.constant([2]), tf.constant([0]),
                     margin=2.0, weights=LossWeights(2.0, 1.0, 0.5))
    np.testing.assert_allclose(terms["siamese"].numpy(), [0.5])
    np.testing.assert_allclose(terms["softmax_a"].numpy(), [np.log(4)], rtol=1e-6)
    np.testing.assert_allclose(terms["total"].numpy(), [2 * 0.5 + np.log(4) + 0.5 * np.log(4)], rtol=1e-6)
