"""The CRF training objective: siamese (contrastive) loss plus identity softmax on each side.

L = W1 * L_sia(x_i, x_j) + W2 * L_sof(x_i) + W3 * L_sof(x_j), with
L_sia = 1/2 d^2 for a positive pair and 1/2 max(alpha - d, 0)^2 for a negative pair,
d = ||x_i - x_j||_2 and alpha the margin (2 in the paper).

Identity batches (P persons x K tracklets, --sampler=pk) use `pk_loss` instead: the contrastive
loss over every positive and negative pair of the batch, or the batch-hard triplet loss
(Hermans et al. 2017, hard or soft margin), plus the identity softmax of every sequence.

Written in keras.ops only, so the same code serves the TensorFlow trainer and the JAX step
(jax_step.py); on TensorFlow each op is the tf op it replaced, so results are unchanged.
"""
from __future__ import annotations

from keras import ops

from keras_crf_reid.configs.train import METRIC_LOSSES, LossWeights

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


def crf_loss(emb_a, emb_b, logits_a, logits_b, label, class_a, class_b,
             margin: float = 2.0, weights: LossWeights = LossWeights()) -> dict:
    """Per-example loss terms (shape (B,)) and their weighted total, as a dict of tensors."""
    sia = contrastive_loss(emb_a, emb_b, label, margin)
    ce = ops.sparse_categorical_crossentropy
    sof_a = ce(class_a, ops.cast(logits_a, "float32"), from_logits=True)
    sof_b = ce(class_b, ops.cast(logits_b, "float32"), from_logits=True)
    total = weights.siamese * sia + weights.softmax_a * sof_a + weights.softmax_b * sof_b
    return {"total": total, "siamese": sia, "softmax_a": sof_a, "softmax_b": sof_b}


_FAR = 1e9  # stands in for "no such pair" in batch-hard minima


def pairwise_distances(emb):
    """(N, D) embeddings -> (N, N) Euclidean distances, with a zero (finite) gradient at 0."""
    emb = ops.cast(emb, "float32")
    return safe_euclidean(ops.expand_dims(emb, 1), ops.expand_dims(emb, 0))


def _identity_masks(classes):
    """(N, N) float masks of positive pairs (same class, j != i) and negative pairs."""
    classes = ops.reshape(classes, (-1,))
    same = ops.equal(ops.expand_dims(classes, 1), ops.expand_dims(classes, 0))
    eye = ops.eye(ops.shape(classes)[0], dtype="bool")
    return (ops.cast(ops.logical_and(same, ops.logical_not(eye)), "float32"),
            ops.cast(ops.logical_not(same), "float32"))


def batch_contrastive_loss(emb, classes, margin: float = 2.0):
    """Per-anchor (N,) contrastive loss over every pair of an identity batch (P x K).

    Anchor i's loss is half the mean of 1/2 d^2 over its positives plus half the mean of
    1/2 max(margin - d, 0)^2 over its negatives: the balance of the paper's half-positive,
    half-negative pair batches, so the mean over anchors equals the paper's loss on the
    batch's positive and negative pairs weighted equally.
    """
    d = pairwise_distances(emb)
    pos, neg = _identity_masks(classes)
    pos_loss = ops.sum(pos * 0.5 * ops.square(d), axis=1) / ops.maximum(ops.sum(pos, axis=1), 1.0)
    neg_loss = (ops.sum(neg * 0.5 * ops.square(ops.relu(margin - d)), axis=1)
                / ops.maximum(ops.sum(neg, axis=1), 1.0))
    return 0.5 * (pos_loss + neg_loss)


def batch_hard_triplet_loss(emb, classes, margin: float | None = 0.3):
    """Per-anchor (N,) batch-hard triplet loss (Hermans, Beyer, Leibe 2017): for each anchor,
    max(margin + d(farthest positive) - d(closest negative), 0), Euclidean distances; with
    margin None the paper's soft margin log(1 + exp(d(farthest positive) - d(closest negative))),
    which keeps pulling satisfied triplets apart instead of going flat at zero loss."""
    d = pairwise_distances(emb)
    pos, neg = _identity_masks(classes)
    hardest_pos = ops.max(d * pos, axis=1)
    hardest_neg = ops.min(ops.where(neg > 0, d, _FAR), axis=1)
    if margin is None:
        return ops.softplus(hardest_pos - hardest_neg)
    return ops.relu(margin + hardest_pos - hardest_neg)


def pk_loss(emb, logits, classes, metric: str = "contrastive", margin: float = 2.0,
            weights: LossWeights = LossWeights()) -> dict:
    """Per-sequence loss terms (N,) of a P x K batch and their weighted total, as a dict.

    total = W1 * metric + (W2 + W3) * softmax: a pair batch holds two sequences per pair and
    weights their softmax terms W2 and W3, so at equal weights both batch kinds weigh the
    metric loss against the identity softmax alike. `margin` is the metric loss's (unused by
    triplet_soft).
    """
    if metric not in METRIC_LOSSES:
        raise ValueError(f"--metric_loss must be one of {', '.join(METRIC_LOSSES)}, got {metric!r}")
    if metric == "contrastive":
        met = batch_contrastive_loss(emb, classes, margin)
    else:
        met = batch_hard_triplet_loss(emb, classes, None if metric == "triplet_soft" else margin)
    sof = ops.sparse_categorical_crossentropy(classes, ops.cast(logits, "float32"), from_logits=True)
    total = weights.siamese * met + (weights.softmax_a + weights.softmax_b) * sof
    return {"total": total, metric: met, "softmax": sof}


def batch_loss_terms(emb, logits, targets: dict, metric: str = "contrastive",
                     margin: float = 2.0, triplet_margin: float = 0.3,
                     weights: LossWeights = LossWeights()) -> dict:
    """The loss terms of one training batch, as both training steps (TF and JAX) compute them.

    A pair batch (targets "label", "class_a", "class_b"; emb and logits are the A halves then
    the B halves) gets `crf_loss`; an identity batch (targets "class") gets `pk_loss` with the
    triplet margin for --metric_loss=triplet, the contrastive margin otherwise.
    """
    if "label" in targets:
        ea, eb = ops.split(emb, 2)
        la, lb = ops.split(logits, 2)
        return crf_loss(ea, eb, la, lb, targets["label"], targets["class_a"], targets["class_b"],
                        margin, weights)
    return pk_loss(emb, logits, targets["class"], metric,
                   triplet_margin if metric == "triplet" else margin, weights)

