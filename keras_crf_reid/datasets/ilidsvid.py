"""iLIDS-VID: i-LIDS-VID/sequences/cam1|cam2/personXXX/cam1_personXXX_NNNNN.png, 300 persons.

Probe = cam1 (camid 0), gallery = cam2 (camid 1). The official ten train/test splits come from
`train-test people splits/train_test_splits_ilidsvid.mat` (variable `ls_set`, shape (10, 300)):
each row is a permutation of 1..300 indexing the person folders in sorted order (the folder
numbers themselves run up to 319 with gaps); as in Wang et al. ECCV'14 and the torchreid reader,
the first half of a row is the test set and the second half the training set.
"""
from __future__ import annotations

import logging
import os
import re

import numpy as np

from keras_crf_reid.datasets.base import (DatasetError, ReidDataset, Split, Tracklet, pair_cameras,
                                          read_mat_var, require_dir, scan_camera)

PERSON_PATTERN = r"person(\d+)"
CAMERAS = ("cam1", "cam2")
SPLIT_DIR = "train-test people splits"
SPLIT_FILE = "train_test_splits_ilidsvid.mat"
SPLIT_VAR = "ls_set"
_FRAME_RE = re.compile(r"cam(\d+)_person(\d+)_(\d+)\.[A-Za-z]+\Z")

log = logging.getLogger(__name__)


def find_sequences_dir(root: str) -> str:
    """The i-LIDS-VID folder (holding sequences/cam1 and sequences/cam2): `root` or root/i-LIDS-VID."""
    require_dir(root, "dataset root")
    for folder in (root, os.path.join(root, "i-LIDS-VID")):
        if os.path.isdir(os.path.join(folder, "sequences")):
            for cam in CAMERAS:
                require_dir(os.path.join(folder, "sequences", cam), "camera folder")
            return folder
    raise DatasetError(f"{root}: not an iLIDS-VID folder: expected sequences/cam1 and "
                       f"sequences/cam2, directly or under i-LIDS-VID/")


def _frame_checker(camera: int):
    def check(path: str, pid: int) -> str | None:
        m = _FRAME_RE.match(os.path.basename(path))
        if m is None:
            return "file name does not match camN_personXXX_NNNNN.png"
        if int(m.group(1)) != camera or int(m.group(2)) != pid:
            raise DatasetError(f"{path}: file name says camera {m.group(1)} person {int(m.group(2))} "
                               f"but it lies in the folder of camera {camera} person {pid}")
        return None
    return check


def find_split_file(ilids_dir: str) -> str | None:
    """The official split .mat next to or inside the i-LIDS-VID folder, if present."""
    for base in (os.path.dirname(ilids_dir), ilids_dir):
        path = os.path.join(base, SPLIT_DIR, SPLIT_FILE)
        if os.path.isfile(path):
            return path
    return None


def read_split_mat(path: str, tracklets: list[Tracklet]) -> list[Split]:
    """Official splits as indices into `tracklets` (which must hold every person of the .mat)."""
    ls_set = read_mat_var(path, SPLIT_VAR)
    pids = sorted({t.pid for t in tracklets})
    n = len(pids)
    if ls_set.ndim != 2 or ls_set.shape[0] < 1 or ls_set.shape[1] != n:
        raise DatasetError(f"{path}: {SPLIT_VAR} has shape {ls_set.shape}, expected (num_splits, {n}) "
                           f"for the {n} persons read from the sequences folder")
    expected = np.arange(1, n + 1)
    by_pid: dict[int, list[int]] = {}
    for i, t in enumerate(tracklets):
        by_pid.setdefault(t.pid, []).append(i)
    splits = []
    for row_no, row in enumerate(ls_set):
        if not np.array_equal(np.sort(row), expected):
            raise DatasetError(f"{path}: row {row_no} of {SPLIT_VAR} is not a permutation of 1..{n}")
        test_pids = {pids[i - 1] for i in row[: n // 2]}
        train_pids = {pids[i - 1] for i in row[n // 2:]}
        train = tuple(i for p in sorted(train_pids) for i in by_pid[p])
        query = tuple(i for p in sorted(test_pids) for i in by_pid[p] if tracklets[i].camid == 0)
        gallery = tuple(i for p in sorted(test_pids) for i in by_pid[p] if tracklets[i].camid == 1)
        splits.append(Split(train, query, gallery))
    return splits


def load_ilidsvid(root: str, split_path: str | None = None, min_len: int = 1) -> ReidDataset:
    """Reads iLIDS-VID (root = the i-LIDS-VID folder or its parent), with the official splits.

    `split_path` overrides the search for train_test_splits_ilidsvid.mat; without any split
    file `fixed_splits` stays None and random splits are used.
    """
    ilids = os.path.abspath(find_sequences_dir(root))
    skipped: dict[str, str] = {}
    cameras = []
    for camid, cam in enumerate(CAMERAS):
        cam_dir = os.path.join(ilids, "sequences", cam)
        persons = scan_camera(cam_dir, PERSON_PATTERN, skipped, frame_check=_frame_checker(camid + 1))
        cameras.append((camid, cam_dir, persons))
    tracklets = pair_cameras(ilids, cameras, min_len, skipped)
    if split_path is not None and not os.path.isfile(split_path):
        raise DatasetError(f"{split_path}: split file does not exist")
    split_path = split_path or find_split_file(ilids)
    fixed = read_split_mat(split_path, tracklets) if split_path else None
    if fixed is None:
        log.info("%s: no %s found; random splits will be used", ilids, SPLIT_FILE)
    return ReidDataset(name="ilidsvid", root=ilids, tracklets=tracklets, probe_cam=0,
                       gallery_cam=1, fixed_splits=fixed, skipped=skipped)
