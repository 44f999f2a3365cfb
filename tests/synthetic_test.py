"""Synthetic pedestrian generator: layout, determinism, lengths, idempotency, CLI."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_crf_reid.datasets import load_prid_layout
from keras_crf_reid.datasets.base import DatasetError
from keras_crf_reid.datasets.synthetic import (CAMERAS, GENERATOR_VERSION, MANIFEST,
                                               generate_synthetic, render_sequence)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """20 identities with default lengths, generated once for the module."""
    return generate_synthetic(str(tmp_path_factory.mktemp("syn") / "s20"), num_ids=20, seed=0,
                              progress=False)


def test_layout_names_and_frame_size(small):
    assert sorted(os.listdir(small)) == sorted(list(CAMERAS) + [MANIFEST])
    for cam in CAMERAS:
        persons = sorted(os.listdir(os.path.join(small, cam)))
        assert persons == [f"person_{i:04d}" for i in range(1, 21)]
        for p in persons[:3]:
            names = sorted(os.listdir(os.path.join(small, cam, p)))
            assert names == [f"{i:04d}.png" for i in range(1, len(names) + 1)]
            img = cv2.imread(os.path.join(small, cam, p, names[0]), cv2.IMREAD_UNCHANGED)
            assert img.shape == (128, 64, 3) and img.dtype == np.uint8
    assert not [n for n in os.listdir(os.path.dirname(small)) if ".tmp-" in n]


def test_manifest_and_reader(small):
    with open(os.path.join(small, MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest["num_ids"] == 20 and manifest["seed"] == 0
    assert manifest["min_len"] == 8 and manifest["max_len"] == 48
    assert manifest["version"] == GENERATOR_VERSION
    ds = load_prid_layout(small)
    assert len(ds.pids) == 20 and len(ds.tracklets) == 40
    assert {t.camid for t in ds.tracklets} == {0, 1}


def test_lengths_within_bounds_and_some_short(small):
    lengths = [len(os.listdir(os.path.join(small, cam, p)))
               for cam in CAMERAS for p in os.listdir(os.path.join(small, cam))]
    assert min(lengths) >= 8 and max(lengths) <= 48
    assert sum(n < 16 for n in lengths) >= 2
    assert len(set(lengths)) > 10


def test_custom_lengths(tmp_path):
    root = generate_synthetic(str(tmp_path / "s"), num_ids=3, seed=4, min_len=3, max_len=5,
                              progress=False)
    for cam in CAMERAS:
        for p in os.listdir(os.path.join(root, cam)):
            assert 3 <= len(os.listdir(os.path.join(root, cam, p))) <= 5


def test_same_seed_gives_identical_bytes(tmp_path, small):
    """Regenerating gives the same files; a person's frames do not depend on num_ids either."""
    again = _files(generate_synthetic(str(tmp_path / "again"), num_ids=4, seed=0, progress=False))
    full = _files(small)
    assert again.pop(MANIFEST) != full[MANIFEST]
    assert again and all(full[k] == v for k, v in again.items())


def test_parallel_workers_give_identical_bytes(tmp_path):
    one = generate_synthetic(str(tmp_path / "one"), num_ids=3, seed=7, max_len=10, progress=False)
    two = generate_synthetic(str(tmp_path / "two"), num_ids=3, seed=7, max_len=10, workers=2,
                             progress=False)
    assert _files(one) == _files(two)


def test_different_seed_gives_different_frames():
    a = render_sequence(0, 1, "cam_a")
    b = render_sequence(1, 1, "cam_a")
    assert a.shape[1:] == b.shape[1:] == (128, 64, 3)
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert np.array_equal(a, render_sequence(0, 1, "cam_a"))
    # the two cameras and different people differ too
    assert not np.array_equal(a[:1], render_sequence(0, 1, "cam_b")[:1])
    assert not np.array_equal(a[:1], render_sequence(0, 2, "cam_a")[:1])


def test_frames_move(small):
    """Consecutive frames differ (walking limbs, scrolling background): flow has motion to see."""
    frames = render_sequence(0, 3, "cam_a")
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (diffs > 2.0).all()


def test_idempotent(small):
    manifest = os.path.join(small, MANIFEST)
    before = os.stat(manifest).st_mtime_ns
    assert generate_synthetic(small, num_ids=20, seed=0, progress=False) == small
    assert os.stat(manifest).st_mtime_ns == before


def test_different_parameters_raise_naming_the_folder(small):
    with pytest.raises(DatasetError, match=r"different parameters.*num_ids") as e:
        generate_synthetic(small, num_ids=21, seed=0, progress=False)
    assert small in str(e.value)
    with pytest.raises(DatasetError, match="seed"):
        generate_synthetic(small, num_ids=20, seed=1, progress=False)


def test_older_generator_version_raises(tmp_path):
    root = generate_synthetic(str(tmp_path / "s"), num_ids=1, max_len=8, progress=False)
    path = os.path.join(root, MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest["version"] = GENERATOR_VERSION - 1
    with open(path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(DatasetError, match="version"):
        generate_synthetic(root, num_ids=1, max_len=8, progress=False)


def test_refuses_foreign_folder_accepts_empty_one(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=str(foreign)):
        generate_synthetic(str(foreign), num_ids=1, progress=False)
    assert os.listdir(foreign) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    root = generate_synthetic(str(empty), num_ids=1, max_len=8, progress=False)
    assert os.path.isfile(os.path.join(root, MANIFEST))


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    from keras_crf_reid.datasets import synthetic

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "render_sequence", boom)
    with pytest.raises(RuntimeError):
        generate_synthetic(str(tmp_path / "s"), num_ids=2, progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs", [{"num_ids": 0}, {"seed": -1}, {"min_len": 0},
                                    {"min_len": 10, "max_len": 9}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_synthetic(str(tmp_path / "s"), progress=False, **kwargs)


def test_cli_prints_folder(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_crf_reid.datasets.synthetic", f"--out={out}",
         "--num_ids=2", "--seed=3", "--max_len=9"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert sorted(os.listdir(out / "cam_b")) == ["person_0001", "person_0002"]
