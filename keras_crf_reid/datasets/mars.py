"""MARS: bbox_train|bbox_test/XXXX/XXXXCYTZZZZFNNN.jpg with the official info/ files.

Tracks come from info/tracks_{train,test}_info.mat (rows: start, end (1-based, inclusive, into
the lines of info/{train,test}_name.txt), pid, camid (1-based)). As in the standard evaluation
(MARS-evaluation, torchreid), query = the test tracks at info/query_IDX.mat and gallery = all
other test tracks, distractors (pid 0, folder 0000) and junk (pid -1, folder 00-1) included:
metrics.evaluate_rank ignores junk and same-camera matches. Junk and distractor tracks are
excluded from training. Pids keep their MARS numbers (train and test ids are disjoint there),
so they stay unique in the one tracklet list; training code maps the training pids to class
indices itself (pipeline.PairSampler).
"""
from __future__ import annotations

import logging
import os

import numpy as np

from keras_crf_reid.datasets.base import (JUNK_PID, DatasetError, ReidDataset, Split, Tracklet,
                                          read_mat_var, require_dir, require_file, warn_skipped)

NUM_CAMERAS = 6
JUNK_FOLDER = "00-1"

log = logging.getLogger(__name__)


def find_mars_dir(root: str) -> str:
    """The MARS folder (holding info/, bbox_train/, bbox_test/): `root`, root/MARS or root/mars."""
    require_dir(root, "dataset root")
    for folder in (root, os.path.join(root, "MARS"), os.path.join(root, "mars")):
        if os.path.isdir(os.path.join(folder, "info")):
            for sub in ("bbox_train", "bbox_test"):
                require_dir(os.path.join(folder, sub), "MARS image folder")
            return folder
    raise DatasetError(f"{root}: not a MARS folder: expected info/, bbox_train/ and bbox_test/, "
                       f"directly or under MARS/")


