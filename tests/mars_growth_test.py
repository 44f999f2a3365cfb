"""The whole MARS path on a tiny generated MARS-layout dataset: read, cache, train, evaluate."""
import importlib.util
import os

import numpy as np
import pytest

from keras_crf_reid.datasets.mars import load_mars
from keras_crf_reid.datasets.mars_synthetic import generate_mars_synthetic, plan_tracks

_TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                     "bench_growth.py")


def _bench_growth():
    spec = importlib.util.spec_from_file_location("bench_growth", _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_layout_is_read_by_the_mars_reader(tmp_path):
    train, test, query = plan_tracks(600, seed=1, min_len=6, max_len=12)
    mars = generate_mars_synthetic(str(tmp_path), 600, seed=1, min_len=6, max_len=12,
                                   render="noise", workers=1)
    ds = load_mars(mars)
    (split,) = ds.fixed_splits
    assert len(ds.tracklets) == len(train) - 1 + len(test)  # the junk training track is dropped
    assert sum(len(t) for t in ds.tracklets) == sum(t.length for t in train + test) - train[-1].length
    assert len(split.query) == len(query) and len(split.gallery) == len(test) - len(query)
    pids = {ds.tracklets[i].pid for i in split.gallery}
    assert {0, -1} <= pids  # distractors and junk in the gallery
    for q in split.query:  # every query has a true match in another camera
        t = ds.tracklets[q]
        assert any(ds.tracklets[g].pid == t.pid and ds.tracklets[g].camid != t.camid
                   for g in split.gallery)
    assert generate_mars_synthetic(str(tmp_path), 600, seed=1, min_len=6, max_len=12,
                                   render="noise", workers=1) == mars  # reused


@pytest.mark.slow
def test_whole_mars_path(tmp_path):
    stage = _bench_growth().run_stage
    mars = generate_mars_synthetic(str(tmp_path / "data"), 400, min_len=6, max_len=10,
                                   render="noise", workers=1)
    work = str(tmp_path / "work")
    read = stage("read", mars, work)
    assert read["query"] > 0 and read["gallery"] > read["query"] and read["frames"] >= 400 - 10
    cache = stage("cache", mars, work)
    assert 0 < cache["cache_bytes_per_frame"] <= 22 * 1024
    train = stage("train", mars, work, steps=3, seq_len=2, batch_size=4)
    assert train["steps"] == 3 and np.isfinite(train["loss"])
    ev = stage("evaluate", mars, work)
    assert 0.0 <= ev["rank1"] <= 100.0 and 0.0 < ev["mAP"] <= 100.0  # percent
    assert ev["gallery"] == read["gallery"]
