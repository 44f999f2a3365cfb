"""MARS reader on a fixture in the official layout (.mat info files), and malformed variants."""
import os

import numpy as np
import pytest
import scipy.io

from keras_crf_reid.datasets import DatasetError, get_dataset, get_splits, load_mars
from keras_crf_reid.datasets.base import JUNK_PID
from keras_crf_reid.evaluation.metrics import evaluate_rank
from tests.fixtures import make_mars_fixture


@pytest.fixture
def mars(tmp_path):
    return make_mars_fixture(str(tmp_path))


def _info(mars, name):
    return os.path.join(mars, "info", name)


def test_official_split(mars):
    ds = load_mars(mars)
    assert ds.name == "mars" and ds.root == mars
    assert (ds.probe_cam, ds.gallery_cam) == (None, None)
    assert [t.pid for t in ds.tracklets] == [2, 2, 4, 4, 3, 3, 5, 5, 3, 0, JUNK_PID]
    assert [t.camid for t in ds.tracklets] == [0, 1, 0, 2, 0, 1, 3, 5, 0, 1, 0]
    assert [len(t) for t in ds.tracklets] == [3, 4, 3, 2, 3, 2, 3, 2, 2, 2, 2]
    (split,) = ds.fixed_splits
    assert split.train == (0, 1, 2, 3)
    assert split.query == (4, 6)
    assert split.gallery == (5, 7, 8, 9, 10)
    # the junk training track is excluded and recorded
    assert list(ds.skipped.values()) == ["junk/distractor track (pid -1) excluded from training"]
    assert get_splits(ds, num_splits=10) == [split]


def test_frame_paths_and_order(mars):
    ds = load_mars(mars)
    second_pid3_cam1 = ds.tracklets[8]
    assert second_pid3_cam1.frames == (
        os.path.join(mars, "bbox_test", "0003", "0003C1T0002F001.jpg"),
        os.path.join(mars, "bbox_test", "0003", "0003C1T0002F002.jpg"))
    assert ds.tracklets[1].frames[-1] == os.path.join(mars, "bbox_train", "0002", "0002C2T0001F004.jpg")
    assert ds.tracklets[10].frames[0] == os.path.join(mars, "bbox_test", "00-1", "00-1C1T0001F001.jpg")
    assert all(os.path.isfile(f) for t in ds.tracklets for f in t.frames)


def test_junk_and_same_camera_gallery_items_do_not_count(mars):
    """With the standard metric, junk and same-camera tracks in the gallery are ignored."""
    ds = load_mars(mars)
    (split,) = ds.fixed_splits
    q = [ds.tracklets[i] for i in split.query]
    g = [ds.tracklets[i] for i in split.gallery]
    # every query is closest to junk and to its own-camera track, then to its true match
    dist = np.array([[0.0 if gt.pid in (JUNK_PID, qt.pid) and gt.camid in (0, qt.camid) else
                      0.5 if gt.pid == qt.pid else 2.0 for gt in g] for qt in q])
    cmc, mean_ap = evaluate_rank(dist, [t.pid for t in q], [t.pid for t in g],
                                 [t.camid for t in q], [t.camid for t in g], max_rank=3)
    assert cmc[0] == 1.0 and mean_ap == 1.0


def test_parent_folder_and_registry(mars):
    ds = get_dataset("mars", os.path.dirname(mars))
    assert len(ds.tracklets) == 11


def test_missing_variable(mars):
    path = _info(mars, "tracks_test_info.mat")
    scipy.io.savemat(path, {"track_info": np.ones((2, 4))})
    with pytest.raises(DatasetError, match="variable 'track_test_info' missing") as e:
        load_mars(mars)
    assert str(e.value).startswith(path)


def test_wrong_shape(mars):
    path = _info(mars, "tracks_train_info.mat")
    scipy.io.savemat(path, {"track_train_info": np.ones((3, 3))})
    with pytest.raises(DatasetError, match="expected \\(num_tracks, 4\\)") as e:
        load_mars(mars)
    assert str(e.value).startswith(path)