def read_names(path: str) -> list[str]:
    """Frame file names, one per line (trailing blank lines allowed, blank lines inside not)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read name file ({e})") from e
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DatasetError(f"{path}: name file is empty")
    for i, name in enumerate(lines):
        if len(name) < 6 or name[4] != "C" or not name[5].isdigit() or "/" in name or "\\" in name:
            raise DatasetError(f"{path}: line {i + 1} {name!r} is not a MARS frame name "
                               f"(XXXXCYTZZZZFNNN.jpg)")
    return lines


def _folder_pid(folder: str) -> int | None:
    if folder == JUNK_FOLDER:
        return JUNK_PID
    return int(folder) if folder.isdigit() else None


def _tracks(info_path: str, var: str, names: list[str], names_path: str,
            image_dir: str) -> list[Tracklet]:
    """Validated tracklets of one info .mat, with paths under `image_dir`.

    Image existence is checked against one listing per person folder, not one stat per frame.
    """
    info = read_mat_var(info_path, var)
    listing: dict[str, set[str]] = {}
    if info.ndim != 2 or info.shape[1] != 4:
        raise DatasetError(f"{info_path}: {var} has shape {info.shape}, expected (num_tracks, 4): "
                           f"start, end, pid, camid")
    tracklets = []
    for row, (start, end, pid, camid) in enumerate(info.tolist()):
        where = f"{info_path}: {var} row {row + 1}"
        if not 1 <= start <= end <= len(names):
            raise DatasetError(f"{where}: frame range {start}..{end} out of range of the "
                               f"{len(names)} lines of {names_path}")
        if not 1 <= camid <= NUM_CAMERAS:
            raise DatasetError(f"{where}: camera {camid} outside 1..{NUM_CAMERAS}")
        frames = names[start - 1:end]
        folders, cams = {n[:4] for n in frames}, {n[5] for n in frames}
        if len(folders) != 1 or len(cams) != 1 or _folder_pid(frames[0][:4]) != pid \
                or int(frames[0][5]) != camid:
            name = next(n for n in frames if _folder_pid(n[:4]) != pid or int(n[5]) != camid)
            raise DatasetError(f"{where}: frame {name} (line of {names_path}) does not belong "
                               f"to person {pid} camera {camid}")
        folder = frames[0][:4]
        if folder not in listing:
            try:
                listing[folder] = set(os.listdir(os.path.join(image_dir, folder)))
            except OSError:
                listing[folder] = set()
        paths = tuple(os.path.join(image_dir, folder, n) for n in frames)
        missing = next((p for n, p in zip(frames, paths) if n not in listing[folder]), None)
        if missing:
            raise DatasetError(f"{missing}: image listed in {names_path} does not exist")
        tracklets.append(Tracklet(pid, camid - 1, paths))
    return tracklets


def load_mars(root: str, min_len: int = 1) -> ReidDataset:
    """Reads MARS with its official split: fixed_splits = [Split(train, query, gallery)].

    Every .mat and name file is validated (variables, shapes, index ranges, frames matching
    their track's person and camera) and every referenced image must exist; any violation
    raises DatasetError naming the file. `min_len` drops shorter training tracks only: the
    query and gallery stay the official ones so results remain comparable.
    """
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    mars = os.path.abspath(find_mars_dir(root))
    info = os.path.join(mars, "info")
    train_names_path = os.path.join(info, "train_name.txt")
    test_names_path = os.path.join(info, "test_name.txt")
    for path in (train_names_path, test_names_path):
        require_file(path)
    train_all = _tracks(os.path.join(info, "tracks_train_info.mat"), "track_train_info",
                        read_names(train_names_path), train_names_path,
                        os.path.join(mars, "bbox_train"))
    test = _tracks(os.path.join(info, "tracks_test_info.mat"), "track_test_info",
                   read_names(test_names_path), test_names_path, os.path.join(mars, "bbox_test"))
    query_path = os.path.join(info, "query_IDX.mat")
    query_idx = read_mat_var(query_path, "query_IDX")
    if query_idx.ndim > 2 or (query_idx.ndim == 2 and 1 not in query_idx.shape):
        raise DatasetError(f"{query_path}: query_IDX has shape {query_idx.shape}, expected a vector")
    query_idx = query_idx.reshape(-1)
    if query_idx.min() < 1 or query_idx.max() > len(test):
        raise DatasetError(f"{query_path}: query_IDX values {query_idx.min()}..{query_idx.max()} "
                           f"out of range of the {len(test)} test tracks (1-based)")
    if len(np.unique(query_idx)) != len(query_idx):
        raise DatasetError(f"{query_path}: query_IDX lists a test track more than once")

    skipped: dict[str, str] = {}
    train = []
    for t in train_all:
        if t.pid <= 0:
            skipped[t.key] = f"junk/distractor track (pid {t.pid}) excluded from training"
        elif len(t) < min_len:
            skipped[t.key] = f"training track of {len(t)} frames < min_len {min_len}"
        else:
            train.append(t)
    warn_skipped(f"{mars}: training tracks", skipped)
    query_set = {int(i) - 1 for i in query_idx}
    junk_queries = {t.key: f"query_IDX selects a junk/distractor track (pid {t.pid}); not used "
                    f"as a query" for t in (test[i] for i in sorted(query_set)) if t.pid <= 0}
    skipped.update(junk_queries)
    warn_skipped(query_path, junk_queries)
    query = tuple(len(train) + int(i) - 1 for i in query_idx if test[int(i) - 1].pid > 0)
    gallery = tuple(len(train) + i for i in range(len(test)) if i not in query_set)
    if not query or not gallery:
        raise DatasetError(f"{query_path}: leaves {len(query)} query and {len(gallery)} gallery "
                           f"tracks; both must be non-empty")
    split = Split(tuple(range(len(train))), query, gallery)
    return ReidDataset(name="mars", root=mars, tracklets=train + test, probe_cam=None,
                       gallery_cam=None, fixed_splits=[split], skipped=skipped)
