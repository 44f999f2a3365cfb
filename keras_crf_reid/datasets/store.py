"""Decoded frames and optical flow of every tracklet, computed once and cached on disk.

Each tracklet is one file `<cache_dir>/<dataset name>-<fingerprint>/<tracklet key>-<digest>.crf`
holding, for every frame, the colour frame as a JPEG (quality JPEG_QUALITY, no chroma
subsampling) and the flow quantised to int8 (flow.quantize_flow, 16 KB, stored raw so reading
it costs nothing but the copy). An entry never exceeds MAX_FRAME_BYTES (22 KB) per frame: a
frame whose JPEG does not fit the rest of the budget is re-encoded at lower quality (rare: 5 KB
is typical at q90 on the noisy synthetic frames, less on real, smoother ones). Raw RGB uint8 +
float16 flow took 57 KB per frame, so MARS's 1.19M frames need about 24 GB instead of 68 GB.
Precision: the dequantised flow is within half a quantisation step (0.5 / FLOW_LEVELS of the
clipped range, 0.031 px) of the float flow; colour carries the JPEG error (mean absolute error
about 3 levels at q90 on the synthetic frames, most of it their camera noise). Uncached stores
quantise flow the same way, so cached and uncached flow are identical.

Building streams over the tracklets with a thread pool (frame decoding, DIS flow and JPEG
release the GIL): each worker holds one tracklet at a time. Every entry is written to a temp
name and renamed, so a killed build never leaves a half-written entry and the next build only
computes the missing ones; a full disk raises CacheError naming the entry. A window is read
with two positioned reads (its JPEGs, its flow) and only its frames are decoded, so datasets
larger than RAM work and pages once read are not held in the process's memory; the store keeps
only each entry's header (8 bytes per frame).
Every frame's JPEG and every frame's flow carry a CRC-32 in the entry's header, checked on each
read: an entry whose bytes changed on disk (bit rot, a bad copy) is rebuilt from its frames with
a warning, or refused with a CacheError naming it when its frames can no longer be read; it is
never decoded blindly nor used silently.
CACHE_VERSION and OpenCV's major.minor version (DIS flow differs between OpenCV 4.14 and 5.1 by
up to 9 px on a few pixels) are part of the folder name, so a cache of another format or flow
gets a new folder and is rebuilt; each file also starts with a magic and a format number that
are checked on open.
Without a cache_dir the store decodes and computes flow on every access (slow; for benchmarks).
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import sys
import threading
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from keras_crf_reid.atomic import pid_alive
from keras_crf_reid.datasets.base import (DatasetError, ReidDataset, Tracklet, fingerprint,
                                          warn_skipped)
from keras_crf_reid.datasets.flow import compute_flow, dequantize_flow, quantize_flow
from keras_crf_reid.datasets.frames import read_frames
from keras_crf_reid.datasets.validate import EmptyTrackletError, drop_tracklets
from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH

CACHE_VERSION = "v3-dis-medium-clip8-int8-jpeg90-crc32"
# the flow (and JPEG) library version the cache was built with
OPENCV_VERSION = "opencv" + ".".join(cv2.__version__.split(".")[:2])
EMPTY_REASON = "tracklet has no readable frame"
JPEG_QUALITY = 90
MAX_FRAME_BYTES = 22 * 1024
ENTRY_SUFFIX = ".crf"
_MAGIC = b"CRFCACHE"
_FORMAT = 3
_HEAD = len(_MAGIC) + 5 * 8  # magic, then int64 format, frames, height, width, flow offset
_ALIGN = 64
# JPEG settings tried in order until a frame fits its share of MAX_FRAME_BYTES.
_JPEG_LADDER = [(JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444), (80, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
                (70, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420), (50, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
                (25, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420), (5, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420)]
_TMP = re.compile(r"\.(\d+)\.\d+\.tmp$")
log = logging.getLogger(__name__)


class CacheError(DatasetError):
    """The frame cache cannot be written (disk full, permissions) or an entry is unusable."""


class CorruptEntryError(CacheError):
    """An entry's bytes no longer match their checksums (or do not decode): rebuild it."""


def _file_stamp(path: str) -> str:
    """Size and modification time: a regenerated or edited frame gets a new cache entry."""
    try:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "missing"


