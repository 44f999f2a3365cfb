"""The CRF training objective: siamese (contrastive) loss plus identity softmax on each side.

L = W1 * L_sia(x_i, x_j) + W2 * L_sof(x_i) + W3 * L_sof(x_j), with
L_sia = 1/2 d^2 for a positive pair and 1/2 max(alpha - d, 0)^2 for a negative pair,
d = ||x_i - x_j||_2 and alpha the margin (2 in the paper).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

_D2_EPS = 1e-12


def safe_euclidean(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Row-wise ||a - b||, with a finite (zero) gradient where a == b."""
    d2 = tf.reduce_sum(tf.square(a - b), axis=-1)
    positive = d2 > _D2_EPS
    return tf.where(positive, tf.sqrt(tf.where(positive, d2, 1.0)), 0.0)


def contrastive_loss(a: tf.Tensor, b: tf.Tensor, label: tf.Tensor, margin: float = 2.0) -> tf.Tensor:
    """Per-pair contrastive loss; label 1 for same person, 0 for different persons."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    label = tf.cast(label, tf.float32)
    d2 = tf.reduce_sum(tf.square(a - b), axis=-1)
    d = safe_euclidean(a, b)
    return label * 0.5 * d2 + (1.0 - label) * 0.5 * tf.square(tf.nn.relu(margin - d))


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """W1 (siamese), W2 and W3 (softmax of each side of the pair)."""

    siamese: float = 1.0
    softmax_a: float = 1.0
    softmax_b: float = 1.0


def crf_loss(emb_a, emb_b, logits_a, logits_b, label, class_a, class_b,
             margin: float = 2.0, weights: LossWeights = LossWeights()) -> dict[str, tf.Tensor]:
    """Per-example loss terms (shape (B,)) and their weighted total, as a dict."""
    sia = contrastive_loss(emb_a, emb_b, label, margin)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits
    sof_a = ce(labels=class_a, logits=tf.cast(logits_a, tf.float32))
    sof_b = ce(labels=class_b, logits=tf.cast(logits_b, tf.float32))
    total = weights.siamese * sia + weights.softmax_a * sof_a + weights.softmax_b * sof_b
    return {"total": total, "siamese": sia, "softmax_a": sof_a, "softmax_b": sof_b}
