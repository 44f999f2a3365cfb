"""Re-id ranking metrics: CMC and mAP, with the standard (MARS / Market-1501) protocol.

For each query, gallery items with the same person id AND the same camera as the query are
removed before ranking (they are trivially easy matches); gallery items with a junk pid (-1)
are removed too. A query with no remaining correct match is excluded from the averages, as in
the reference evaluation code. For PRID-2011 / iLIDS-VID (probe = one camera, gallery = the
other) the rule removes nothing, so the same function serves every dataset.
"""
from __future__ import annotations

import numpy as np

JUNK_PID = -1


def euclidean_distances(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances (Q, G) in float32, via ||q||^2 + ||g||^2 - 2 q.g."""
    q = np.asarray(query, np.float32)
    g = np.asarray(gallery, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D); got {q.shape} and {g.shape}")
    d2 = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def evaluate_rank(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids,
                  max_rank: int = 20) -> tuple[np.ndarray, float]:
    """CMC curve (length max_rank, fractions in [0, 1]) and mAP from a (Q, G) distance matrix."""
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    if len(q_pids) != num_q or len(q_camids) != num_q or len(g_pids) != num_g or len(g_camids) != num_g:
        raise ValueError(f"distmat {distmat.shape} does not match {len(q_pids)} query and "
                         f"{len(g_pids)} gallery labels")
    order = np.argsort(distmat, axis=1, kind="stable")
    og_pids, og_cams = g_pids[order], g_camids[order]
    matches = og_pids == q_pids[:, None]
    keep = ~((matches & (og_cams == q_camids[:, None])) | (og_pids == JUNK_PID))
    valid_matches = matches & keep
    num_pos = valid_matches.sum(1)
    has_pos = num_pos > 0
    if not has_pos.any():
        raise ValueError("no query has a correct match in the gallery")
    # position of each kept item among kept items (0-based), per row
    kept_rank = np.cumsum(keep, axis=1) - 1
    first = np.where(valid_matches, kept_rank, np.iinfo(np.int64).max).min(1)[has_pos]
    cmc = (first[:, None] < np.arange(1, max_rank + 1)[None, :]).mean(0)
    # AP = mean over positives of precision at that positive's kept rank
    hits_so_far = np.cumsum(valid_matches, axis=1)
    precision = np.where(valid_matches, hits_so_far / (kept_rank + 1.0), 0.0)
    ap = precision.sum(1)[has_pos] / num_pos[has_pos]
    return cmc.astype(np.float64), float(ap.mean())


def cmc_summary(cmc: np.ndarray, mean_ap: float, ranks=(1, 5, 10, 20)) -> dict:
    """Picks the reported ranks out of a CMC curve, as percentages."""
    out = {f"rank{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in ranks}
    out["mAP"] = 100.0 * float(mean_ap)
    return out
