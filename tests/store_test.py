"""Frame/flow cache: computed once, compact, atomic entries, resumable, stale and full-disk cases."""
import errno
import os

import numpy as np
import pytest

from keras_crf_reid.datasets.base import DatasetError, ReidDataset, Tracklet
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.synthetic import generate_synthetic
from keras_crf_reid.datasets import store as store_mod
from keras_crf_reid.datasets.flow import FLOW_LEVELS, compute_flow, dequantize_flow, quantize_flow
from keras_crf_reid.datasets.frames import read_frames
from keras_crf_reid.datasets.store import CacheError, TrackletStore


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
        np.testing.assert_array_equal(f1, f2)  # same quantisation, zlib is lossless
        assert r1.shape == r2.shape and f1.shape[1:] == (128, 64, 2) and f1.dtype == np.float32
        err = np.abs(r1.astype(np.int16) - r2)
        assert err.mean() < 5 and np.percentile(err, 99) < 30  # JPEG q90 of noisy frames
    files = sorted(os.listdir(cached.dir))
    assert len(files) == len(dataset.tracklets) and all(f.endswith(".crf") for f in files)
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


def test_quantised_flow_within_half_a_step(dataset, tmp_path):
    half = 0.5 / FLOW_LEVELS + 1e-6
    values = np.linspace(-1.2, 1.2, 2001, dtype=np.float32)
    assert np.abs(dequantize_flow(quantize_flow(values)) - np.clip(values, -1, 1)).max() <= half
    cached = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    for i, t in enumerate(dataset.tracklets):
        exact = compute_flow(read_frames(t.frames)[0]).astype(np.float32)
        _, flow = cached.window(i, np.arange(len(exact)))
        assert np.abs(flow - exact).max() <= half
        assert np.abs(flow - exact).max() > 0  # it is quantised


def test_cache_is_compact(dataset, tmp_path):
    cached = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    size = sum(os.path.getsize(os.path.join(cached.dir, f)) for f in os.listdir(cached.dir))
    assert size / cached.lengths().sum() <= 22 * 1024
    # even pure noise (JPEG's worst case) stays within the budget, at a lower JPEG quality
    rng = np.random.default_rng(0)
    for t in (1, 5):
        noise = rng.integers(0, 256, (t, 128, 64, 3), dtype=np.uint8)
        chunks = store_mod.encode_entry(noise, np.zeros((t, 128, 64, 2), np.int8))
        assert sum(map(len, chunks)) <= t * store_mod.MAX_FRAME_BYTES


def test_new_cache_version_gets_a_new_folder(dataset, tmp_path, monkeypatch):
    current = TrackletStore(dataset, str(tmp_path)).dir
    monkeypatch.setattr(store_mod, "CACHE_VERSION", "v1-dis-medium-clip8")
    assert TrackletStore(dataset, str(tmp_path)).dir != current


def test_another_opencv_version_gets_a_new_folder(dataset, tmp_path, monkeypatch):
    """Flow from another OpenCV (DIS differs between 4.14 and 5.1) is never read as this one's."""
    current = TrackletStore(dataset, str(tmp_path)).dir
    monkeypatch.setattr(store_mod, "OPENCV_VERSION", "opencv5.1")
    other = TrackletStore(dataset, str(tmp_path)).dir
    monkeypatch.setattr(store_mod, "OPENCV_VERSION", "opencv4.14")
    assert len({current, other, TrackletStore(dataset, str(tmp_path)).dir}) == 2


def test_foreign_or_truncated_entry_is_rebuilt_not_misread(dataset, tmp_path):
    store = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    good = store.get(0)
    path = store.path(0)
    np.save(str(tmp_path / "v1.npy"), np.zeros((3, 128, 64, 3), np.uint8))  # a v1-style array
    with open(path, "rb") as f:
        truncated = f.read()[:-100]
    for content in ((tmp_path / "v1.npy").read_bytes(), truncated, b""):
        with open(path, "wb") as f:
            f.write(content)
        again = TrackletStore(dataset, str(tmp_path)).get(0)
        np.testing.assert_array_equal(again[0], good[0])
        np.testing.assert_array_equal(again[1], good[1])
    with pytest.raises(CacheError, match="not a usable"):
        store_mod._Entry(os.path.join(str(tmp_path), "missing.crf"))


