"""PRID-2011 and PRID-layout readers on fixtures in the real layout, hostile inputs, real data."""
import concurrent.futures
import logging
import os
import shutil

import pytest

from keras_crf_reid.datasets import (DatasetError, get_dataset, get_splits, load_prid2011,
                                     load_prid2011_178, load_prid_layout)
from tests.fixtures import REALDATA, make_prid_fixture, write_image

REAL_PETS = os.path.join(REALDATA, "mot_tracklets", "pets09_s2l1")


def _summary(ds):
    return [(t.pid, t.camid, len(t)) for t in ds.tracklets]


def test_prid_layout_reads_every_person_in_order(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=3, num_frames=5, lengths={("cam_b", 2): 7})
    ds = load_prid_layout(base)
    assert ds.name == "prid_layout"
    assert ds.root == os.path.join(base, "multi_shot")
    assert _summary(ds) == [(1, 0, 5), (1, 1, 5), (2, 0, 5), (2, 1, 7), (3, 0, 5), (3, 1, 5)]
    assert (ds.probe_cam, ds.gallery_cam) == (0, 1)
    t = ds.tracklets[3]
    assert t.frames[0] == os.path.join(base, "multi_shot", "cam_b", "person_0002", "0001.png")
    assert [os.path.basename(f) for f in t.frames] == [f"{i:04d}.png" for i in range(1, 8)]
    assert ds.skipped == {}
    assert ds.stats()["frames"] == 32


@pytest.mark.parametrize("sub", ["", "prid_2011", os.path.join("prid_2011", "multi_shot")])
def test_prid_root_may_be_any_level(tmp_path, sub):
    make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    ds = load_prid_layout(os.path.join(str(tmp_path), sub))
    assert _summary(ds) == [(1, 0, 3), (1, 1, 3), (2, 0, 3), (2, 1, 3)]


def test_prid_cam_folders_directly_in_root(tmp_path):
    base = make_prid_fixture(str(tmp_path / "x"), num_ids=2, num_frames=3)
    direct = tmp_path / "direct"
    shutil.move(os.path.join(base, "multi_shot"), direct)
    assert len(load_prid_layout(str(direct)).tracklets) == 4


@pytest.fixture
def protocol_fixture(tmp_path):
    """Ids 1-4 and 200 within the protocol's 200, 201 and 250 outside; person 3 is short in
    cam_b, person 4 only in cam_a, person 250 only in cam_b."""
    return make_prid_fixture(
        str(tmp_path), num_frames=21, person_ids=[1, 2, 3, 4, 200, 201, 250],
        lengths={("cam_b", 3): 20, ("cam_a", 200): 30}, only_in={4: "cam_a", 250: "cam_b"})


def test_prid2011_is_the_papers_protocol_every_person_of_both_cameras(protocol_fixture):
    base = protocol_fixture
    ds = get_dataset("prid2011", base)
    assert ds.name == "prid2011"
    assert ds.pids == [1, 2, 3, 200]
    assert _summary(ds) == [(1, 0, 21), (1, 1, 21), (2, 0, 21), (2, 1, 21), (3, 0, 21), (3, 1, 20),
                            (200, 0, 30), (200, 1, 21)]
    cam_a4 = os.path.join(base, "multi_shot", "cam_a", "person_0004")
    assert set(ds.skipped) == {cam_a4} and "no folder in" in ds.skipped[cam_a4]
    # half of the persons train, half test (100 / 100 on the real data)
    for split in get_splits(ds, num_splits=3, seed=0):
        train = {ds.tracklets[i].pid for i in split.train}
        test = {ds.tracklets[i].pid for i in split.query}
        assert len(train) == len(test) == 2 and not train & test
        assert test == {ds.tracklets[i].pid for i in split.gallery}


def test_prid2011_178_keeps_persons_with_21_frames(protocol_fixture):
    base = protocol_fixture
    ds = get_dataset("prid2011_178", base)
    assert ds.name == "prid2011_178"
    assert ds.pids == [1, 2, 200] == load_prid2011_178(base).pids
    assert _summary(ds) == [(1, 0, 21), (1, 1, 21), (2, 0, 21), (2, 1, 21), (200, 0, 30), (200, 1, 21)]
    cam_b3 = os.path.join(base, "multi_shot", "cam_b", "person_0003")
    assert "20 frames < min_len 21" in ds.skipped[cam_b3]
    cam_a4 = os.path.join(base, "multi_shot", "cam_a", "person_0004")
    assert "no folder in" in ds.skipped[cam_a4]
    # ids above 200 are outside the protocol, not data problems
    assert not any("person_0201" in p or "person_0250" in p for p in ds.skipped)

    loose = load_prid_layout(base)
    assert loose.pids == [1, 2, 3, 200, 201]
    assert os.path.join(base, "multi_shot", "cam_b", "person_0250") in loose.skipped