def test_index_out_of_range_of_name_file(mars):
    path = _info(mars, "tracks_test_info.mat")
    table = scipy.io.loadmat(path)["track_test_info"]
    table[-1, 1] = 10_000
    scipy.io.savemat(path, {"track_test_info": table})
    with pytest.raises(DatasetError, match="row 7: frame range 15..10000 out of range") as e:
        load_mars(mars)
    assert path in str(e.value) and "test_name.txt" in str(e.value)


def test_track_mixing_persons_is_an_error(mars):
    path = _info(mars, "tracks_train_info.mat")
    table = scipy.io.loadmat(path)["track_train_info"]
    table[0, 1] += 1  # first track now swallows the first frame of the next track
    scipy.io.savemat(path, {"track_train_info": table})
    with pytest.raises(DatasetError, match="0002C2T0001F001.jpg .*does not belong to person 2 camera 1"):
        load_mars(mars)


def test_bad_camera(mars):
    path = _info(mars, "tracks_train_info.mat")
    table = scipy.io.loadmat(path)["track_train_info"]
    table[0, 3] = 7
    scipy.io.savemat(path, {"track_train_info": table})
    with pytest.raises(DatasetError, match="camera 7 outside 1..6"):
        load_mars(mars)


@pytest.mark.parametrize("query, message", [
    ([0, 1], "values 0..1 out of range of the 7 test tracks"),
    ([1, 8], "values 1..8 out of range of the 7 test tracks"),
    ([1, 1], "more than once"),
])
def test_bad_query_idx(mars, query, message):
    path = _info(mars, "query_IDX.mat")
    scipy.io.savemat(path, {"query_IDX": np.array([query], float)})
    with pytest.raises(DatasetError, match=message) as e:
        load_mars(mars)
    assert str(e.value).startswith(path)


def test_junk_query_is_dropped_not_used(mars):
    scipy.io.savemat(_info(mars, "query_IDX.mat"), {"query_IDX": np.array([[1, 7]], float)})
    ds = load_mars(mars)
    assert ds.fixed_splits[0].query == (4,)
    assert 10 not in ds.fixed_splits[0].gallery
    assert any("query_IDX selects a junk" in r for r in ds.skipped.values())


def test_missing_image_names_first_missing_path(mars):
    missing = os.path.join(mars, "bbox_test", "0005", "0005C4T0001F002.jpg")
    os.remove(missing)
    os.remove(os.path.join(mars, "bbox_test", "0005", "0005C6T0001F002.jpg"))
    with pytest.raises(DatasetError, match="image listed in .*test_name.txt does not exist") as e:
        load_mars(mars)
    assert str(e.value).startswith(missing + ":")


def test_missing_info_file(mars):
    path = _info(mars, "query_IDX.mat")
    os.remove(path)
    with pytest.raises(DatasetError, match=f"^{path}: required file does not exist"):
        load_mars(mars)


def test_garbage_mat_file(mars):
    path = _info(mars, "tracks_train_info.mat")
    with open(path, "wb") as f:
        f.write(os.urandom(64))
    with pytest.raises(DatasetError, match="cannot read MATLAB file") as e:
        load_mars(mars)
    assert path in str(e.value)


def test_malformed_name_file(mars):
    path = _info(mars, "train_name.txt")
    with open(path) as f:
        lines = f.read().splitlines()
    lines[2] = ""
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n\n")
    with pytest.raises(DatasetError, match="line 3 '' is not a MARS frame name") as e:
        load_mars(mars)
    assert str(e.value).startswith(path)


def test_not_a_mars_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a MARS folder"):
        load_mars(str(tmp_path))
    (tmp_path / "info").mkdir()
    with pytest.raises(DatasetError, match="bbox_train: MARS image folder does not exist"):
        load_mars(str(tmp_path))


def test_min_len_filters_training_tracks_only(mars):
    ds = get_dataset("mars", mars, min_len=3)
    (split,) = ds.fixed_splits
    assert [(ds.tracklets[i].pid, len(ds.tracklets[i])) for i in split.train] == [(2, 3), (2, 4), (4, 3)]
    assert len(split.query) == 2 and len(split.gallery) == 5
    assert any("2 frames < min_len 3" in r for r in ds.skipped.values())
