"""Contrastive + softmax losses against hand-computed values; finite gradients at d = 0; the
P x K batch losses (all-pairs contrastive, batch-hard triplet) against brute force."""
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.training.losses import (METRIC_LOSSES, LossWeights, batch_contrastive_loss,
                                            batch_hard_triplet_loss, contrastive_loss, crf_loss,
                                            pk_loss)


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


def _brute_distances(e):
    return np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))


def _pk_case(seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(12, 5)).astype(np.float32)
    classes = np.repeat(np.array([4, 0, 7]), 4)  # P=3 persons x K=4
    return emb, classes


def test_batch_hard_triplet_matches_brute_force():
    emb, classes = _pk_case()
    d = _brute_distances(emb.astype(np.float64))
    want = []
    for i in range(len(emb)):
        pos = [d[i, j] for j in range(len(emb)) if classes[j] == classes[i] and j != i]
        neg = [d[i, j] for j in range(len(emb)) if classes[j] != classes[i]]
        want.append(max(0.0, 0.3 + max(pos) - min(neg)))
    got = np.asarray(batch_hard_triplet_loss(tf.constant(emb), tf.constant(classes), 0.3))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a margin this large makes every anchor active
    big = np.asarray(batch_hard_triplet_loss(tf.constant(emb), tf.constant(classes), 100.0))
    assert np.all(big > 0)


def test_soft_margin_triplet_matches_brute_force():
    """--metric_loss=triplet_soft: log(1 + exp(d(farthest positive) - d(closest negative)))."""
    emb, classes = _pk_case(2)
    d = _brute_distances(emb.astype(np.float64))
    want = []
    for i in range(len(emb)):
        pos = [d[i, j] for j in range(len(emb)) if classes[j] == classes[i] and j != i]
        neg = [d[i, j] for j in range(len(emb)) if classes[j] != classes[i]]
        want.append(np.log1p(np.exp(max(pos) - min(neg))))
    got = np.asarray(batch_hard_triplet_loss(tf.constant(emb), tf.constant(classes), None))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    terms = pk_loss(tf.constant(emb), tf.zeros((12, 8)), tf.constant(classes), "triplet_soft")
    np.testing.assert_allclose(np.asarray(terms["triplet_soft"]), want, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(terms["triplet_soft"]) > 0)  # no flat zero region, unlike the hinge


def test_batch_contrastive_matches_all_pairs_brute_force():
    emb, classes = _pk_case(1)
    d = _brute_distances(emb.astype(np.float64))
    pos, neg = [], []
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            (pos if classes[i] == classes[j] else neg).append(
                0.5 * d[i, j] ** 2 if classes[i] == classes[j] else 0.5 * max(0.0, 2.0 - d[i, j]) ** 2)
    want = 0.5 * np.mean(pos) + 0.5 * np.mean(neg)  # positives and negatives weighted equally
    got = np.asarray(batch_contrastive_loss(tf.constant(emb), tf.constant(classes), 2.0))
    assert got.shape == (12,)
    np.testing.assert_allclose(got.mean(), want, rtol=1e-5)


def test_pk_loss_weights_and_finite_gradients_with_repeated_sequences():
    emb = tf.Variable([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # a repeat: d = 0
    classes = tf.constant([0, 0, 1, 1])
    logits = tf.zeros((4, 3))  # uniform: CE = ln 3
    for metric in METRIC_LOSSES:
        with tf.GradientTape() as tape:
            terms = pk_loss(emb, logits, classes, metric, 0.5, LossWeights(2.0, 1.0, 0.5))
            total = tf.reduce_sum(terms["total"])
        np.testing.assert_allclose(terms["softmax"], np.full(4, np.log(3)), rtol=1e-6)
        np.testing.assert_allclose(terms["total"], 2.0 * np.asarray(terms[metric]) + 1.5 * np.log(3),
                                   rtol=1e-6)
        assert np.all(np.isfinite(tape.gradient(total, emb).numpy()))
    with pytest.raises(ValueError, match="--metric_loss"):
        pk_loss(emb, logits, classes, "quadruplet")