def test_prid_frames_sorted_numerically(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=1, num_frames=12, padded_names=False)
    ds = load_prid_layout(base)
    assert [os.path.basename(f) for f in ds.tracklets[0].frames] == [f"{i}.png" for i in range(1, 13)]


def test_missing_root(tmp_path):
    root = str(tmp_path / "nope")
    with pytest.raises(DatasetError, match=f"^{root}: dataset root does not exist$"):
        load_prid_layout(root)
    with pytest.raises(DatasetError, match=f"^{root}: dataset root does not exist$"):
        get_dataset("prid2011", root)


def test_missing_cam_folder_is_named(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    shutil.rmtree(os.path.join(base, "multi_shot", "cam_b"))
    with pytest.raises(DatasetError) as e:
        load_prid2011(base)
    assert os.path.join(base, "multi_shot", "cam_b") in str(e.value)
    assert "does not exist" in str(e.value)


def test_wrong_layout_names_the_root(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a PRID-2011 layout folder") as e:
        load_prid_layout(str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_camera_without_person_folders_is_a_layout_error(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    cam_a = os.path.join(base, "multi_shot", "cam_a")
    for name in ("person_0001", "person_0002"):
        os.rename(os.path.join(cam_a, name), os.path.join(cam_a, name[-4:]))
    with pytest.raises(DatasetError, match="no person folders matching 'person_") as e:
        load_prid_layout(base)
    assert str(e.value).startswith(cam_a + ":") and "0001" in str(e.value)


def test_no_person_in_both_cameras_raises(tmp_path):
    base = make_prid_fixture(str(tmp_path), person_ids=[1, 2], num_frames=3,
                             only_in={1: "cam_a", 2: "cam_b"})
    with pytest.raises(DatasetError, match="no person is present in both"):
        load_prid_layout(base)


def test_all_persons_too_short_raises(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=5)
    with pytest.raises(DatasetError, match="at least 21 frames"):
        load_prid2011_178(base)
    assert len(load_prid2011(base).pids) == 2


def test_person_in_one_camera_is_dropped_and_warned(tmp_path, caplog):
    base = make_prid_fixture(str(tmp_path), person_ids=[1, 2, 3], num_frames=3, only_in={2: "cam_b"})
    with caplog.at_level(logging.WARNING):
        ds = load_prid_layout(base)
    assert ds.pids == [1, 3]
    folder = os.path.join(base, "multi_shot", "cam_b", "person_0002")
    assert ds.skipped == {folder: f"person 2 has no folder in {os.path.join(base, 'multi_shot', 'cam_a')}"}
    assert folder in caplog.text


def test_empty_folders_stray_files_and_bad_names_are_skipped(tmp_path, caplog):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    cam_a = os.path.join(base, "multi_shot", "cam_a")
    cam_b = os.path.join(base, "multi_shot", "cam_b")
    os.makedirs(os.path.join(cam_a, "person_0003"))
    os.makedirs(os.path.join(cam_b, "person_0003"))
    os.makedirs(os.path.join(cam_a, "person_x"))
    os.makedirs(os.path.join(cam_a, "person_0001", "sub"))
    os.makedirs(os.path.join(cam_b, ".hidden"))
    for p in (os.path.join(cam_a, "README.txt"), os.path.join(cam_a, "person_0001", "Thumbs.db"),
              os.path.join(cam_b, "person_0002", "notes.txt"),
              os.path.join(cam_b, "person_0002", ".DS_Store")):
        with open(p, "w") as f:
            f.write("x")
    with caplog.at_level(logging.WARNING):
        ds = load_prid_layout(base)
    assert _summary(ds) == [(1, 0, 3), (1, 1, 3), (2, 0, 3), (2, 1, 3)]
    expected = {
        os.path.join(cam_a, "person_0003"): "no image frames",
        os.path.join(cam_b, "person_0003"): "no image frames",
        os.path.join(cam_a, "person_x"): "does not match",
        os.path.join(cam_a, "person_0001", "sub"): "not a regular file",
        os.path.join(cam_a, "README.txt"): "stray file",
        os.path.join(cam_a, "person_0001", "Thumbs.db"): "not an image file",
        os.path.join(cam_b, "person_0002", "notes.txt"): "not an image file",
    }
    assert set(ds.skipped) == set(expected)
    for path, reason in expected.items():
        assert reason in ds.skipped[path], (path, ds.skipped[path])
    assert "cam_a: 5 entries skipped" in caplog.text and "cam_b: 2 entries skipped" in caplog.text


def test_duplicate_person_ids_raise(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    dup = os.path.join(base, "multi_shot", "cam_a", "person_1")
    write_image(os.path.join(dup, "0001.png"), 1, 0, 1)
    with pytest.raises(DatasetError, match="same person id") as e:
        load_prid_layout(base)
    assert "person_1" in str(e.value) and "person_0001" in str(e.value)


def test_same_folder_in_both_cameras_raises(tmp_path):
    base = make_prid_fixture(str(tmp_path), person_ids=[1, 2], num_frames=3, only_in={2: "cam_a"})
    os.symlink(os.path.join(base, "multi_shot", "cam_a", "person_0002"),
               os.path.join(base, "multi_shot", "cam_b", "person_0002"))
    with pytest.raises(DatasetError, match="is the same folder as"):
        load_prid_layout(base)


def test_unicode_and_space_paths(tmp_path):
    root = tmp_path / "données ré-id" / "PRID copy 2"
    base = make_prid_fixture(str(root), num_ids=2, num_frames=4)
    ds = get_dataset("prid_layout", base)
    assert _summary(ds) == [(1, 0, 4), (1, 1, 4), (2, 0, 4), (2, 1, 4)]
    assert all(os.path.isfile(f) for t in ds.tracklets for f in t.frames)
    assert "données ré-id" in ds.tracklets[0].frames[0]


def test_symlink_loops_do_not_hang(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=2, num_frames=3)
    cam_a = os.path.join(base, "multi_shot", "cam_a")
    cam_b = os.path.join(base, "multi_shot", "cam_b")
    os.symlink("person_0009", os.path.join(cam_a, "person_0009"))        # self loop (ELOOP)
    os.symlink("..", os.path.join(cam_a, "person_0001", "up"))           # loop back up the tree
    os.symlink(cam_b, os.path.join(cam_b, "person_0005"))                # folder pointing to its parent
    os.symlink(base, os.path.join(cam_a, "person_0005"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ds = pool.submit(load_prid_layout, base).result(timeout=30)
    assert _summary(ds) == [(1, 0, 3), (1, 1, 3), (2, 0, 3), (2, 1, 3)]
    assert "broken link" in ds.skipped[os.path.join(cam_a, "person_0009")]
    assert "not a regular file" in ds.skipped[os.path.join(cam_a, "person_0001", "up")]
    assert "no image frames" in ds.skipped[os.path.join(cam_b, "person_0005")]


def test_min_len_must_be_positive(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=1, num_frames=2)
    with pytest.raises(ValueError, match="min_len"):
        load_prid_layout(base, min_len=0)


@pytest.mark.skipif(not os.path.isdir(REAL_PETS), reason="real MOT tracklets not available")
def test_real_pets09_tracklets():
    ds = load_prid_layout(REAL_PETS, name="pets09_s2l1")
    cam_a = sorted(os.listdir(os.path.join(REAL_PETS, "cam_a")))
    assert ds.pids == [int(n.split("_")[1]) for n in cam_a] == list(range(1, 20))
    assert len(ds.tracklets) == 38 and ds.skipped == {}
    assert [t.camid for t in ds.tracklets] == [0, 1] * 19
    for t in ds.tracklets:
        cam = "cam_a" if t.camid == 0 else "cam_b"
        folder = os.path.join(os.path.abspath(REAL_PETS), cam, f"person_{t.pid:04d}")
        assert len(t) == 32 == len(os.listdir(folder))
        assert t.frames == tuple(os.path.join(folder, f"{i:04d}.png") for i in range(1, 33))
    assert ds.stats()["frames"] == 1216