def _entry_name(t: Tracklet) -> str:
    """Cache file name of a tracklet: its frame list plus the stamps of its first and last frame."""
    stamps = [_file_stamp(p) for p in (t.frames[:1] + t.frames[-1:])]
    digest = hashlib.sha1("\n".join(t.frames + tuple(stamps)).encode()).hexdigest()[:10]
    return f"{t.key}-{digest}{ENTRY_SUFFIX}"


def _jpeg(frame: np.ndarray, budget: int) -> bytes:
    """The best-quality JPEG of an RGB frame (first of _JPEG_LADDER) within `budget` bytes."""
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    for quality, sampling in _JPEG_LADDER:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling])
        if not ok:
            raise CacheError(f"cannot JPEG-encode a {frame.shape} frame")
        if len(buf) <= budget:
            break
    return buf.tobytes()


def _index_bytes(t: int) -> int:
    """Bytes after the fixed header: T + 1 int64 JPEG offsets, then T uint32 CRC-32s of the
    JPEGs and T of the flow frames."""
    return 8 * (t + 1) + 8 * t


def encode_entry(rgb: np.ndarray, flow_q: np.ndarray) -> list[bytes]:
    """RGB uint8 (T, H, W, 3) and int8 flow (T, H, W, 2) -> the byte chunks of one entry file.

    Layout: magic, int64 [format, T, H, W, flow offset], T + 1 int64 offsets (the JPEG of
    frame k runs from offset k to k + 1), T uint32 CRC-32s of the JPEGs, T of the flow frames,
    the T JPEGs, zero padding to a multiple of 64, then the int8 flow (T, H, W, 2). At most
    MAX_FRAME_BYTES per frame in all.
    """
    t, h, w = rgb.shape[:3]
    overhead = _HEAD + _index_bytes(t) + _ALIGN + flow_q[0].nbytes * t
    budget = (MAX_FRAME_BYTES * t - overhead) // t
    jpegs = [_jpeg(frame, budget) for frame in rgb]
    flows = [np.ascontiguousarray(f, np.int8).tobytes() for f in flow_q]
    start = _HEAD + _index_bytes(t)
    offsets = start + np.concatenate([[0], np.cumsum([len(b) for b in jpegs])])
    flow_at = -(-int(offsets[-1]) // _ALIGN) * _ALIGN
    crcs = np.array([zlib.crc32(b) for b in jpegs + flows], "<u4")
    head = (_MAGIC + np.array([_FORMAT, t, h, w, flow_at], "<i8").tobytes()
            + offsets.astype("<i8").tobytes() + crcs.tobytes())
    pad = b"\0" * (flow_at - int(offsets[-1]))
    return [head, *jpegs, pad, *flows]


class _Entry:
    """The validated header of an entry file; reads and decodes frames on demand.

    Frames are read with positioned reads (one for the JPEGs and one for the flow of a window)
    rather than a memory map, so pages read once do not stay counted in the process's memory.
    """

    def __init__(self, path: str):
        def bad(why: str) -> CacheError:
            return CacheError(f"{path}: not a usable frame cache entry ({why})")
        self.path = path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(_HEAD)
                if len(head) < _HEAD or head[:len(_MAGIC)] != _MAGIC:
                    raise bad("wrong magic: written by another program or truncated")
                fmt, t, h, w, flow_at = (int(v) for v in np.frombuffer(head, "<i8", offset=len(_MAGIC)))
                if fmt != _FORMAT or (h, w) != (FRAME_HEIGHT, FRAME_WIDTH) or t < 1:
                    raise bad(f"format {fmt}, {t} frames of {h}x{w}; expected format {_FORMAT}, "
                              f"{FRAME_HEIGHT}x{FRAME_WIDTH}")
                end = _HEAD + _index_bytes(t)
                if size != flow_at + t * h * w * 2 or flow_at < end:
                    raise bad(f"size {size} does not match its header")
                self.offsets = np.frombuffer(f.read(8 * (t + 1)), "<i8").astype(np.int64)
                crcs = np.frombuffer(f.read(8 * t), "<u4").astype(np.int64)
        except OSError as e:
            raise bad(str(e)) from e
        if self.offsets[0] != end or self.offsets[-1] > flow_at or np.any(np.diff(self.offsets) <= 0):
            raise bad("JPEG offsets out of order")
        self.jpeg_crc, self.flow_crc = crcs[:t], crcs[t:]
        self.flow_at = flow_at
        self.length = t

    def frames(self, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (N, H, W, 3), int8 quantised flow (N, H, W, 2)) of frames idx."""
        idx = np.asarray(idx, np.int64)
        rgb = np.empty((len(idx), FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        if not len(idx):
            return rgb, np.empty((0, FRAME_HEIGHT, FRAME_WIDTH, 2), np.int8)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        step = FRAME_HEIGHT * FRAME_WIDTH * 2
        o = self.offsets
        fd = os.open(self.path, os.O_RDONLY)
        try:
            jpegs = os.pread(fd, int(o[hi] - o[lo]), int(o[lo]))
            flow = os.pread(fd, (hi - lo) * step, self.flow_at + lo * step)
        finally:
            os.close(fd)
        if len(jpegs) != o[hi] - o[lo] or len(flow) != (hi - lo) * step:
            raise CacheError(f"{self.path}: short read (file truncated since it was opened)")
        buf = np.frombuffer(jpegs, np.uint8)
        for n, k in enumerate(idx.tolist()):
            jpeg = buf[o[k] - o[lo]:o[k + 1] - o[lo]]
            if zlib.crc32(jpeg) != self.jpeg_crc[k]:
                raise CorruptEntryError(f"{self.path}: frame {k}'s colour (JPEG) fails its checksum")
            img = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
            if img is None or img.shape != rgb.shape[1:]:
                raise CorruptEntryError(f"{self.path}: frame {k}'s colour (JPEG) does not decode")
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=rgb[n])
        for k in np.unique(idx).tolist():
            if zlib.crc32(flow[(k - lo) * step:(k - lo + 1) * step]) != self.flow_crc[k]:
                raise CorruptEntryError(f"{self.path}: frame {k}'s flow fails its checksum")
        flow_q = np.frombuffer(flow, np.int8).reshape(hi - lo, FRAME_HEIGHT, FRAME_WIDTH, 2)
        return rgb, flow_q[idx - lo]


def write_entry(path: str, chunks: Iterable[bytes]) -> None:
    """Writes `chunks` to `path` atomically (temp file + rename); CacheError naming the path.

    On any failure (ENOSPC included) the temp file is removed, so no partial entry remains.
    """
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.writelines(chunks)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if e.errno == errno.ENOSPC:
            free = shutil.disk_usage(os.path.dirname(path) or ".").free
            raise CacheError(
                f"{path}: no space left on the device while writing the frame cache ({free} bytes "
                f"free); free space or point --cache_dir at a larger disk and re-run: finished "
                f"entries are kept and the build resumes") from e
        raise CacheError(f"{path}: cannot write the frame cache entry ({e.strerror or e})") from e


class _BuildLog:
    """Periodic progress lines of a cache build on stderr, for runs without a progress bar."""

    def __init__(self, what: str, frames: int, tracklets: int, every_s: float, enabled: bool):
        self.what, self.frames, self.tracklets = what, frames, tracklets
        self.every_s, self.enabled = every_s, enabled
        self.t0 = self.last = time.monotonic()
        self.done_frames = self.done_tracklets = 0

    def update(self, frames: int) -> None:
        self.done_frames += frames
        self.done_tracklets += 1
        if self.enabled and time.monotonic() - self.last >= self.every_s:
            self._line()

    def done(self) -> None:
        if self.enabled:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = max(self.last - self.t0, 1e-9)
        rate = self.done_frames / elapsed
        eta = (self.frames - self.done_frames) / rate if rate > 0 else float("inf")
        print(f"{self.what}: {self.done_frames}/{self.frames} frames "
              f"({100 * self.done_frames / max(self.frames, 1):.0f}%), {self.done_tracklets}/"
              f"{self.tracklets} tracklets, {rate:.0f} frames/s, {elapsed:.0f} s elapsed, "
              f"ETA {eta:.0f} s", file=sys.stderr, flush=True)


class TrackletStore:
    """Random access to (rgb, flow) of each tracklet of a dataset."""

    def __init__(self, dataset: ReidDataset, cache_dir: str | None = None,
                 on_bad_image: str = "skip"):
        self.dataset = dataset
        self.on_bad_image = on_bad_image
        self.dir = None
        if cache_dir:
            key = fingerprint(dataset.tracklets, salt=f"{CACHE_VERSION}-{OPENCV_VERSION}",
                              length=12)
            self.dir = os.path.join(cache_dir, f"{dataset.name}-{key}")
        self._open: dict[int, _Entry] = {}
        self._names: dict[int, str] = {}
        self._lengths: list[int] | None = None
        self.skipped_frames: list[str] = []
        # Tracklets none of whose frames decode (with on_bad_image="skip"): index -> reason.
        self.empty: dict[int, str] = {}
        self._empty_errors: dict[int, Exception] = {}
        self._rebuild_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.dataset.tracklets)

    def _name(self, i: int) -> str:
        if i not in self._names:
            self._names[i] = _entry_name(self.dataset.tracklets[i])
        return self._names[i]

    def path(self, i: int) -> str:
        """The cache entry file of tracklet i."""
        return os.path.join(self.dir, self._name(i))

    def _compute(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8, int8 quantised flow) of tracklet i, from its image files."""
        t = self.dataset.tracklets[i]
        rgb, skipped = read_frames(t.frames, on_bad_image=self.on_bad_image)
        self.skipped_frames.extend(skipped)
        if len(rgb) == 0:
            raise EmptyTrackletError(f"{os.path.dirname(t.frames[0]) if t.frames else t.key}: "
                                     f"{EMPTY_REASON}")
        return rgb, quantize_flow(compute_flow(rgb))

    def _build_one(self, i: int) -> int:
        """Computes and writes the entry of tracklet i unless present; returns its frame count."""
        path = self.path(i)
        if not os.path.exists(path):
            try:
                rgb, flow_q = self._compute(i)
            except EmptyTrackletError as e:
                if self.on_bad_image != "skip":
                    raise
                self.empty[i], self._empty_errors[i] = EMPTY_REASON, e
                return len(self.dataset.tracklets[i].frames)
            write_entry(path, encode_entry(rgb, flow_q))
        return len(self.dataset.tracklets[i].frames)

    def subset(self, dataset: ReidDataset, keep: Sequence[int]) -> "TrackletStore":
        """This store over `dataset`, whose tracklets are ours at indices `keep`; same cache."""
        out = TrackletStore(dataset, None, self.on_bad_image)
        out.dir = self.dir
        out._names = {j: self._names[i] for j, i in enumerate(keep) if i in self._names}
        out.skipped_frames = list(self.skipped_frames)
        return out

    def _remove_stale_temps(self) -> None:
        """Deletes temp files left by killed builds (their process is gone)."""
        for name in os.listdir(self.dir):
            m = _TMP.search(name)
            if m and not pid_alive(int(m.group(1))):
                try:
                    os.remove(os.path.join(self.dir, name))
                except OSError:
                    pass

    def build(self, workers: int | None = None, progress: bool = True,
              log_every_s: float = 30.0) -> "TrackletStore":
        """Decodes frames and computes flow for every tracklet not cached yet.

        Streams: at most 2 * workers tracklets are in flight (default workers: all cores).
        Resumable: entries already on disk are kept. Progress bar in frames, with an ETA; without
        it (progress=False, e.g. batch logs) one line on stderr every log_every_s seconds.
        """
        if self.dir is None:
            return self
        os.makedirs(self.dir, exist_ok=True)
        self._remove_stale_temps()
        present = set(os.listdir(self.dir))
        todo = [i for i in range(len(self)) if self._name(i) not in present]
        if not todo:
            return self
        workers = max(1, workers or os.cpu_count() or 1)
        total = sum(len(self.dataset.tracklets[i].frames) for i in todo)
        bar = tqdm(total=total, desc=f"frame cache {self.dataset.name} ({len(todo)} tracklets)",
                   unit="frame", unit_scale=True, disable=not progress, dynamic_ncols=True)
        pending: set = set()
        queue = iter(todo)
        status = _BuildLog(f"frame cache {self.dataset.name}", total, len(todo), log_every_s,
                           enabled=not progress)
        with ThreadPoolExecutor(workers) as pool:
            try:
                while True:
                    for i in queue:
                        pending.add(pool.submit(self._build_one, i))
                        if len(pending) >= 2 * workers:
                            break
                    if not pending:
                        break
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        frames = f.result()
                        bar.update(frames)
                        status.update(frames)
            finally:
                for f in pending:
                    f.cancel()
                bar.close()
        status.done()
        if self.skipped_frames:
            log.warning("%d unreadable frames skipped while caching %s",
                        len(self.skipped_frames), self.dataset.name)
        if self.empty:
            warn_skipped(f"frame cache {self.dataset.name}: tracklets with no readable frame",
                         {self.dataset.tracklets[i].key: r for i, r in self.empty.items()})
        return self

    def _entry(self, i: int) -> _Entry:
        """The open entry of tracklet i; builds it if missing, rebuilds it if unusable."""
        entry = self._open.get(i)
        if entry is not None:
            return entry
        path = self.path(i)
        if not os.path.exists(path):
            os.makedirs(self.dir, exist_ok=True)
            self._build_one(i)
            if i in self.empty:
                raise self._empty_errors[i]
        try:
            entry = _Entry(path)
        except CacheError as e:
            return self._rebuild(i, e)
        self._open[i] = entry
        return entry

    def _rebuild(self, i: int, error: CacheError) -> _Entry:
        """Replaces the unusable entry of tracklet i (`error` says why) from its frames, with a
        warning; CacheError naming the entry when its frames can no longer be read."""
        path = self.path(i)
        with self._rebuild_lock:
            self._open.pop(i, None)
            log.warning("%s; rebuilding it from its frames", error)
            try:
                rgb, flow_q = self._compute(i)
            except DatasetError as e:
                raise CacheError(f"{path}: the frame cache entry of tracklet {self.dataset.tracklets[i].key} "
                                 f"is unusable ({error}) and cannot be rebuilt: {e}") from e
            write_entry(path, encode_entry(rgb, flow_q))
            entry = self._open[i] = _Entry(path)
        return entry

    def _read(self, i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, int8 flow) of frames idx (modulo the length) of cached tracklet i, rebuilding
        the entry once if its bytes fail their checksums."""
        entry = self._entry(i)
        try:
            return entry.frames(np.asarray(idx) % entry.length)
        except CorruptEntryError as e:
            entry = self._rebuild(i, e)
        return entry.frames(np.asarray(idx) % entry.length)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (T, 128, 64, 3), flow float32 (T, 128, 64, 2) in [-1, 1]) of tracklet i."""
        if self.dir is None:
            rgb, q = self._compute(i)
            return rgb, dequantize_flow(q)
        rgb, q = self._read(i, np.arange(self._entry(i).length))
        return rgb, dequantize_flow(q)

    def lengths(self) -> np.ndarray:
        """Number of usable frames of every tracklet (from the entry headers when cached)."""
        if self._lengths is None:
            if self.dir is None:
                self._lengths = [len(t) for t in self.dataset.tracklets]
            else:
                self._lengths = [self._entry(i).length for i in range(len(self))]
        return np.asarray(self._lengths)

    def window(self, i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames at indices `idx` (taken modulo the length) of tracklet i: (rgb, float32 flow)."""
        rgb, q = self.window_q(i, idx)
        return rgb, dequantize_flow(q)

    def window_q(self, i: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As `window`, with the flow still quantised (int8; flow.dequantize_flow gives floats).

        The pipelines take this form: a quarter of the bytes, dequantised inside the graph.
        """
        if self.dir is None:
            rgb, q = self._compute(i)
            idx = np.asarray(idx) % len(rgb)
            return rgb[idx], q[idx]
        return self._read(i, idx)


def drop_unreadable(dataset: ReidDataset, store: TrackletStore) -> tuple[ReidDataset, TrackletStore]:
    """The dataset and store without the tracklets the store's build found no readable frame in.

    Their persons are dropped too where a camera is left without them; every dropped tracklet
    and skipped frame is recorded in `dataset.skipped` (the summary's "skipped" count).
    """
    dropped_frames = {p for i in store.empty for p in dataset.tracklets[i].frames}
    dataset, keep = drop_tracklets(dataset, store.empty)
    dataset.skipped.update({p: "undecodable frame skipped" for p in store.skipped_frames
                            if p not in dropped_frames and p not in dataset.skipped})
    return dataset, (store if len(keep) == len(store) else store.subset(dataset, keep))
