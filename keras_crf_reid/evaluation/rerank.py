"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), in the form torchreid ships: k1=20, k2=6, lambda=0.3, squared Euclidean
distances normalised per row by their maximum, and a candidate's half-size reciprocal set joining
the expansion when more than 2/3 of it lies in the probe's k1-reciprocal set.

The final distance is `lambda * d + (1 - lambda) * d_Jaccard`, where d_Jaccard compares the
Gaussian-weighted, query-expanded (k2 nearest) k-reciprocal neighbour vectors of two items
over the pooled query + gallery set. NumPy only, vectorised with boolean/float matrices:
O(n^2) memory for n = queries + gallery.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from keras_crf_reid.evaluation.metrics import cmc_summary, euclidean_distances, evaluate_rank

K1, K2, LAMBDA = 20, 6, 0.3


def _neighbours(rank: np.ndarray, k: int) -> np.ndarray:
    """Boolean (n, n): [i, j] = j is among the k+1 nearest of i (i itself included)."""
    n = len(rank)
    nn = np.zeros((n, n), bool)
    np.put_along_axis(nn, rank[:, :k + 1], True, axis=1)
    return nn


def rerank(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = K1, k2: int = K2,
           lambda_value: float = LAMBDA) -> np.ndarray:
    """Re-ranked (Q, G) distances from Euclidean query-gallery, query-query, gallery-gallery ones."""
    q_g, q_q, g_g = (np.asarray(d, np.float64) for d in (q_g, q_q, g_g))
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ValueError(f"rerank: query-gallery {q_g.shape} needs query-query ({nq}, {nq}) and "
                         f"gallery-gallery ({ng}, {ng}) distances; got {q_q.shape} and {g_g.shape}")
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"rerank: k1, k2 must be >= 1 and lambda in [0, 1]; got {k1}, {k2}, "
                         f"{lambda_value}")
    if nq == 0 or ng == 0:
        return np.zeros((nq, ng), np.float32)
    dist = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
    dist = dist / np.maximum(dist.max(axis=1, keepdims=True), 1e-12)
    rank = np.argsort(dist, axis=1, kind="stable")
    full = _neighbours(rank, k1)
    recip = full & full.T                                   # R(i, k1)
    half_nn = _neighbours(rank, int(np.around(k1 / 2.0)))
    half = half_nn & half_nn.T                              # R(c, k1/2) per candidate c
    overlap = recip.astype(np.float32) @ half.T.astype(np.float32)  # |R(i,k1) & R(c,k1/2)|
    joins = recip & (overlap > 2.0 / 3.0 * half.sum(axis=1)[None, :])
    expanded = recip | ((joins.astype(np.float32) @ half.astype(np.float32)) > 0)
    v = np.where(expanded, np.exp(-dist), 0.0)
    v /= v.sum(axis=1, keepdims=True)
    if k2 > 1:
        v = v[rank[:, :k2]].mean(axis=1)
    jaccard = np.empty((nq, len(v)))
    for i in range(nq):
        shared = np.minimum(v[i], v).sum(axis=1)
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:nq]
    return final[:, nq:].astype(np.float32)


def rerank_features(query: np.ndarray, gallery: np.ndarray, k1: int = K1, k2: int = K2,
                    lambda_value: float = LAMBDA) -> np.ndarray:
    """Re-ranked (Q, G) distances of query and gallery feature vectors."""
    return rerank(euclidean_distances(query, gallery), euclidean_distances(query, query),
                  euclidean_distances(gallery, gallery), k1, k2, lambda_value)


def compare_reranking(qf: np.ndarray, gf: np.ndarray, query: Sequence, gallery: Sequence,
                      settings: Sequence[tuple[int, int, float]]) -> dict:
    """Rank-1/5/10/20 and mAP of query features `qf` against gallery features `gf` with plain
    Euclidean distances ("plain") and re-ranked with each (k1, k2, lambda) setting ("rerank
    k1:k2:lambda", with the seconds it took). `query`/`gallery`: tracklets (.pid, .camid)."""
    ids = ([t.pid for t in query], [t.pid for t in gallery],
           [t.camid for t in query], [t.camid for t in gallery])

    def score(dist: np.ndarray) -> dict:
        return {k: round(v, 1) for k, v in cmc_summary(*evaluate_rank(dist, *ids)).items()}

    q_g = euclidean_distances(qf, gf)
    q_q, g_g = euclidean_distances(qf, qf), euclidean_distances(gf, gf)
    out = {"plain": score(q_g)}
    for k1, k2, lam in settings:
        t = time.time()
        re = rerank(q_g, q_q, g_g, k1, k2, lam)
        out[f"rerank {k1}:{k2}:{lam:g}"] = {**score(re), "seconds": round(time.time() - t, 2)}
    return out
