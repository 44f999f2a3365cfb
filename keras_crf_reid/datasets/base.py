"""Common data types of the dataset readers: tracklets, evaluation splits and dataset errors."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from typing import Callable, Iterable, Sequence

import numpy as np

from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.datasets.frames import IMAGE_EXTENSIONS, DatasetError  # noqa: F401  (re-exported)

# How many example paths a summary warning names before it just counts.
WARN_EXAMPLES = 3
# Person id of junk tracklets (MARS folder 00-1): never a correct match, removed from rankings.
JUNK_PID = -1

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Tracklet:
    """One person seen by one camera: an ordered list of frame files."""

    pid: int
    camid: int
    frames: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def key(self) -> str:
        """A stable name, unique within a dataset (used for caches and reports)."""
        first = os.path.basename(self.frames[0]) if self.frames else "empty"
        return f"p{self.pid:05d}_c{self.camid}_{os.path.splitext(first)[0]}"


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices into `ReidDataset.tracklets`: training tracklets, query and gallery tracklets."""

    train: tuple[int, ...]
    query: tuple[int, ...]
    gallery: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"train": list(self.train), "query": list(self.query), "gallery": list(self.gallery)}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        return cls(tuple(d["train"]), tuple(d["query"]), tuple(d["gallery"]))


def fingerprint(tracklets: Sequence[Tracklet], portable: bool = False, salt: str = "",
                length: int = 16) -> str:
    """The first `length` hex digits of a sha1 of every tracklet's person id, camera, length, frames.

    portable=False names each tracklet's first frame by its path: a key of where the files are
    (the frame cache's folder). portable=True names the first and last frames by their last
    three path components and their sizes in bytes: moving the dataset folder keeps it,
    regenerated or replaced frames change it (what a run's results are checked against).
    """
    h = hashlib.sha1(salt.encode())
    for t in tracklets:
        if portable:
            ends = (t.frames[0], t.frames[-1]) if t.frames else ()
            names = [os.path.join(*os.path.normpath(p).split(os.sep)[-3:]) for p in ends]
            sizes = [os.path.getsize(p) if os.path.exists(p) else -1 for p in ends]
            frames = f"{names}|{sizes}"
        else:
            frames = t.frames[0] if t.frames else ""
        h.update(f"{t.pid}|{t.camid}|{len(t.frames)}|{frames}\n".encode())
    return h.hexdigest()[:length]


@dataclasses.dataclass
class ReidDataset:
    """A video re-id dataset: all tracklets plus, where the dataset defines them, fixed splits.

    `probe_cam`/`gallery_cam` give the two-camera protocol (PRID-2011, iLIDS-VID); MARS sets
    `fixed_splits` to its official train / query / gallery partition instead.
    """

    name: str
    root: str
    tracklets: list[Tracklet]
    probe_cam: int | None = 0
    gallery_cam: int | None = 1
    fixed_splits: list[Split] | None = None
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        return sorted({t.pid for t in self.tracklets})

    def stats(self) -> dict:
        """Numbers a user checks first: identities, tracklets, frames, length range."""
        lengths = [len(t) for t in self.tracklets]
        return {
            "dataset": self.name,
            "root": self.root,
            "identities": len(self.pids),
            "tracklets": len(self.tracklets),
            "frames": int(sum(lengths)),
            "min_len": int(min(lengths)) if lengths else 0,
            "max_len": int(max(lengths)) if lengths else 0,
            "mean_len": float(sum(lengths) / len(lengths)) if lengths else 0.0,
            "skipped": len(self.skipped),
        }


def require_dir(path: str, what: str) -> str:
    """Returns `path` if it is a directory, otherwise raises a DatasetError naming it."""
    if not os.path.exists(path):
        raise DatasetError(f"{path}: {what} does not exist")
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: {what} is not a directory")
    return path


