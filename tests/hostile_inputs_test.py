"""Seeded fuzzing of the data path with hostile files: each gets a counted skip or a clear error.

Every person folder of a PRID-layout dataset receives, besides its good frames, a random mix of
broken files (truncated PNG/JPEG, zero bytes, text named .png, a decompression-bomb sized PNG)
and odd-but-valid images (grayscale, RGBA, 16-bit, other sizes), under unicode/space names.
The readers, the frame cache and the pair pipeline must finish (no hang), skip exactly the bad
files, and keep every frame with the right identity (fixture pixels encode pid and camera).
"""
import os
import shutil

import cv2
import numpy as np
import pytest

from keras_crf_reid.datasets import DatasetError, get_dataset
from keras_crf_reid.datasets.pipeline import PairConfig, pair_dataset
from keras_crf_reid.datasets.store import TrackletStore
from tests.fixtures import make_prid_fixture

BAD_KINDS = ("truncated_png", "truncated_jpg", "zero_bytes", "text", "bomb")
ODD_KINDS = ("gray", "rgba", "uint16", "big")


def _write_hostile(path: str, kind: str, pid: int, cam: int, rng: np.random.Generator) -> None:
    colour = np.array([(pid * 37) % 256, (cam * 60) % 256, 10], np.uint8)  # BGR as in fixtures
    if kind in ("truncated_png", "truncated_jpg"):
        ext = ".png" if kind == "truncated_png" else ".jpg"
        ok, data = cv2.imencode(ext, rng.integers(0, 255, (128, 64, 3), dtype=np.uint8))
        data = data.tobytes()
        open(path, "wb").write(data[: len(data) // int(rng.integers(3, 8))])
    elif kind == "zero_bytes":
        open(path, "wb").close()
    elif kind == "text":
        open(path, "w").write("not an image\n")
    elif kind == "bomb":  # 12000 x 12000 px, tiny on disk: must be refused, not decoded
        cv2.imencode(".png", np.zeros((12000, 12000), np.uint8))[1].tofile(path)
    else:
        img = np.broadcast_to(colour, (128, 64, 3)).copy()
        if kind == "gray":
            img = np.full((128, 64), 128, np.uint8)
        elif kind == "rgba":
            img = np.dstack([img, np.full((128, 64), 255, np.uint8)])
        elif kind == "uint16":
            img = img.astype(np.uint16) * 257
        elif kind == "big":
            img = np.broadcast_to(colour, (600, 300, 3)).copy()
        cv2.imencode(".png", img)[1].tofile(path)


@pytest.mark.parametrize("seed", [0, 1])
def test_hostile_files_are_skipped_and_labels_stay_right(tmp_path, seed):
    rng = np.random.default_rng(seed)
    base = make_prid_fixture(str(tmp_path / "d ü"), num_ids=4, num_frames=6)
    cams = os.path.join(base, "multi_shot")
    bad, odd = [], []
    for cam_i, cam in enumerate(("cam_a", "cam_b")):
        for pid in range(1, 5):
            folder = os.path.join(cams, cam, f"person_{pid:04d}")
            for k, kind in enumerate(rng.choice(BAD_KINDS + ODD_KINDS, size=3)):
                ext = ".jpg" if kind == "truncated_jpg" else ".png"
                path = os.path.join(folder, f"9{k:03d} é {kind}{ext}")
                _write_hostile(path, str(kind), pid, cam_i, rng)
                (bad if kind in BAD_KINDS else odd).append(path)
    os.symlink(cams, os.path.join(cams, "cam_a", "loop"))  # a symlink loop must not hang
    ds = get_dataset("prid_layout", base)
    store = TrackletStore(ds, str(tmp_path / "cache")).build(progress=False)
    assert sorted(store.skipped_frames) == sorted(bad)
    for i, t in enumerate(ds.tracklets):
        rgb, flow = store.get(i)
        assert rgb.shape[1:] == (128, 64, 3) and np.all(np.isfinite(flow))
        good = [p for p in t.frames if p not in bad]
        assert len(rgb) == len(good)
        for frame, path in zip(rgb, good):
            if "é" not in path or "gray" in path:
                continue
            # every kept frame carries its own person's colour: no label mix-up
            assert abs(int(frame[..., 2].mean()) - (t.pid * 37) % 256) <= 1, path
    (x, _), y = next(iter(pair_dataset(store, range(len(store)), PairConfig(4, 4), 1)[0]))
    assert np.all(np.isfinite(x.numpy())) and y["label"].numpy().sum() == 2


def test_fail_mode_names_the_bad_file(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    bad = os.path.join(base, "multi_shot", "cam_b", "person_0002", "0002.png")
    open(bad, "wb").close()
    ds = get_dataset("prid_layout", base)
    with pytest.raises(DatasetError, match="0002.png.*empty"):
        TrackletStore(ds, str(tmp_path / "c"), on_bad_image="fail").build(progress=False)


def test_person_in_one_camera_only_and_missing_root(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=3, num_frames=3, only_in={3: "cam_a"})
    ds = get_dataset("prid_layout", base)
    assert sorted({t.pid for t in ds.tracklets}) == [1, 2]
    assert any("person_0003" in k for k in ds.skipped)
    shutil.rmtree(base)
    with pytest.raises(DatasetError, match="does not exist"):
        get_dataset("prid_layout", base)