def test_build_resumes_after_an_interrupted_run(dataset, tmp_path, monkeypatch):
    calls = []
    real = TrackletStore._compute

    def failing(self, i):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(i)
        return real(self, i)

    monkeypatch.setattr(TrackletStore, "_compute", failing)
    with pytest.raises(KeyboardInterrupt):
        TrackletStore(dataset, str(tmp_path)).build(workers=1, progress=False)
    store = TrackletStore(dataset, str(tmp_path))
    kept = sorted(os.listdir(store.dir))
    assert len(kept) == 2 and all(f.endswith(".crf") for f in kept)
    # a temp file of a killed process (pid that no longer exists) is cleaned up
    stale = os.path.join(store.dir, "x.crf.999999999.1.tmp")
    open(stale, "wb").close()
    mtimes = {f: os.stat(os.path.join(store.dir, f)).st_mtime_ns for f in kept}
    monkeypatch.setattr(TrackletStore, "_compute", real)
    computed = []
    monkeypatch.setattr(TrackletStore, "_compute", lambda self, i: computed.append(i) or real(self, i))
    store.build(workers=2, progress=False)
    assert sorted(computed) == sorted(set(range(len(dataset.tracklets))) - set(calls))
    assert {f: os.stat(os.path.join(store.dir, f)).st_mtime_ns for f in kept} == mtimes
    assert not os.path.exists(stale) and len(os.listdir(store.dir)) == len(dataset.tracklets)


def test_disk_full_names_the_entry_and_leaves_nothing_half_written(dataset, tmp_path, monkeypatch):
    real_replace = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod.os, "replace", full)
    store = TrackletStore(dataset, str(tmp_path))
    with pytest.raises(CacheError, match="no space left") as e:
        store.build(workers=1, progress=False)
    assert store.dir in str(e.value) and ".crf" in str(e.value) and "--cache_dir" in str(e.value)
    assert os.listdir(store.dir) == []  # the temp file was removed
    monkeypatch.setattr(store_mod.os, "replace", real_replace)

    def fills_up(rgb, q):
        yield b"x" * 100  # part of the entry reaches the temp file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "encode_entry", fills_up)
    with pytest.raises(CacheError, match="no space left"):
        store.build(workers=1, progress=False)
    assert os.listdir(store.dir) == []


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("part", ["colour", "flow"])
def test_corrupted_entry_part_is_rebuilt_with_a_warning(dataset, tmp_path, part, caplog):
    store = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    good = store.window_q(0, np.arange(3))
    entry = store_mod._Entry(store.path(0))
    offset = int(entry.offsets[1]) + 20 if part == "colour" else entry.flow_at + 128 * 64 * 2 + 77
    for k in range(5):                                  # a few bytes of frame 1's part
        _flip(store.path(0), offset + 7 * k)
    fresh = TrackletStore(dataset, str(tmp_path))
    with caplog.at_level("WARNING", logger=store_mod.log.name):
        again = fresh.window_q(0, np.arange(3))
    np.testing.assert_array_equal(again[0], good[0])
    np.testing.assert_array_equal(again[1], good[1])
    assert any("checksum" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(TrackletStore(dataset, str(tmp_path)).window_q(0, np.arange(3))[1], good[1])


def test_corrupted_entry_without_its_frames_is_a_clear_error(tmp_path):
    root = generate_synthetic(str(tmp_path / "s"), num_ids=2, seed=5, min_len=4, max_len=5,
                              progress=False)
    ds = load_prid_layout(root)
    store = TrackletStore(ds, str(tmp_path / "c")).build(progress=False)
    _flip(store.path(0), store_mod._Entry(store.path(0)).flow_at + 5)
    for frame in ds.tracklets[0].frames:
        os.remove(frame)
    with pytest.raises(CacheError, match=f"{os.path.basename(store.path(0))}.*cannot be rebuilt"):
        store.get(0)                                    # the entry named before the frames went


def test_checksums_of_a_window_that_starts_after_frame_0(dataset, tmp_path, caplog):
    """Windows read from the middle of an entry are checked against their own frames' checksums:
    clean ones pass untouched, a damaged frame inside one is caught."""
    store = TrackletStore(dataset, str(tmp_path)).build(progress=False)
    i = max(range(len(dataset.tracklets)), key=lambda k: len(dataset.tracklets[k].frames))
    rgb, flow = store_mod._Entry(store.path(i)).frames(np.arange(len(dataset.tracklets[i].frames)))
    n = len(rgb)
    assert n >= 5
    mtime = os.stat(store.path(i)).st_mtime_ns
    with caplog.at_level("WARNING", logger=store_mod.log.name):
        for idx in ([2, 3], [n - 1], [3, 1, 3], np.arange(1, n)):
            got = TrackletStore(dataset, str(tmp_path)).window_q(i, np.asarray(idx))
            np.testing.assert_array_equal(got[0], rgb[idx])
            np.testing.assert_array_equal(got[1], flow[idx])
    assert not caplog.records and os.stat(store.path(i)).st_mtime_ns == mtime   # nothing rebuilt
    entry = store_mod._Entry(store.path(i))
    for part, offset in (("colour", int(entry.offsets[3]) + 30), ("flow", entry.flow_at + 3 * 128 * 64 * 2 + 99)):
        _flip(store.path(i), offset)
        with pytest.raises(store_mod.CorruptEntryError, match=f"frame 3's {part}"):
            store_mod._Entry(store.path(i)).frames(np.arange(2, 5))
        _flip(store.path(i), offset)
