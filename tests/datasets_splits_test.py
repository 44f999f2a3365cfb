"""Random and fixed splits, their JSON round trip, the dataset registry and frame validation."""
import os

import pytest

from keras_crf_reid.datasets import (DATASETS, DatasetError, Split, check_splits, get_dataset,
                                     get_splits, load_mars, load_prid_layout, load_splits,
                                     make_random_splits, save_splits)
from keras_crf_reid.datasets.validate import validate_frames
from keras_crf_reid.datasets.frames import BadImageError
from tests.fixtures import make_mars_fixture, make_prid_fixture


@pytest.fixture(scope="module")
def prid(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("prid"))
    return load_prid_layout(make_prid_fixture(root, num_ids=11, num_frames=2, size=(16, 32)))


def _pids(ds, idx):
    return {ds.tracklets[i].pid for i in idx}


def test_random_splits_are_disjoint_and_complete(prid):
    splits = make_random_splits(prid, num_splits=4, seed=3)
    assert len(splits) == 4
    for s in splits:
        train, test = _pids(prid, s.train), _pids(prid, s.query)
        assert len(train) == 5 and len(test) == 6
        assert not train & test
        assert train | test == set(range(1, 12))
        assert _pids(prid, s.gallery) == test
        assert len(s.train) == 10 and len(s.query) == 6 and len(s.gallery) == 6
        assert {prid.tracklets[i].camid for i in s.train} == {0, 1}
        assert all(prid.tracklets[i].camid == 0 for i in s.query)
        assert all(prid.tracklets[i].camid == 1 for i in s.gallery)
        assert list(s.query) == sorted(s.query)
        check_splits(prid, [s])
    assert len({s.train for s in splits}) == 4


def test_random_splits_deterministic_per_seed(prid):
    a = make_random_splits(prid, num_splits=3, seed=7)
    assert a == make_random_splits(prid, num_splits=3, seed=7)
    assert a != make_random_splits(prid, num_splits=3, seed=8)
    # split k depends on seed + k only, not on how many splits are asked for
    assert make_random_splits(prid, num_splits=1, seed=8)[0] == a[1]


def test_train_fraction(prid):
    (s,) = make_random_splits(prid, num_splits=1, train_fraction=0.0)
    assert s.train == () and len(s.query) == 11
    (s,) = make_random_splits(prid, num_splits=1, train_fraction=0.9)
    assert len(_pids(prid, s.train)) == 9 and len(s.query) == 2
    with pytest.raises(ValueError, match="train_fraction"):
        make_random_splits(prid, train_fraction=1.0)
    with pytest.raises(ValueError, match="num_splits"):
        make_random_splits(prid, num_splits=0)


def test_json_round_trip(prid, tmp_path):
    splits = get_splits(prid, num_splits=3, seed=1)
    path = str(tmp_path / "out" / "splits.json")
    save_splits(splits, path, meta={"dataset": prid.name, "seed": 1})
    loaded = load_splits(path)
    assert loaded == splits
    check_splits(prid, loaded, source=path)
    assert not os.path.exists(path + ".tmp")


def test_load_splits_rejects_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"splits": [{"train": [1]}]}')
    with pytest.raises(DatasetError, match=f"^{path}: not a valid splits JSON file"):
        load_splits(str(path))


def test_check_splits_catches_foreign_or_leaky_splits(prid):
    n = len(prid.tracklets)
    with pytest.raises(DatasetError, match=f"index {n} out of range"):
        check_splits(prid, [Split((0,), (2,), (n,))], source="x.json")
    with pytest.raises(DatasetError, match=r"same identities \[1\]"):
        check_splits(prid, [Split((0,), (0,), (1,))])
    with pytest.raises(DatasetError, match="empty query or gallery"):
        check_splits(prid, [Split((0,), (), (3,))])


def test_get_splits_prefers_fixed_splits(tmp_path):
    ds = load_mars(make_mars_fixture(str(tmp_path)))
    assert get_splits(ds, num_splits=5, seed=0) == ds.fixed_splits
    with pytest.raises(DatasetError, match="no probe/gallery camera protocol"):
        make_random_splits(ds)


def test_registry(tmp_path, prid):
    assert set(DATASETS) == {"prid2011", "prid2011_178", "ilidsvid", "mars", "prid_layout",
                             "synthetic"}
    with pytest.raises(ValueError, match="unknown dataset 'market'; known datasets: ilidsvid, mars, "
                                         "prid2011, prid2011_178, prid_layout, synthetic"):
        get_dataset("market", str(tmp_path))
    missing = str(tmp_path / "missing")
    with pytest.raises(DatasetError, match=f"^{missing}: dataset root does not exist$"):
        get_dataset("synthetic", missing)
    synth = get_dataset("synthetic", prid.root)
    assert synth.name == "synthetic" and synth.tracklets == prid.tracklets
    with pytest.raises(DatasetError, match="at least 3 frames"):
        get_dataset("prid_layout", prid.root, min_len=3)


def _break(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_validate_frames_skips_bad_frames(tmp_path):
    base = make_prid_fixture(str(tmp_path), num_ids=3, num_frames=3, size=(16, 32))
    ds = load_prid_layout(base)
    truncated = ds.tracklets[0].frames[1]
    _break(truncated, open(truncated, "rb").read()[:20])
    for f in ds.tracklets[5].frames:  # every frame of person 3 in cam_b
        _break(f, b"")
    clean = validate_frames(ds)
    assert [(t.pid, t.camid, len(t)) for t in clean.tracklets] == [
        (1, 0, 2), (1, 1, 3), (2, 0, 3), (2, 1, 3), (3, 0, 3)]
    assert truncated in clean.skipped and "not a decodable image" in clean.skipped[truncated]
    assert "empty (0 bytes)" in clean.skipped[ds.tracklets[5].frames[0]]
    assert any("no decodable frame left" in r for r in clean.skipped.values())
    assert ds.skipped == {} and len(ds.tracklets) == 6
    with pytest.raises(BadImageError, match=truncated):
        validate_frames(ds, on_bad_image="fail")
    with pytest.raises(ValueError, match="on_bad_image"):
        validate_frames(ds, on_bad_image="ignore")
    assert validate_frames(clean) is clean


def test_validate_frames_reindexes_fixed_splits(tmp_path):
    ds = load_mars(make_mars_fixture(str(tmp_path)))
    for f in ds.tracklets[5].frames:  # a gallery track (pid 3, camera 2)
        _break(f, b"junk")
    clean = validate_frames(ds)
    (split,) = clean.fixed_splits
    assert len(clean.tracklets) == 10
    assert split.train == (0, 1, 2, 3) and split.query == (4, 5)
    assert split.gallery == (6, 7, 8, 9)
    assert [clean.tracklets[i].pid for i in split.query] == [3, 5]
    assert [(clean.tracklets[i].pid, clean.tracklets[i].camid) for i in split.gallery] == [
        (5, 5), (3, 0), (0, 1), (-1, 0)]