def save_splits(splits: Sequence[Split], path: str, meta: dict | None = None) -> None:
    """Writes splits as JSON (atomically) so a run can be reproduced later."""
    write_atomic(path, json.dumps({"meta": meta or {}, "splits": [s.to_dict() for s in splits]}))


def load_splits(path: str) -> list[Split]:
    """Reads splits written by `save_splits`."""
    try:
        with open(path) as f:
            data = json.load(f)
        return [Split.from_dict(d) for d in data["splits"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a valid splits JSON file ({e})") from e


def check_two_cameras(tracklets: Iterable[Tracklet], root: str) -> None:
    """Raises if no identity is seen by two cameras (no positive pair could ever be formed)."""
    cams: dict[int, set[int]] = {}
    for t in tracklets:
        cams.setdefault(t.pid, set()).add(t.camid)
    if not any(len(c) >= 2 for c in cams.values()):
        raise DatasetError(f"{root}: no identity appears in two cameras; re-id needs cross-camera pairs")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically ("2.png" before "10.png")."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def warn_skipped(what: str, items: dict[str, str]) -> None:
    """One warning for a group of skipped entries (count plus a few examples), not one per file."""
    if not items:
        return
    examples = "; ".join(f"{p}: {r}" for p, r in list(items.items())[:WARN_EXAMPLES])
    more = f" (and {len(items) - WARN_EXAMPLES} more)" if len(items) > WARN_EXAMPLES else ""
    log.warning("%s: %d entries skipped: %s%s", what, len(items), examples, more)


# A frame check gets (frame path, person id) and returns None to keep the frame, a reason string
# to skip it, or raises DatasetError when the file contradicts its folder (a wrong label).
FrameCheck = Callable[[str, int], "str | None"]


def scan_camera(cam_dir: str, person_pattern: str, skipped: dict[str, str],
                max_person_id: int | None = None,
                frame_check: FrameCheck | None = None) -> dict[int, tuple[str, list[str]]]:
    """Reads one camera folder of person folders: {pid: (person folder, frames in order)}.

    `person_pattern` is a regex with one group, the person number (e.g. "person_([0-9]+)").
    Folders that do not match, stray files, non-image files and folders without frames are
    recorded in `skipped` (path -> reason) and logged once. Persons above `max_person_id` are
    ignored without being read. Only fixed depths are listed, so symlink loops cannot hang.
    Two folders naming the same person (person_7, person_0007) raise DatasetError.
    """
    require_dir(cam_dir, "camera folder")
    regex = re.compile(person_pattern + r"\Z")
    try:
        names = sorted(os.listdir(cam_dir), key=natural_key)
    except OSError as e:
        raise DatasetError(f"{cam_dir}: cannot list camera folder ({e.strerror or e})") from e
    local: dict[str, str] = {}
    persons: dict[int, tuple[str, list[str]]] = {}
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(cam_dir, name)
        m = regex.match(name)
        if not os.path.isdir(path):
            local[path] = ("broken link or unreadable entry" if os.path.islink(path)
                           else "stray file (expected only person folders)")
            continue
        if m is None:
            local[path] = f"folder name does not match {person_pattern!r}"
            continue
        pid = int(m.group(1))
        if max_person_id is not None and pid > max_person_id:
            continue
        if pid in persons:
            raise DatasetError(f"{path}: person {pid} already read from {persons[pid][0]}; "
                               f"two folders with the same person id")
        frames = _scan_person(path, pid, local, frame_check)
        if frames:
            persons[pid] = (path, frames)
        else:
            local[path] = "no image frames in folder"
    skipped.update(local)
    warn_skipped(cam_dir, local)
    if not persons and max_person_id is None:
        example = f"; e.g. {next(iter(local))}: {next(iter(local.values()))}" if local else ""
        raise DatasetError(f"{cam_dir}: no person folders matching {person_pattern!r} with image "
                           f"frames ({len(local)} entries skipped{example})")
    return persons


def _scan_person(folder: str, pid: int, skipped: dict[str, str],
                 frame_check: FrameCheck | None) -> list[str]:
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list person folder ({e.strerror or e})") from e
    frames = []
    for name in sorted(names, key=natural_key):
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            skipped[path] = "not a regular file (sub-folder or broken link) inside a person folder"
        elif not name.lower().endswith(IMAGE_EXTENSIONS):
            skipped[path] = f"not an image file (extensions {', '.join(IMAGE_EXTENSIONS)})"
        else:
            reason = frame_check(path, pid) if frame_check else None
            if reason:
                skipped[path] = reason
            else:
                frames.append(path)
    return frames


def pair_cameras(root: str, cameras: Sequence[tuple[int, str, dict[int, tuple[str, list[str]]]]],
                 min_len: int, skipped: dict[str, str]) -> list[Tracklet]:
    """Tracklets of the persons seen by both cameras with at least `min_len` frames in each.

    `cameras` is [(camid, camera folder, scan_camera result)] for exactly two cameras. Persons
    seen by one camera only, or too short in either, are recorded in `skipped` and logged.
    Raises DatasetError if no person is left, since no cross-camera pair could be formed.
    """
    if len(cameras) != 2:
        raise ValueError(f"pair_cameras needs exactly two cameras, got {len(cameras)}")
    (cam_x, dir_x, px), (cam_y, dir_y, py) = cameras
    one_cam: dict[str, str] = {}
    for persons, others, there in ((px, py, dir_y), (py, px, dir_x)):
        for pid in sorted(set(persons) - set(others)):
            one_cam[persons[pid][0]] = f"person {pid} has no folder in {there}"
    short: dict[str, str] = {}
    tracklets = []
    both = sorted(set(px) & set(py))
    for pid in both:
        (fx, frames_x), (fy, frames_y) = px[pid], py[pid]
        if os.path.realpath(fx) == os.path.realpath(fy):
            raise DatasetError(f"{fy}: is the same folder as {fx}; person {pid} would match "
                               f"itself across cameras")
        too_short = [(f, n) for f, n in ((fx, len(frames_x)), (fy, len(frames_y))) if n < min_len]
        for folder, n in too_short:
            short[folder] = f"{n} frames < min_len {min_len}; person {pid} dropped from both cameras"
        if not too_short:
            tracklets.append(Tracklet(pid, cam_x, tuple(frames_x)))
            tracklets.append(Tracklet(pid, cam_y, tuple(frames_y)))
    skipped.update(one_cam)
    skipped.update(short)
    warn_skipped(f"{root}: persons seen by one camera only", one_cam)
    warn_skipped(f"{root}: sequences shorter than {min_len} frames", short)
    if not both:
        raise DatasetError(f"{root}: no person is present in both {dir_x} ({len(px)} persons) and "
                           f"{dir_y} ({len(py)} persons); re-id needs cross-camera pairs")
    if not tracklets:
        raise DatasetError(f"{root}: none of the {len(both)} persons seen by both cameras has at "
                           f"least {min_len} frames in each")
    return tracklets


def read_mat_var(path: str, var: str) -> np.ndarray:
    """One integer array from a .mat file; DatasetError naming the file if absent or not integer."""
    from scipy.io import loadmat

    require_file(path)
    try:
        data = loadmat(path)
    except Exception as e:  # scipy raises many types (ValueError, TypeError, MatReadError...)
        raise DatasetError(f"{path}: cannot read MATLAB file ({e})") from e
    if var not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DatasetError(f"{path}: variable {var!r} missing (found: {found})")
    arr = np.asarray(data[var])
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.number) or not np.all(arr == np.round(arr)):
        raise DatasetError(f"{path}: variable {var!r} must be a non-empty integer array "
                           f"(got dtype {arr.dtype}, shape {arr.shape})")
    return arr.astype(np.int64)


def require_file(path: str) -> None:
    """Raises a DatasetError naming `path` unless it is an existing file."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: required file does not exist")
