"""Re-id ranking metrics: CMC and mAP, with the standard (MARS / Market-1501) protocol.

For each query, gallery items with the same person id AND the same camera as the query are
removed before ranking (they are trivially easy matches); gallery items with a junk pid (-1)
are removed too. A query with no remaining correct match is excluded from the averages, as in
the reference evaluation code (torchreid's `eval_market1501`, the MARS evaluation). For
PRID-2011 / iLIDS-VID (probe = one camera, gallery = the other) the rule removes nothing, so the
same function serves every dataset.

Results equal those of the reference: a stable argsort of each distance row (ties broken by
gallery index), CMC from the first kept correct match, AP as the mean over the kept correct
matches of the precision at their rank. The computation avoids that full argsort, though:
each row is only value-sorted (in bounded chunks), and the kept rank of each correct match is
found by binary search, minus the few same-identity items removed ahead of it.
"""
from __future__ import annotations

import numpy as np

from keras_crf_reid.datasets.base import JUNK_PID
# Rows of the distance matrix sorted at once: bounds the working memory to about this many bytes.
_CHUNK_BYTES = 8 * 2**20


def _features(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} features must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"{name} features must be 2-D (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} features contain NaN or infinite values")
    return x


def euclidean_distances(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances (Q, G) in float32, via ||q||^2 + ||g||^2 - 2 q.g.

    Computed in row blocks, in place in the output, so no (Q, G) temporary is allocated.
    """
    q = _features(query, "query")
    g = _features(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D); got {q.shape} and {g.shape}")
    out = np.empty((q.shape[0], g.shape[0]), np.float32)
    q_sq = np.einsum("ij,ij->i", q, q)
    g_sq = np.einsum("ij,ij->i", g, g)
    g_t = g.T
    rows = max(1, _CHUNK_BYTES // max(1, 4 * g.shape[0]))
    for s in range(0, q.shape[0], rows):
        block = out[s:s + rows]
        np.matmul(q[s:s + rows], g_t, out=block)
        block *= -2.0
        block += q_sq[s:s + rows, None]
        block += g_sq[None, :]
        np.maximum(block, 0.0, out=block)
        np.sqrt(block, out=block)
    return out


def _labels(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size and x.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {x.dtype}")
    return x.astype(np.int64, copy=False)


def _distmat(distmat) -> np.ndarray:
    d = np.asarray(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be 2-D (Q, G), got shape {d.shape}")
    if d.dtype.kind not in "biuf":
        raise ValueError(f"distmat must be numeric, got dtype {d.dtype}")
    if d.dtype.kind != "f":
        d = d.astype(np.float64)
    elif d.dtype.itemsize < 4:
        d = d.astype(np.float32)
    if np.isnan(d).any():
        raise ValueError("distmat contains NaN")
    return d


def check_eval_inputs(distmat, q_pids, g_pids, q_camids, g_camids
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validates a distance matrix and its labels; returns them as arrays (labels as int64).

    Raises ValueError naming the problem: wrong rank or dtype, NaN distances, length mismatch.
    """
    distmat = _distmat(distmat)
    q_pids, g_pids = _labels(q_pids, "q_pids"), _labels(g_pids, "g_pids")
    q_camids, g_camids = _labels(q_camids, "q_camids"), _labels(g_camids, "g_camids")
    num_q, num_g = distmat.shape
    if (len(q_pids), len(q_camids), len(g_pids), len(g_camids)) != (num_q, num_q, num_g, num_g):
        raise ValueError(f"distmat {distmat.shape} does not match {len(q_pids)}/{len(q_camids)} "
                         f"query and {len(g_pids)}/{len(g_camids)} gallery pids/camids")
    return distmat, q_pids, g_pids, q_camids, g_camids


def kept_gallery(q_pid: int, q_camid: int, g_pids: np.ndarray, g_camids: np.ndarray) -> np.ndarray:
    """Boolean mask of the gallery items ranked for one query (the protocol's removal rule)."""
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    return ~(((g_pids == q_pid) & (g_camids == q_camid)) | (g_pids == JUNK_PID))


def evaluate_rank(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids,
                  max_rank: int = 20) -> tuple[np.ndarray, float]:
    """CMC curve (length max_rank, fractions in [0, 1]) and mAP from a (Q, G) distance matrix.

    Smaller distance = better match. Entries of the CMC past the number of kept gallery items
    repeat the last value (1.0: every counted query has its match somewhere in the gallery).
    Raises ValueError on malformed inputs, NaN distances, or when no query has a correct match.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = check_eval_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = distmat.shape
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")

    # Junk gallery items are removed for every query: drop their columns once.
    kept_cols = np.flatnonzero(g_pids != JUNK_PID)
    no_junk = len(kept_cols) == num_g
    g_pids, g_camids = g_pids[kept_cols], g_camids[kept_cols]
    num_k = len(kept_cols)

    # One (query, gallery) pair per gallery item with the query's pid, grouped by query.
    g_by_pid = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[g_by_pid]
    lo = np.searchsorted(sorted_pids, q_pids, "left")
    counts = np.searchsorted(sorted_pids, q_pids, "right") - lo
    starts = np.concatenate([[0], np.cumsum(counts)])
    num_pairs = int(starts[-1])
    pair_q = np.repeat(np.arange(num_q), counts)
    pair_g = g_by_pid[np.repeat(lo - starts[:-1], counts) + np.arange(num_pairs)]
    pair_d = distmat[pair_q, kept_cols[pair_g]]
    is_pos = g_camids[pair_g] != q_camids[pair_q]
    if not is_pos.any():
        raise ValueError("no query has a correct match in the gallery")

    # before[p]: kept-column items ranked ahead of pair p's item (by distance, then index).
    before = np.empty(num_pairs, np.int64)
    tied = np.zeros(num_pairs, bool)
    rows = max(1, _CHUNK_BYTES // max(1, distmat.itemsize * num_k))
    buf = np.empty((min(rows, num_q), num_k), distmat.dtype)
    for s in range(0, num_q, rows):
        e = min(num_q, s + rows)
        if starts[e] == starts[s]:
            continue
        block = buf[:e - s]
        if no_junk:
            np.copyto(block, distmat[s:e])
        else:
            np.take(distmat[s:e], kept_cols, axis=1, out=block)
        block.sort(axis=1)
        for i in range(s, e):
            a, b = starts[i], starts[i + 1]
            if a == b:
                continue
            left = np.searchsorted(block[i - s], pair_d[a:b], "left")
            right = np.searchsorted(block[i - s], pair_d[a:b], "right")
            before[a:b] = left
            tied[a:b] = right - left > 1
    for i in np.unique(pair_q[tied]):
        a, b = starts[i], starts[i + 1]
        row = distmat[i] if no_junk else distmat[i, kept_cols]
        sel = np.arange(a, b)[tied[a:b]]
        earlier = np.arange(num_k)[None, :] < pair_g[sel, None]
        before[sel] += np.count_nonzero((row[None, :] == pair_d[sel, None]) & earlier, axis=1)

    # Within each query, visit its pairs in ranking order; removed pairs ahead lower the rank.
    order = np.lexsort((pair_g, pair_d, pair_q))
    pos_o = is_pos[order]
    group_start = np.repeat(starts[:-1], counts)
    pos_cum = np.cumsum(pos_o)
    rem_cum = np.cumsum(~pos_o)
    base_pos = np.concatenate([[0], pos_cum])[group_start]
    base_rem = np.concatenate([[0], rem_cum])[group_start]
    removed_ahead = rem_cum - base_rem - (~pos_o)  # removed pairs strictly ahead
    hits = pos_cum - base_pos  # 1-based count of correct matches up to and including this one
    kept_rank = before[order] - removed_ahead  # 0-based rank among the query's kept items

    q_of_pos = pair_q[order][pos_o]
    rank_of_pos = kept_rank[pos_o]
    precision = hits[pos_o] / (rank_of_pos + 1.0)
    num_pos = np.bincount(q_of_pos, minlength=num_q)
    valid = num_pos > 0
    first = np.full(num_q, np.iinfo(np.int64).max)
    np.minimum.at(first, q_of_pos, rank_of_pos)
    first = first[valid]
    cmc = (first[:, None] < np.arange(1, max_rank + 1)[None, :]).mean(0)
    ap = np.bincount(q_of_pos, weights=precision, minlength=num_q)[valid] / num_pos[valid]
    return cmc.astype(np.float64), float(ap.mean())


def cmc_summary(cmc: np.ndarray, mean_ap: float, ranks=(1, 5, 10, 20)) -> dict:
    """Picks the reported ranks out of a CMC curve, as percentages."""
    out = {f"rank{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in ranks}
    out["mAP"] = 100.0 * float(mean_ap)
    return out
