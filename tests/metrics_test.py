"""CMC / mAP protocol: hand-worked cases, ties, junk, removal rules, validation, and a
randomized cross-check against a plain per-query loop written after torchreid's
`eval_market1501`."""
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from keras_crf_reid.evaluation import metrics


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Per-query loop as in torchreid's eval_market1501, plus junk (-1) removal."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    all_cmc, all_ap = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        remove = ((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) \
            | (g_pids[order] == -1)
        raw_cmc = (g_pids[order] == q_pids[i])[~remove].astype(np.int64)
        if not raw_cmc.any():
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        if len(cmc) < max_rank:
            cmc = np.concatenate([cmc, np.full(max_rank - len(cmc), cmc[-1])])
        all_cmc.append(cmc[:max_rank])
        tmp_cmc = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0)
        all_ap.append((tmp_cmc * raw_cmc).sum() / raw_cmc.sum())
    if not all_cmc:
        return None
    return np.mean(np.asarray(all_cmc, np.float64), 0), float(np.mean(all_ap))


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=5):
    return metrics.evaluate_rank(np.asarray(distmat, np.float64), q_pids, g_pids, q_camids,
                                 g_camids, max_rank=max_rank)


def test_hand_worked_single_query():
    # Gallery sorted by distance: pids 2, 1, 3, 1, 4 (all camera 1, query camera 0).
    # Correct matches at ranks 2 and 4: CMC = [0, 1, 1, 1, 1];
    # AP = (1/2 + 2/4) / 2 = 0.5.
    cmc, ap = evaluate([[0.1, 0.2, 0.3, 0.4, 0.5]], [1], [2, 1, 3, 1, 4], [0], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1, 1])
    assert ap == pytest.approx(0.5)


def test_hand_worked_unsorted_gallery_and_two_queries():
    # Query 0 (pid 7, cam 0): distances put gallery in order g2 (pid 7), g0 (pid 8), g1 (pid 7)
    #   -> matches at ranks 1 and 3: AP0 = (1/1 + 2/3) / 2 = 5/6, first match at rank 1.
    # Query 1 (pid 8, cam 1): order g1 (pid 7), g2 (pid 7), g0 (pid 8, cam 0: kept)
    #   -> match at rank 3: AP1 = 1/3, first match at rank 3.
    # CMC = mean([1,1,1,1,1], [0,0,1,1,1]) = [.5, .5, 1, 1, 1]; mAP = (5/6 + 1/3) / 2 = 7/12.
    distmat = [[0.5, 0.9, 0.1],
               [0.8, 0.2, 0.3]]
    cmc, ap = evaluate(distmat, [7, 8], [8, 7, 7], [0, 1], [0, 2, 2])
    np.testing.assert_allclose(cmc, [0.5, 0.5, 1, 1, 1])
    assert ap == pytest.approx(7 / 12)


def test_same_pid_same_camera_is_removed_but_other_camera_kept():
    # Query pid 1, cam 0. g0: pid 6 cam 0 (different pid: kept, d .05); g1: pid 1 cam 0
    # (same pid AND camera: removed, d .1); g2: pid 5 cam 1 (d .2); g3: pid 1 cam 2 (d .3).
    # Kept order: g0, g2, g3 -> match at rank 3. CMC = [0, 0, 1, 1, 1]; AP = 1/3.
    cmc, ap = evaluate([[0.05, 0.1, 0.2, 0.3]], [1], [6, 1, 5, 1], [0], [0, 0, 1, 2])
    np.testing.assert_array_equal(cmc, [0, 0, 1, 1, 1])
    assert ap == pytest.approx(1 / 3)


def test_junk_gallery_items_are_removed():
    # g0 is junk (pid -1) and closest; removing it puts the match g2 at rank 2 (after g1).
    # Without removal it would be rank 3. CMC = [0, 1, 1, 1, 1]; AP = 1/2.
    cmc, ap = evaluate([[0.0, 0.1, 0.2]], [3], [-1, 4, 3], [0], [1, 1, 1])
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1, 1])
    assert ap == pytest.approx(0.5)


