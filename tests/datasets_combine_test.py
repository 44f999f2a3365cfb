"""Pooling and joining datasets (one person-id offset scheme) and the dataset fingerprint."""
import os

import pytest

from keras_crf_reid.datasets.base import JUNK_PID, ReidDataset, Tracklet, fingerprint
from keras_crf_reid.datasets.combine import (PID_STRIDE, check_separate, join_datasets, pid_offset,
                                             pool_datasets)
from keras_crf_reid.datasets.splits import cross_dataset_splits


def _dataset(name, pids, cams=(0, 1), **kw):
    tracklets = [Tracklet(p, c, tuple(f"/{name}/{p}_{c}_{k}.png" for k in range(3)))
                 for p in pids for c in cams]
    return ReidDataset(name=name, root=f"/{name}", tracklets=tracklets, **kw)


def test_pid_offset_is_the_next_stride_above_every_id():
    assert pid_offset([]) == 0
    assert pid_offset([3, 7]) == PID_STRIDE
    assert pid_offset([PID_STRIDE - 1]) == PID_STRIDE and pid_offset([PID_STRIDE]) == 2 * PID_STRIDE
    assert pid_offset([JUNK_PID]) == 0


def test_pooling_and_joining_move_ids_past_the_earlier_ones():
    a, b, c = _dataset("a", [1, 2]), _dataset("b", [1, 12345]), _dataset("c", [5])
    pooled = pool_datasets([a, b, c], "abc")
    assert pooled.pids == [1, 2, 10001, 22345, 30005] and pooled.root == "/a,/b,/c"
    assert pooled.name == "abc"
    evaluation = _dataset("e", [1, JUNK_PID])
    joined = join_datasets(pooled, evaluation)
    assert [t.pid for t in joined.tracklets[len(pooled.tracklets):]] == [40001, 40001, JUNK_PID,
                                                                          JUNK_PID]
    with pytest.raises(ValueError, match="cam 0 / cam 1"):
        pool_datasets([a, _dataset("m", [1], probe_cam=None, gallery_cam=None)], "am")


def test_cross_dataset_splits_train_on_a_share_and_test_on_the_evaluation_set():
    train, evaluation = _dataset("t", range(10)), _dataset("e", range(4))
    splits = cross_dataset_splits(train, evaluation, num_splits=3, seed=0, train_fraction=0.5)
    n = len(train.tracklets)
    for s in splits:
        assert len({train.tracklets[i].pid for i in s.train}) == 5
        assert s.query == tuple(n + i for i in range(0, 8, 2))
        assert s.gallery == tuple(n + i for i in range(1, 8, 2))
    assert len({s.train for s in splits}) > 1


def test_the_same_frames_are_not_a_separate_evaluation_set():
    a = _dataset("a", [1, 2])
    with pytest.raises(ValueError, match="is the training folder"):
        check_separate(a, a)
    check_separate(a, _dataset("b", [1, 2]))


def test_cache_key_fingerprint_names_paths_and_salt():
    a = _dataset("a", [1, 2])
    assert fingerprint(a.tracklets) != fingerprint(a.tracklets, salt="v2")
    assert len(fingerprint(a.tracklets, length=12)) == 12
    assert fingerprint(a.tracklets) != fingerprint(_dataset("b", [1, 2]).tracklets)


def test_data_fingerprint_sees_replaced_frames_not_moved_folders(tmp_path):
    from keras_crf_reid.datasets import load_prid_layout
    from tests.fixtures import make_prid_fixture, write_image
    root = make_prid_fixture(str(tmp_path / "a"), num_ids=3, num_frames=4)
    fp = fingerprint(load_prid_layout(root).tracklets, portable=True)
    os.rename(tmp_path / "a", tmp_path / "b")
    moved = str(tmp_path / "b" / "prid_2011")
    assert fingerprint(load_prid_layout(moved).tracklets, portable=True) == fp
    write_image(os.path.join(moved, "multi_shot", "cam_a", "person_0002", "0001.png"), 2, 0, 1,
                size=(32, 64))
    assert fingerprint(load_prid_layout(moved).tracklets, portable=True) != fp
