"""Common data types of the dataset readers: tracklets, evaluation splits and dataset errors."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Sequence

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed or violates the expected layout.

    The message always names the offending path and what is wrong with it.
    """


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


def list_images(folder: str) -> list[str]:
    """Sorted image files directly inside `folder` (hidden files ignored)."""
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list folder ({e.strerror or e})") from e
    return sorted(
        os.path.join(folder, n)
        for n in names
        if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
        and os.path.isfile(os.path.join(folder, n))
    )


def require_dir(path: str, what: str) -> str:
    """Returns `path` if it is a directory, otherwise raises a DatasetError naming it."""
    if not os.path.exists(path):
        raise DatasetError(f"{path}: {what} does not exist")
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: {what} is not a directory")
    return path


def save_splits(splits: Sequence[Split], path: str, meta: dict | None = None) -> None:
    """Writes splits as JSON (atomically) so a run can be reproduced later."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"meta": meta or {}, "splits": [s.to_dict() for s in splits]}, f)
    os.replace(tmp, path)


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
