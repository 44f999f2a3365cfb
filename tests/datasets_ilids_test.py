"""iLIDS-VID reader on fixtures in the real layout, with and without the official split .mat."""
import os
import shutil

import numpy as np
import pytest
import scipy.io

from keras_crf_reid.datasets import DatasetError, get_splits, load_ilidsvid
from tests.fixtures import make_ilids_fixture, write_image

PERSONS = (1, 2, 5, 7)  # folder numbers have gaps, as in the real data (up to person319)


def test_reads_both_cameras_without_split_file(tmp_path):
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=8, first_frame=95)
    ds = load_ilidsvid(root)
    assert ds.name == "ilidsvid" and ds.fixed_splits is None
    assert ds.root == os.path.join(root, "i-LIDS-VID")
    assert [(t.pid, t.camid, len(t)) for t in ds.tracklets] == [(p, c, 8) for p in PERSONS for c in (0, 1)]
    t = ds.tracklets[6]
    folder = os.path.join(root, "i-LIDS-VID", "sequences", "cam1", "person007")
    assert t.frames == tuple(os.path.join(folder, f"cam1_person007_{f:05d}.png") for f in range(95, 103))
    assert ds.tracklets[7].frames[0].endswith(os.path.join("cam2", "person007", "cam2_person007_00095.png"))
    # the i-LIDS-VID folder itself is accepted as root too
    assert load_ilidsvid(os.path.join(root, "i-LIDS-VID")).tracklets == ds.tracklets


def test_official_splits_index_sorted_folders_first_half_test(tmp_path):
    ls_set = np.array([[3, 1, 4, 2], [2, 4, 1, 3]])
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2, ls_set=ls_set)
    ds = load_ilidsvid(root)
    assert len(ds.fixed_splits) == 2
    by = {(t.pid, t.camid): i for i, t in enumerate(ds.tracklets)}
    s0 = ds.fixed_splits[0]
    # row 0: indices 3, 1 -> persons 5, 1 are tested; 4, 2 -> persons 7, 2 are trained on
    assert s0.query == (by[1, 0], by[5, 0])
    assert s0.gallery == (by[1, 1], by[5, 1])
    assert s0.train == (by[2, 0], by[2, 1], by[7, 0], by[7, 1])
    s1 = ds.fixed_splits[1]
    assert {ds.tracklets[i].pid for i in s1.query} == {2, 7}
    assert {ds.tracklets[i].pid for i in s1.train} == {1, 5}
    assert get_splits(ds, num_splits=1) == [s0]


def test_explicit_split_path(tmp_path):
    root = make_ilids_fixture(str(tmp_path / "data"), PERSONS, num_frames=2)
    path = str(tmp_path / "my splits.mat")
    scipy.io.savemat(path, {"ls_set": np.array([[4, 3, 2, 1]], float)})
    ds = load_ilidsvid(root, split_path=path)
    assert {ds.tracklets[i].pid for i in ds.fixed_splits[0].query} == {7, 5}
    with pytest.raises(DatasetError, match="split file does not exist"):
        load_ilidsvid(root, split_path=str(tmp_path / "missing.mat"))


@pytest.mark.parametrize("content, message", [
    ({"other": np.arange(4)}, "variable 'ls_set' missing"),
    ({"ls_set": np.array([[1, 2, 3]])}, "expected \\(num_splits, 4\\)"),
    ({"ls_set": np.array([[1, 2, 3, 3]])}, "not a permutation of 1..4"),
    ({"ls_set": np.array([[1, 2, 3, 5]])}, "not a permutation of 1..4"),
    ({"ls_set": np.array([[1.5, 2, 3, 4]])}, "non-empty integer array"),
])
def test_malformed_split_mat(tmp_path, content, message):
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2)
    split_dir = os.path.join(root, "train-test people splits")
    os.makedirs(split_dir)
    path = os.path.join(split_dir, "train_test_splits_ilidsvid.mat")
    scipy.io.savemat(path, content)
    with pytest.raises(DatasetError, match=message) as e:
        load_ilidsvid(root)
    assert str(e.value).startswith(path)


def test_corrupt_split_file(tmp_path):
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2)
    os.makedirs(os.path.join(root, "train-test people splits"))
    path = os.path.join(root, "train-test people splits", "train_test_splits_ilidsvid.mat")
    with open(path, "wb") as f:
        f.write(b"not a mat file at all")
    with pytest.raises(DatasetError, match="cannot read MATLAB file") as e:
        load_ilidsvid(root)
    assert path in str(e.value)


def test_frame_of_another_camera_in_folder_is_an_error(tmp_path):
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2)
    bad = os.path.join(root, "i-LIDS-VID", "sequences", "cam1", "person002", "cam2_person002_00500.png")
    write_image(bad, 2, 1, 500)
    with pytest.raises(DatasetError, match="file name says camera 2 person 2") as e:
        load_ilidsvid(root)
    assert bad in str(e.value)


def test_oddly_named_frames_are_skipped(tmp_path):
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2)
    odd = os.path.join(root, "i-LIDS-VID", "sequences", "cam2", "person005", "copy of frame.png")
    write_image(odd, 5, 1, 1)
    ds = load_ilidsvid(root)
    assert "does not match" in ds.skipped[odd]
    assert all(len(t) == 2 for t in ds.tracklets)


def test_missing_camera_folder(tmp_path):
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2)
    cam2 = os.path.join(root, "i-LIDS-VID", "sequences", "cam2")
    os.rename(cam2, cam2 + "_old")
    with pytest.raises(DatasetError, match=f"^{cam2}: camera folder does not exist"):
        load_ilidsvid(root)


def test_not_ilids_folder(tmp_path):
    with pytest.raises(DatasetError, match="not an iLIDS-VID folder"):
        load_ilidsvid(str(tmp_path))


def test_split_requires_every_person(tmp_path):
    """A person missing from one camera shifts the .mat indices: refuse instead of mislabelling."""
    root = make_ilids_fixture(str(tmp_path), PERSONS, num_frames=2, ls_set=np.array([[1, 2, 3, 4]]))
    shutil.rmtree(os.path.join(root, "i-LIDS-VID", "sequences", "cam2", "person002"))
    with pytest.raises(DatasetError, match="expected \\(num_splits, 3\\)"):
        load_ilidsvid(root)
