"""Unreadable frames (issue 13 item 4): a person whose frames are all corrupt is skipped, counted,
and training goes on with --on_bad_image=skip; the frame cache decodes each frame only once."""
import json
import os
import subprocess
import sys

import pytest

from keras_crf_reid.datasets.base import DatasetError, ReidDataset, Split, Tracklet
from keras_crf_reid.datasets.frames import BadImageError
from keras_crf_reid.datasets.prid2011 import load_prid_layout
from keras_crf_reid.datasets.store import TrackletStore, drop_unreadable
from keras_crf_reid.datasets.validate import EmptyTrackletError, drop_tracklets
from tests.fixtures import make_prid_fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corrupt(folder: str, only: int | None = None) -> None:
    """Overwrites every frame of `folder` (or only its `only`-th) with bytes no decoder reads."""
    names = sorted(os.listdir(folder))
    for name in names if only is None else names[only:only + 1]:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n garbage, not an image")


@pytest.fixture
def prid(tmp_path):
    root = make_prid_fixture(str(tmp_path / "data"), num_ids=5, num_frames=6)
    cams = os.path.join(root, "multi_shot")
    corrupt(os.path.join(cams, "cam_a", "person_0003"))
    corrupt(os.path.join(cams, "cam_b", "person_0002"), only=1)
    return root


def test_store_build_records_empty_tracklets_and_runner_drops_them(prid, tmp_path):
    dataset = load_prid_layout(prid)
    assert len(dataset.tracklets) == 10
    store = TrackletStore(dataset, str(tmp_path / "cache")).build(progress=False)
    assert list(store.empty) == [4]  # person 3, cam_a (tracklets are ordered pid, camera)
    with pytest.raises(EmptyTrackletError, match="person_0003: tracklet has no readable frame"):
        TrackletStore(dataset, str(tmp_path / "cache")).get(4)
    kept, kept_store = drop_unreadable(dataset, store)
    assert {t.pid for t in kept.tracklets} == {1, 2, 4, 5} and len(kept.tracklets) == 8
    # the cam_a folder, the cam_b folder of the same person and the one bad frame of person 2
    assert kept.stats()["skipped"] == dataset.stats()["skipped"] + 3
    assert any("person 3 has no readable tracklet in camera 0" in r for r in kept.skipped.values())
    assert [len(kept_store.get(i)[0]) for i in range(len(kept_store))] == [6, 6, 6, 5, 6, 6, 6, 6]
    assert kept_store.dir == store.dir  # same cache, nothing decoded again
    # --on_bad_image=fail still stops at the first bad frame
    with pytest.raises(BadImageError):
        TrackletStore(dataset, str(tmp_path / "cache2"), on_bad_image="fail").build(progress=False)


def test_drop_tracklets_reindexes_fixed_splits_and_keeps_one_camera_datasets():
    ts = [Tracklet(1, 0, ("/r/1/a.jpg",)), Tracklet(1, 1, ("/r/1/b.jpg",)),
          Tracklet(2, 0, ("/r/2/c.jpg",)), Tracklet(2, 2, ("/r/2/d.jpg",)),
          Tracklet(3, 1, ("/r/3/e.jpg",))]
    ds = ReidDataset("m", "/r", ts, probe_cam=None, gallery_cam=None,
                     fixed_splits=[Split((0, 1), (2,), (3, 4))])
    out, keep = drop_tracklets(ds, {2: "no readable frame"})
    assert keep == [0, 1, 3, 4] and out.fixed_splits == [Split((0, 1), (), (2, 3))]
    # MARS keeps several tracklets per folder: the first frame names the dropped one
    assert out.skipped == {"/r/2/c.jpg": "no readable frame"} and ds.skipped == {}
    with pytest.raises(DatasetError, match="no tracklet has a readable frame"):
        drop_tracklets(ds, {i: "bad" for i in range(5)})


@pytest.mark.slow
def test_train_skips_a_person_whose_frames_are_all_unreadable(prid, tmp_path):
    cmd = [sys.executable, "-m", "keras_crf_reid.train", "--dataset=prid2011", f"--data_root={prid}",
           f"--cache_dir={tmp_path}/cache", f"--output_dir={tmp_path}/runs", "--name=bad",
           "--on_bad_image=skip", "--num_splits=1", "--filters=4,4,4", "--embed_dim=8",
           "--seq_len=3", "--batch_size=4", "--steps=2", "--eval_seq_len=3", "--export=false",
           "--baseline=false", "--progress=false"]
    done = subprocess.run(cmd, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": REPO},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(next(line for line in done.stdout.splitlines() if '"identities"' in line))
    assert (stats["identities"], stats["tracklets"], stats["skipped"]) == (4, 8, 3)
    split = json.load(open(tmp_path / "runs" / "bad" / "splits.json"))["splits"][0]
    assert sorted(split["train"] + split["query"] + split["gallery"]) == list(range(8))
    assert "tracklets without a readable frame" in done.stderr


def test_cache_build_without_progress_bar_prints_periodic_lines(prid, tmp_path, capsys):
    dataset = load_prid_layout(prid)
    TrackletStore(dataset, str(tmp_path / "cache")).build(progress=False, log_every_s=0)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("frame cache")]
    assert len(lines) == 11 and "10/10 tracklets" in lines[-1] and "ETA" in lines[0]  # 10 + final


@pytest.mark.slow
def test_precompute_flow_counts_a_tracklet_with_no_readable_frame_as_skipped(prid, tmp_path):
    cmd = [sys.executable, "-m", "keras_crf_reid.precompute_flow", "--dataset=prid2011",
           f"--data_root={prid}", f"--cache_dir={tmp_path}/cache", "--progress=false"]
    done = subprocess.run(cmd, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": REPO},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["unreadable_tracklets"] == 1 and summary["skipped_frames"] == 7
    assert (summary["tracklets"], summary["skipped"]) == (8, 3)   # as the training run counts them
    assert "frame cache" in done.stderr and "no readable frame" in done.stderr