def test_ties_are_broken_by_gallery_index():
    # All distances equal: the ranking is the gallery order. Query pid 1 cam 0:
    # g0 pid 2, g1 pid 1 cam 0 (removed), g2 pid 1 cam 1, g3 pid 3, g4 pid 1 cam 1.
    # Kept order: g0, g2, g3, g4 -> matches at ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 1/2.
    cmc, ap = evaluate([[1.0] * 5], [1], [2, 1, 1, 3, 1], [0], [1, 0, 1, 1, 1])
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1, 1])
    assert ap == pytest.approx(0.5)
    # A correct match before a tied wrong one ranks first: AP = (1/1 + 2/3) / 2 = 5/6.
    cmc, ap = evaluate([[1.0, 1.0, 1.0]], [1], [1, 2, 1], [0], [1, 1, 1])
    np.testing.assert_array_equal(cmc, [1, 1, 1, 1, 1])
    assert ap == pytest.approx(5 / 6)


def test_partial_ties_mixed_with_distinct_distances():
    # Sorted by (distance, index): g3 (0.1, pid 1), g0 (0.5, pid 2), g2 (0.5, pid 1),
    # g4 (0.5, pid 1), g1 (0.7, pid 2). Matches at ranks 1, 3, 4:
    # AP = (1/1 + 2/3 + 3/4) / 3 = 29/36.
    cmc, ap = evaluate([[0.5, 0.7, 0.5, 0.1, 0.5]], [1], [2, 2, 1, 1, 1], [0], [1] * 5)
    np.testing.assert_array_equal(cmc, [1, 1, 1, 1, 1])
    assert ap == pytest.approx(29 / 36)


def test_query_without_valid_match_is_skipped():
    # Query 0 (pid 1) matches at rank 1 (AP 1). Query 1 (pid 9) is absent from the gallery,
    # query 2 (pid 2, cam 0) only has a same-camera item: both are skipped.
    distmat = [[0.1, 0.2], [0.1, 0.2], [0.1, 0.2]]
    cmc, ap = evaluate(distmat, [1, 9, 2], [1, 2], [0, 0, 0], [1, 0])
    np.testing.assert_array_equal(cmc, [1, 1, 1, 1, 1])
    assert ap == 1.0


def test_cmc_longer_than_gallery_saturates():
    # Two gallery items, match at rank 2: CMC[1:] are all 1.
    cmc, ap = evaluate([[0.1, 0.2]], [1], [2, 1], [0], [1, 1], max_rank=20)
    assert cmc.shape == (20,) and cmc.dtype == np.float64
    np.testing.assert_array_equal(cmc, [0] + [1] * 19)
    assert ap == pytest.approx(0.5)


