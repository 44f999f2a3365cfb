"""k-reciprocal re-ranking agrees with a loop-by-loop transcription of the paper's equations."""
import math

import numpy as np
import pytest

from keras_crf_reid.evaluation.metrics import euclidean_distances
from keras_crf_reid.evaluation.rerank import rerank, rerank_features


def _reference(query, gallery, k1, k2, lam):
    """Zhong et al. 2017, equation by equation, with Python loops and sets."""
    feats = np.concatenate([query, gallery]).astype(np.float64)
    n, nq = len(feats), len(query)
    # squared Euclidean distance, each row divided by its maximum (the torchreid form)
    d = [[float(((feats[i] - feats[j]) ** 2).sum()) for j in range(n)] for i in range(n)]
    d = [[d[i][j] / max(d[i]) for j in range(n)] for i in range(n)]
    order = [sorted(range(n), key=lambda j, i=i: (d[i][j], j)) for i in range(n)]

    def knn(i, k):  # N(i, k): the k nearest, the item itself counted (k + 1 entries)
        return set(order[i][:k + 1])

    def reciprocal(i, k):  # Eq. 4: R(i, k) = {j in N(i, k) | i in N(j, k)}
        return {j for j in knn(i, k) if i in knn(j, k)}

    half = round(k1 / 2)
    v = np.zeros((n, n))
    for i in range(n):
        r_star = set(reciprocal(i, k1))  # Eq. 6: R*(p, k)
        for q in reciprocal(i, k1):
            rq = reciprocal(q, half)
            # the paper writes >= 2/3; torchreid (and so this package) uses a strict >
            if len(rq & reciprocal(i, k1)) > 2 / 3 * len(rq):
                r_star |= rq
        total = sum(math.exp(-d[i][j]) for j in r_star)
        for j in r_star:  # Eq. 7: Gaussian kernel weights, normalised
            v[i, j] = math.exp(-d[i][j]) / total
    if k2 > 1:  # Eq. 11: local query expansion over the k2 nearest
        v = np.array([[sum(v[j, m] for j in order[i][:k2]) / k2 for m in range(n)]
                      for i in range(n)])
    out = np.zeros((nq, n - nq))
    for i in range(nq):
        for g in range(nq, n):
            mins = sum(min(v[i, m], v[g, m]) for m in range(n))
            maxs = sum(max(v[i, m], v[g, m]) for m in range(n))
            jaccard = 1 - mins / maxs  # Eq. 10
            out[i, g - nq] = (1 - lam) * jaccard + lam * d[i][g]  # Eq. 12
    return out


@pytest.mark.parametrize("k1,k2,lam,seed", [(20, 6, 0.3, 0), (5, 3, 0.3, 1), (4, 1, 0.5, 2)])
def test_matches_loop_reference(k1, k2, lam, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 8))  # clusters, so reciprocal sets are not trivial
    query = centres[rng.integers(0, 6, 7)] + 0.5 * rng.normal(size=(7, 8))
    gallery = centres[rng.integers(0, 6, 23)] + 0.5 * rng.normal(size=(23, 8))
    got = rerank_features(query.astype(np.float32), gallery.astype(np.float32), k1, k2, lam)
    want = _reference(query, gallery, k1, k2, lam)
    assert got.shape == (7, 23)
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()


def test_reranking_changes_the_order_and_keeps_a_clear_match_first():
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(40, 16)).astype(np.float32)
    query = gallery[:5] + 0.01 * rng.normal(size=(5, 16)).astype(np.float32)
    plain = euclidean_distances(query, gallery)
    re = rerank_features(query, gallery)
    assert (re.argmin(axis=1) == np.arange(5)).all()
    assert not np.allclose(np.argsort(plain, axis=1), np.argsort(re, axis=1))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="query-query"):
        rerank(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 3)))


def test_evaluation_applies_rerank_to_the_split_distances():
    from keras_crf_reid.configs.evaluation import EvalConfig
    from keras_crf_reid.datasets.base import Split
    from keras_crf_reid.evaluation.protocol import split_distances

    assert EvalConfig().rerank is False and EvalConfig(rerank=True).rerank
    rng = np.random.default_rng(4)
    feats = {i: rng.normal(size=8).astype(np.float32) for i in range(30)}
    split = Split((), tuple(range(6)), tuple(range(6, 30)))
    q, g = np.stack([feats[i] for i in range(6)]), np.stack([feats[i] for i in range(6, 30)])
    np.testing.assert_allclose(split_distances(feats, split), euclidean_distances(q, g), rtol=1e-6)
    np.testing.assert_allclose(split_distances(feats, split, rerank=True), rerank_features(q, g))


def test_compare_reranking_scores_plain_and_each_setting():
    from types import SimpleNamespace

    from keras_crf_reid.evaluation.rerank import compare_reranking
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 8))
    qf, gf = centres + 0.05 * rng.normal(size=(6, 8)), centres + 0.05 * rng.normal(size=(6, 8))
    query = [SimpleNamespace(pid=p, camid=0) for p in range(6)]
    gallery = [SimpleNamespace(pid=p, camid=1) for p in range(6)]
    out = compare_reranking(qf, gf, query, gallery, [(3, 2, 0.3), (2, 1, 0.5)])
    assert list(out) == ["plain", "rerank 3:2:0.3", "rerank 2:1:0.5"]
    assert out["plain"]["rank1"] == out["rerank 3:2:0.3"]["rank1"] == 100.0
    assert out["rerank 2:1:0.5"]["seconds"] >= 0


def test_rerank_eval_on_a_mars_layout_with_baselines_only(tmp_path):
    from keras_crf_reid.configs.evaluation import RerankEvalConfig
    from keras_crf_reid.serving.rerank_eval import rerank_eval
    from tests.fixtures import make_mars_fixture
    root = make_mars_fixture(str(tmp_path))
    out = rerank_eval(RerankEvalConfig(data_root=root, model_rows=False, baselines=("stripe_hsv",),
                                       settings=("2:1:0.3",)))
    assert [r["features"] for r in out["rows"]] == ["baseline stripe_hsv"]
    assert set(out["rows"][0]) == {"features", "plain", "rerank 2:1:0.3"}
    assert out["num_query"] > 0 and out["num_gallery"] > 0
    with pytest.raises(ValueError, match="--settings"):
        RerankEvalConfig(settings=("20:6",))
