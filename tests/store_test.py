"""Frame/flow cache: computed once, atomic entries, same content as uncached, bad frames."""
import os

import numpy as np
import pytest

from keras_crf_reid.datasets.base import DatasetError, ReidDataset, Tracklet
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.synthetic import generate_synthetic
from keras_crf_reid.datasets.store import TrackletStore


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s"), num_ids=3, seed=5,
                              min_len=4, max_len=8, progress=False)
    return load_prid_layout(root)


def test_cache_matches_uncached_and_is_reused(dataset, tmp_path):
    cached = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    plain = TrackletStore(dataset, None)
    for i in range(len(dataset.tracklets)):
        (r1, f1), (r2, f2) = cached.get(i), plain.get(i)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(f1, f2)
        assert r1.shape[1:] == (128, 64, 3) and f1.shape[1:] == (128, 64, 2) and f1.dtype == np.float16
    files = sorted(os.listdir(cached.dir))
    assert len(files) == 2 * len(dataset.tracklets) and not any("tmp" in f for f in files)
    mtimes = [os.path.getmtime(os.path.join(cached.dir, f)) for f in files]
    TrackletStore(dataset, str(tmp_path)).build(progress=False)
    assert mtimes == [os.path.getmtime(os.path.join(cached.dir, f)) for f in files]


def test_regenerated_frames_get_a_new_cache_entry(tmp_path):
    root = generate_synthetic(str(tmp_path / "s"), num_ids=2, seed=5, min_len=4, max_len=5,
                              progress=False)
    ds = load_prid_layout(root)
    first = TrackletStore(ds, str(tmp_path / "c")).build(progress=False).get(0)[0].copy()
    frame = ds.tracklets[0].frames[0]
    img = np.full((128, 64, 3), 200, np.uint8)
    import cv2
    cv2.imwrite(frame, img)
    os.utime(frame, ns=(os.stat(frame).st_atime_ns, os.stat(frame).st_mtime_ns + 10 ** 9))
    again = TrackletStore(ds, str(tmp_path / "c")).get(0)[0]
    assert not np.array_equal(first[0], again[0])
    np.testing.assert_array_equal(again[0], img)


def test_window_loops_past_the_end(dataset, tmp_path):
    store = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    rgb, _ = store.get(0)
    n = len(rgb)
    w, _ = store.window(0, np.arange(n - 1, n + 2))
    np.testing.assert_array_equal(w, rgb[[n - 1, 0, 1]])


def test_bad_frames_skipped_or_failed(tmp_path, dataset):
    t = dataset.tracklets[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = ReidDataset("x", str(tmp_path), [Tracklet(t.pid, t.camid, t.frames + (str(broken),))])
    store = TrackletStore(ds, str(tmp_path / "c"))
    rgb, _ = store.get(0)
    assert len(rgb) == len(t.frames) and store.skipped_frames == [str(broken)]
    with pytest.raises(DatasetError, match="broken.png"):
        TrackletStore(ds, str(tmp_path / "c2"), on_bad_image="fail").get(0)
    only_bad = ReidDataset("y", str(tmp_path), [Tracklet(1, 0, (str(broken),))])
    with pytest.raises(DatasetError, match="no readable frame"):
        TrackletStore(only_bad, str(tmp_path / "c3")).get(0)