def test_two_camera_protocol_removes_nothing():
    # PRID / iLIDS style: probe cam 0, gallery cam 1, one tracklet per person.
    distmat = np.array([[0.2, 0.1, 0.9], [0.3, 0.4, 0.5], [0.1, 0.2, 0.05]])
    cmc, ap = evaluate(distmat, [0, 1, 2], [0, 1, 2], [0, 0, 0], [1, 1, 1], max_rank=3)
    # Ranks of the true match: query 0 -> 2, query 1 -> 2, query 2 -> 1.
    np.testing.assert_allclose(cmc, [1 / 3, 1, 1])
    assert ap == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_accepts_lists_int_and_float16_distances():
    want = evaluate([[1, 3, 2]], [1], [2, 1, 1], [0], [1, 1, 1])
    for d in ([[1, 3, 2]], np.array([[1, 3, 2]], np.int32), np.array([[1, 3, 2]], np.float16)):
        cmc, ap = metrics.evaluate_rank(d, [1], [2, 1, 1], [0], [1, 1, 1], max_rank=5)
        np.testing.assert_array_equal(cmc, want[0])
        assert ap == want[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(distmat=np.zeros(3)), "2-D"),
    (dict(distmat=np.array([[np.nan, 0.0]])), "NaN"),
    (dict(distmat=np.array([["a", "b"]])), "numeric"),
    (dict(q_pids=[1, 2]), "does not match"),
    (dict(g_camids=[0]), "does not match"),
    (dict(g_pids=[[1, 2]]), "1-D"),
    (dict(q_pids=[1.5]), "integers"),
    (dict(max_rank=0), "max_rank"),
    (dict(max_rank=2.0), "max_rank"),
    (dict(max_rank=True), "max_rank"),
    (dict(g_pids=[5, 6]), "no query has a correct match"),
])
def test_invalid_inputs_raise(kwargs, message):
    args = dict(distmat=np.array([[0.1, 0.2]]), q_pids=[1], g_pids=[1, 2], q_camids=[0],
                g_camids=[1, 1], max_rank=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        metrics.evaluate_rank(**args)


def test_only_same_camera_matches_raises():
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate([[0.1, 0.2]], [1], [1, 2], [0], [0, 1])


def random_case(rng, ties: bool):
    num_q, num_g = int(rng.integers(1, 25)), int(rng.integers(1, 60))
    num_ids, num_cams = int(rng.integers(1, 8)), int(rng.integers(1, 4))
    q_pids, g_pids = rng.integers(-1, num_ids, num_q), rng.integers(-1, num_ids, num_g)
    q_cams, g_cams = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    if ties:
        distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
        distmat[rng.random(distmat.shape) < 0.1] = np.inf
    else:
        distmat = rng.random((num_q, num_g))
    return distmat, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk_bytes", [None, 64])
def test_matches_reference_loop_on_random_cases(ties, chunk_bytes, monkeypatch):
    if chunk_bytes:  # several row blocks, down to one row per block
        monkeypatch.setattr(metrics, "_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(1234 + ties)
    checked = 0
    for _ in range(150):
        case = random_case(rng, ties)
        max_rank = int(rng.integers(1, 12))
        want = reference_evaluate(*case, max_rank)
        if want is None:
            with pytest.raises(ValueError):
                metrics.evaluate_rank(*case, max_rank=max_rank)
            continue
        cmc, ap = metrics.evaluate_rank(*case, max_rank=max_rank)
        np.testing.assert_array_equal(cmc, want[0])
        assert ap == pytest.approx(want[1], rel=1e-12, abs=1e-12)
        checked += 1
    assert checked > 50


def test_matches_reference_on_feature_distances(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK_BYTES", 4096)
    rng = np.random.default_rng(7)
    num_ids = 30
    centres = rng.standard_normal((num_ids, 16))
    q_pids, g_pids = rng.integers(0, num_ids, 60), rng.integers(-1, num_ids, 400)
    q_cams, g_cams = rng.integers(0, 6, 60), rng.integers(0, 6, 400)
    qf = centres[q_pids] + rng.standard_normal((60, 16))
    gf = centres[np.maximum(g_pids, 0)] + rng.standard_normal((400, 16))
    distmat = metrics.euclidean_distances(qf, gf)
    cmc, ap = metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    want = reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_array_equal(cmc, want[0])
    assert ap == pytest.approx(want[1], rel=1e-12)


def test_euclidean_distances_match_cdist(monkeypatch):
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((37, 24)), rng.standard_normal((53, 24))
    want = cdist(q, g)
    got = metrics.euclidean_distances(q, g)
    assert got.dtype == np.float32 and got.shape == (37, 53)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(metrics, "_CHUNK_BYTES", 256)  # 1 query row per block
    np.testing.assert_allclose(metrics.euclidean_distances(q, g), want, rtol=1e-4, atol=1e-4)


def test_euclidean_distances_identical_rows_are_zero_not_nan():
    x = np.full((3, 8), 1e3, np.float32)
    d = metrics.euclidean_distances(x, x)
    assert np.isfinite(d).all() and (d >= 0).all() and d.max() < 1e-1


@pytest.mark.parametrize("q, g, message", [
    (np.zeros((2, 3)), np.zeros((2, 4)), "features must be"),
    (np.zeros(3), np.zeros((2, 3)), "2-D"),
    (np.array([[np.nan, 0.0]]), np.zeros((1, 2)), "NaN or infinite"),
    (np.zeros((1, 2)), np.array([["a", "b"]]), "numeric"),
])
def test_euclidean_distances_invalid(q, g, message):
    with pytest.raises(ValueError, match=message):
        metrics.euclidean_distances(q, g)


def test_cmc_summary_percent():
    cmc = np.linspace(0.5, 0.99, 20)
    out = metrics.cmc_summary(cmc, 0.42)
    assert out == pytest.approx({"rank1": 50.0, "rank5": 100 * cmc[4], "rank10": 100 * cmc[9],
                                 "rank20": 99.0, "mAP": 42.0})
    # A short curve: ranks past its end read its last entry.
    assert metrics.cmc_summary(np.array([0.1, 0.3]), 0.2, ranks=(1, 5))["rank5"] == \
        pytest.approx(30.0)


def test_kept_gallery_mask():
    mask = metrics.kept_gallery(1, 0, np.array([1, 1, 2, -1, 2]), np.array([0, 1, 0, 1, 1]))
    np.testing.assert_array_equal(mask, [False, True, True, False, True])
