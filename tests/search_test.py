"""Gallery search: tracklet discovery, indexes, ranking, embedding cache and CLI."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from keras_crf_reid.datasets.base import DatasetError
from keras_crf_reid.models import factory
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.serving import export, inference, search

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_tracklet(folder, n, seed):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"{i:04d}.png"), np.roll(base, 2 * i, axis=0))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """PRID-layout gallery (cam_b/person_000k) and a query that copies person_0002."""
    root = tmp_path_factory.mktemp("search")
    for pid in range(1, 6):
        write_tracklet(root / "gallery" / "cam_b" / f"person_{pid:04d}", 6 + pid, seed=pid)
    shutil.copytree(root / "gallery" / "cam_b" / "person_0002", root / "query" / "person_0002")
    write_tracklet(root / "query" / "person_0009", 7, seed=9)
    keras.utils.set_random_seed(0)
    model_path = str(root / "tiny.keras")
    build_crf_model(TINY).save(model_path)
    return root, model_path


def test_find_tracklets_prid_and_flat(data, tmp_path):
    root, _ = data
    names = [n for n, _ in search.find_tracklets(str(root / "gallery"))]
    assert names == [f"cam_b/person_{p:04d}" for p in range(1, 6)]
    single = search.find_tracklets(str(root / "query" / "person_0009"))
    assert [n for n, _ in single] == ["."]
    with pytest.raises(DatasetError, match="no folder of images"):
        search.find_tracklets(str(tmp_path))


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_index_matches_brute_force(kind):
    if kind == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    g, q = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)
    index = search.make_index(kind, 8)
    index.add(g[:20])
    index.add(g[20:])
    assert len(index) == 50
    dist, ids = index.search(q, 5)
    brute = np.linalg.norm(q[:, None] - g[None], axis=2)
    np.testing.assert_array_equal(ids, np.argsort(brute, axis=1)[:, :5])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :5], atol=1e-4)
    assert index.search(q, 100)[1].shape == (4, 50)
    with pytest.raises(ValueError, match=r"queries must be \(N, 8\)"):
        index.search(q[:, :4], 1)


def test_unknown_index_kind():
    with pytest.raises(ValueError, match="--index must be one of"):
        search.make_index("annoy", 4)


def test_search_with_rerank_keeps_the_copy_first(data):
    root, model_path = data
    embedder = inference.load(model_path)
    out = search.search(embedder, model_path, str(root / "gallery"), str(root / "query"), top_k=5,
                        rerank=True)
    first = out["results"][0]
    assert out["rerank"] and first["matches"][0]["tracklet"] == "cam_b/person_0002"
    dist = [m["distance"] for m in first["matches"]]
    assert dist == sorted(dist) and len(dist) == 5


def test_search_ranks_copy_first_and_caches(data, tmp_path, monkeypatch):
    root, model_path = data
    embedder = inference.load(model_path)
    cache = str(tmp_path / "cache")
    out = search.search(embedder, model_path, str(root / "gallery"), str(root / "query"), top_k=3,
                        cache_dir=cache)
    first = out["results"][0]
    assert first["query"] == "person_0002"
    assert [m["rank"] for m in first["matches"]] == [1, 2, 3]
    assert first["matches"][0]["tracklet"] == "cam_b/person_0002"
    assert first["matches"][0]["distance"] < 1e-2 < first["matches"][1]["distance"]
    assert out["gallery_size"] == 5 and len(out["results"]) == 2
    assert len(os.listdir(cache)) == 1 and os.listdir(cache)[0].startswith("gallery_")

    calls = []
    original = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda folder: calls.append(folder) or original(folder))
    again = search.search(embedder, model_path, str(root / "gallery"), str(root / "query"), top_k=3,
                          cache_dir=cache)
    assert len(calls) == 2, "gallery embeddings must come from the cache"
    assert again["results"] == out["results"]


def test_cache_key_follows_model_and_files(data, tmp_path):
    root, model_path = data
    tracklets = search.find_tracklets(str(root / "gallery"))
    key = search.gallery_cache_path("c", model_path, tracklets)
    assert key == search.gallery_cache_path("c", model_path, tracklets)
    assert key != search.gallery_cache_path("c", model_path, tracklets[:-1])
    other = str(tmp_path / "other.keras")
    shutil.copy(model_path, other)
    assert key != search.gallery_cache_path("c", other, tracklets)


def test_search_cli_with_saved_model(data, tmp_path):
    root, model_path = data
    base = str(tmp_path / "crf_reid")
    export.export_saved_model(factory.load_keras_model(model_path), base)
    output = str(tmp_path / "results.json")
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.search", f"--model={base}", f"--gallery={root / 'gallery'}",
           f"--query={root / 'query'}", "--top_k=2", f"--cache_dir={tmp_path / 'cache'}", f"--output={output}",
           f"--picture={tmp_path / 'ranked.png'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.path.getsize(tmp_path / "ranked.png") > 1000
    assert "person_0002: cam_b/person_0002" in done.stdout
    with open(output) as f:
        results = json.load(f)["results"]
    assert results[0]["matches"][0]["tracklet"] == "cam_b/person_0002"


def test_undecodable_tracklet_stops_the_search_or_is_skipped_and_counted(data, tmp_path, caplog):
    root, model_path = data
    gallery = tmp_path / "gallery"
    shutil.copytree(root / "gallery", gallery)
    (gallery / "cam_b" / "person_0007").mkdir()
    (gallery / "cam_b" / "person_0007" / "0000.png").write_bytes(b"not a png")
    query = tmp_path / "query"
    shutil.copytree(root / "query", query)
    (query / "person_0008").mkdir()
    (query / "person_0008" / "0000.jpg").write_bytes(b"\xff\xd8 truncated")
    embedder = inference.load(model_path)
    with pytest.raises(DatasetError, match="person_0007.*--skip_bad_tracklets"):
        search.search(embedder, model_path, str(gallery), str(query), top_k=3)
    for cache in (None, str(tmp_path / "cache"), str(tmp_path / "cache")):   # fresh, then cached
        caplog.clear()
        out = search.search(embedder, model_path, str(gallery), str(query), top_k=3,
                            cache_dir=cache, skip_bad=True)
        assert out["gallery_size"] == 5 and [r["query"] for r in out["results"]] == ["person_0002", "person_0009"]
        assert sorted(out["skipped"]["gallery"]) == ["cam_b/person_0007"]
        assert sorted(out["skipped"]["query"]) == ["person_0008"] and out["skipped"]["count"] == 2
        assert out["results"][0]["matches"][0]["tracklet"] == "cam_b/person_0002"
        assert any("cannot be embedded" in r.getMessage() for r in caplog.records)
