"""Decoded frames and optical flow of every tracklet, computed once and cached on disk.

Each tracklet is stored as two .npy files, RGB uint8 (T, 128, 64, 3) and flow float16
(T, 128, 64, 2), under `<cache_dir>/<dataset name>-<fingerprint>/`. Files are written to a temp
name and renamed, so an interrupted build never leaves a half-written entry, and a rebuild
only computes what is missing. Reads use memory maps, so datasets larger than RAM (MARS) work.
Without a cache_dir the store decodes and computes flow on every access (slow; for benchmarks).
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from tqdm import tqdm

from keras_crf_reid.datasets.base import ReidDataset, Tracklet
from keras_crf_reid.datasets.flow import compute_flow
from keras_crf_reid.datasets.frames import read_frames
from keras_crf_reid.datasets.validate import EmptyTrackletError

CACHE_VERSION = "v1-dis-medium-clip8"
EMPTY_REASON = "tracklet has no readable frame"
log = logging.getLogger(__name__)


def _file_stamp(path: str) -> str:
    """Size and modification time: a regenerated or edited frame gets a new cache entry."""
    try:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "missing"


def _entry_name(t: Tracklet) -> str:
    """Cache file stem of a tracklet: its frame list plus the stamps of its first and last frame."""
    stamps = [_file_stamp(p) for p in (t.frames[:1] + t.frames[-1:])]
    digest = hashlib.sha1("\n".join(t.frames + tuple(stamps)).encode()).hexdigest()[:10]
    return f"{t.key}-{digest}"


def _fingerprint(tracklets: Sequence[Tracklet]) -> str:
    h = hashlib.sha1(CACHE_VERSION.encode())
    for t in tracklets:
        h.update(f"{t.pid}|{t.camid}|{len(t.frames)}|{t.frames[0] if t.frames else ''}\n".encode())
    return h.hexdigest()[:12]


class TrackletStore:
    """Random access to (rgb, flow) of each tracklet of a dataset."""

    def __init__(self, dataset: ReidDataset, cache_dir: str | None = None,
                 on_bad_image: str = "skip", preload: bool = False):
        self.dataset = dataset
        self.on_bad_image = on_bad_image
        self.preload = preload
        self.dir = None
        if cache_dir:
            self.dir = os.path.join(cache_dir, f"{dataset.name}-{_fingerprint(dataset.tracklets)}")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._entries: dict[int, str] = {}
        self._lengths: list[int] | None = None
        self.skipped_frames: list[str] = []
        # Tracklets found without a readable frame by build() under on_bad_image="skip" (index ->
        # reason); not cached, so the next build finds them again. runner.data drops them.
        self.empty: dict[int, str] = {}
        self._empty_errors: dict[int, EmptyTrackletError] = {}

    def __len__(self) -> int:
        return len(self.dataset.tracklets)

    def _paths(self, i: int) -> tuple[str, str]:
        if i not in self._entries:
            self._entries[i] = _entry_name(self.dataset.tracklets[i])
        base = os.path.join(self.dir, self._entries[i])
        return base + ".rgb.npy", base + ".flow.npy"

    def _compute(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.dataset.tracklets[i]
        rgb, skipped = read_frames(t.frames, on_bad_image=self.on_bad_image)
        self.skipped_frames.extend(skipped)
        if len(rgb) == 0:
            raise EmptyTrackletError(f"{os.path.dirname(t.frames[0]) if t.frames else t.key}: "
                                     f"{EMPTY_REASON}")
        return rgb, compute_flow(rgb)

    def _build_one(self, i: int) -> None:
        rgb_path, flow_path = self._paths(i)
        if os.path.exists(rgb_path) and os.path.exists(flow_path):
            return
        try:
            rgb, flow = self._compute(i)
        except EmptyTrackletError as e:
            if self.on_bad_image != "skip":
                raise
            self.empty[i] = EMPTY_REASON
            self._empty_errors[i] = e
            return
        os.makedirs(self.dir, exist_ok=True)
        for path, arr in ((rgb_path, rgb), (flow_path, flow)):
            tmp = f"{path}.{os.getpid()}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, path)

    def build(self, workers: int = 2, progress: bool = True) -> "TrackletStore":
        """Decodes frames and computes flow for every tracklet not cached yet."""
        if self.dir is None:
            return self
        os.makedirs(self.dir, exist_ok=True)
        todo = [i for i in range(len(self)) if not all(map(os.path.exists, self._paths(i)))]
        if todo:
            bar = tqdm(total=len(todo), desc=f"flow cache {self.dataset.name}", unit="tracklet",
                       disable=not progress)
            with ThreadPoolExecutor(max(1, workers)) as pool:
                for _ in pool.map(self._build_one, todo):
                    bar.update(1)
            bar.close()
            if self.skipped_frames:
                log.warning("%d unreadable frames skipped while caching %s",
                            len(self.skipped_frames), self.dataset.name)
        return self

    def subset(self, dataset: ReidDataset, keep: Sequence[int]) -> "TrackletStore":
        """This store over `dataset`, whose tracklets are ours at indices `keep`; same cache."""
        out = TrackletStore(dataset, None, self.on_bad_image, self.preload)
        out.dir = self.dir
        out._entries = {j: self._entries[i] for j, i in enumerate(keep) if i in self._entries}
        out.skipped_frames = list(self.skipped_frames)
        return out

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (T, 128, 64, 3), flow float16 (T, 128, 64, 2)) of tracklet i."""
        if i in self._cache:
            return self._cache[i]
        if self.dir is None:
            return self._compute(i)
        rgb_path, flow_path = self._paths(i)
        if not os.path.exists(rgb_path):
            self._build_one(i)
            if i in self.empty:
                raise self._empty_errors[i]
        mode = None if self.preload else "r"
        out = (np.load(rgb_path, mmap_mode=mode), np.load(flow_path, mmap_mode=mode))
        self._cache[i] = out
        return out

    def lengths(self) -> np.ndarray:
        """Number of usable frames of every tracklet."""
        if self._lengths is None:
            if self.dir is None:
                self._lengths = [len(t) for t in self.dataset.tracklets]
            else:
                self._lengths = [len(self.get(i)[0]) for i in range(len(self))]
        return np.asarray(self._lengths)

    def window(self, i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames at indices `idx` (taken modulo the length) of tracklet i."""
        rgb, flow = self.get(i)
        idx = np.asarray(idx) % len(rgb)
        if len(idx) and np.all(np.diff(idx) == 1):
            s = slice(int(idx[0]), int(idx[-1]) + 1)
            return np.asarray(rgb[s]), np.asarray(flow[s])
        return np.asarray(rgb[idx]), np.asarray(flow[idx])
