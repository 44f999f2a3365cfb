"""The CRF training objective: siamese (contrastive) loss plus identity softmax on each side.

L = W1 * L_sia(x_i, x_j) + W2 * L_sof(x_i) + W3 * L_sof(x_j), with
L_sia = 1/2 d^2 for a positive pair and 1/2 max(alpha - d, 0)^2 for a negative pair,
d = ||x_i - x_j||_2 and alpha the margin (2 in the paper).

Written in keras.ops only, so the same code serves the TensorFlow trainer and the JAX step
(jax_step.py); on TensorFlow each op is the tf op it replaced, so results are unchanged.
"""
from __future__ import annotations

import dataclasses

from keras import ops

_D2_EPS = 1e-12


def safe_euclidean(a, b):
    """Row-wise ||a - b||, with a finite (zero) gradient where a == b."""
    d2 = ops.sum(ops.square(a - b), axis=-1)
    positive = d2 > _D2_EPS
    return ops.where(positive, ops.sqrt(ops.where(positive, d2, 1.0)), 0.0)


def contrastive_loss(a, b, label, margin: float = 2.0):
    """Per-pair contrastive loss; label 1 for same person, 0 for different persons."""
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    label = ops.cast(label, "float32")
    d2 = ops.sum(ops.square(a - b), axis=-1)
    d = safe_euclidean(a, b)
    return label * 0.5 * d2 + (1.0 - label) * 0.5 * ops.square(ops.relu(margin - d))


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """W1 (siamese), W2 and W3 (softmax of each side of the pair)."""

    siamese: float = 1.0
    softmax_a: float = 1.0
    softmax_b: float = 1.0


def crf_loss(emb_a, emb_b, logits_a, logits_b, label, class_a, class_b,
             margin: float = 2.0, weights: LossWeights = LossWeights()) -> dict:
    """Per-example loss terms (shape (B,)) and their weighted total, as a dict of tensors."""
    sia = contrastive_loss(emb_a, emb_b, label, margin)
    ce = ops.sparse_categorical_crossentropy
    sof_a = ce(class_a, ops.cast(logits_a, "float32"), from_logits=True)
    sof_b = ce(class_b, ops.cast(logits_b, "float32"), from_logits=True)
    total = weights.siamese * sia + weights.softmax_a * sof_a + weights.softmax_b * sof_b
    return {"total": total, "siamese": sia, "softmax_a": sof_a, "softmax_b": sof_b}
