"""A synthetic dataset in the MARS layout, of any size, for testing and costing the MARS path.

Writes <out_root>/MARS/{bbox_train,bbox_test}/<pid>/<pid>C<cam>T<track>F<frame>.jpg (256x128
JPEGs, like MARS), info/train_name.txt and info/test_name.txt (one frame name per line, tracks
contiguous), info/tracks_{train,test}_info.mat (rows: start, end (1-based, inclusive), pid,
camera 1..6, as doubles) and info/query_IDX.mat (1-based test rows), exactly what
datasets/mars.load_mars reads. Identities alternate between train and test until `num_frames`
frames are written; each is seen by 2-3 of the 6 cameras, 1-2 tracks per camera. The test set
also has distractor (pid 0) and junk (pid -1, folder 00-1) tracks, and the training set one junk
track, as in MARS. The query is one track per test identity; the gallery is every other test
track (the official protocol).

Frames: render="person" draws the synthetic pedestrians of datasets/synthetic.py (about 8 ms per
frame), render="noise" cheap coloured noise with a moving blob (for size benchmarks).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import cv2
import numpy as np
import scipy.io

from keras_crf_reid.datasets.synthetic import CAMERAS, render_sequence

NUM_CAMERAS = 6
JUNK_FOLDER = "00-1"
FRAME_SIZE = (256, 128)  # MARS bounding boxes: height, width


@dataclasses.dataclass(frozen=True)
class _Track:
    part: str  # bbox_train | bbox_test
    pid: int  # 0 distractor, -1 junk
    cam: int  # 1..6
    number: int  # track number of this person and camera, from 1
    length: int
    variant: int


def _folder(pid: int) -> str:
    return JUNK_FOLDER if pid == -1 else f"{pid:04d}"


def _names(t: _Track) -> list[str]:
    return [f"{_folder(t.pid)}C{t.cam}T{t.number:04d}F{f:03d}.jpg" for f in range(1, t.length + 1)]


def plan_tracks(num_frames: int, seed: int = 0, min_len: int = 8,
                max_len: int = 40) -> tuple[list[_Track], list[_Track], list[int]]:
    """(train tracks, test tracks, 1-based query rows of the test tracks) of about num_frames."""
    if num_frames < 4 * max_len:
        raise ValueError(f"num_frames must be >= 4 * max_len = {4 * max_len}, got {num_frames}")
    if not 2 <= min_len <= max_len <= 999:
        raise ValueError(f"need 2 <= min_len <= max_len <= 999, got {min_len}, {max_len}")
    rng = np.random.default_rng([seed, 7])
    train, test, query = [], [], []
    total, pid = 0, 0

    def add(tracks, part, pid, cam, number):
        length = int(rng.integers(min_len, max_len + 1))
        tracks.append(_Track(part, pid, cam, number, length, variant=len(tracks) + 1))
        return length

    while total < num_frames:
        pid += 1
        part, tracks = ("bbox_train", train) if pid % 2 else ("bbox_test", test)
        cams = sorted(rng.choice(np.arange(1, NUM_CAMERAS + 1), int(rng.integers(2, 4)), replace=False))
        first = len(tracks)
        for cam in cams:
            for number in range(1, int(rng.integers(1, 3)) + 1):
                total += add(tracks, part, pid, int(cam), number)
        if part == "bbox_test":
            query.append(first + 1)
            if pid % 10 == 0:  # a distractor and a junk track now and then, as in MARS
                total += add(test, part, 0, int(rng.integers(1, NUM_CAMERAS + 1)), pid)
                total += add(test, part, -1, int(rng.integers(1, NUM_CAMERAS + 1)), pid)
    train.append(_Track("bbox_train", -1, 1, 1, min_len, variant=len(train) + 1))
    return train, test, query


def _frames(t: _Track, seed: int, render: str) -> np.ndarray:
    if render == "person" and t.pid > 0:
        cam = CAMERAS[(t.cam - 1) % len(CAMERAS)]
        return render_sequence(seed, t.pid, cam, t.length, t.length, variant=t.variant)
    rng = np.random.default_rng([seed, t.pid + 2, t.cam, t.number])
    colour = rng.integers(30, 225, 3)
    frames = rng.integers(0, 40, (t.length, 128, 64, 3)) + colour // 2
    y, x = int(rng.integers(20, 80)), int(rng.integers(5, 30))
    for k in range(t.length):
        frames[k, y + k % 20:y + k % 20 + 40, x:x + 30] += colour // 2
    return np.clip(frames, 0, 255).astype(np.uint8)


def _write_track(args: tuple[str, _Track, int, str]) -> int:
    mars, t, seed, render = args
    folder = os.path.join(mars, t.part, _folder(t.pid))
    os.makedirs(folder, exist_ok=True)
    for name, frame in zip(_names(t), _frames(t, seed, render)):
        big = cv2.resize(frame, FRAME_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f"{folder}: JPEG encoding failed")
        with open(os.path.join(folder, name), "wb") as f:
            f.write(buf.tobytes())
    return t.length


def generate_mars_synthetic(out_root: str, num_frames: int, seed: int = 0, min_len: int = 8,
                            max_len: int = 40, render: str = "person",
                            workers: int | None = None) -> str:
    """Writes about `num_frames` frames in the MARS layout under out_root/MARS; returns that path.

    Idempotent per parameters: a finished dataset (info/query_IDX.mat written last) with the
    same parameters is reused. `workers`: processes writing tracks (default: all cores).
    """
    if render not in ("person", "noise"):
        raise ValueError(f"render must be 'person' or 'noise', got {render!r}")
    mars = os.path.join(os.path.abspath(out_root), "MARS")
    info = os.path.join(mars, "info")
    stamp = os.path.join(info, "params.txt")
    params = f"{num_frames} {seed} {min_len} {max_len} {render}"
    if os.path.exists(os.path.join(info, "query_IDX.mat")) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == params:
                return mars
    train, test, query = plan_tracks(num_frames, seed, min_len, max_len)
    os.makedirs(info, exist_ok=True)
    jobs = [(mars, t, seed, render) for t in train + test]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_track(job)
    else:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_track, jobs, chunksize=8))
    for tracks, var, mat, txt in ((train, "track_train_info", "tracks_train_info.mat", "train_name.txt"),
                                  (test, "track_test_info", "tracks_test_info.mat", "test_name.txt")):
        names, rows = [], []
        for t in tracks:
            rows.append((len(names) + 1, len(names) + t.length, t.pid, t.cam))
            names += _names(t)
        with open(os.path.join(info, txt), "w") as f:
            f.write("\n".join(names) + "\n")
        scipy.io.savemat(os.path.join(info, mat), {var: np.asarray(rows, np.float64)})
    with open(stamp, "w") as f:
        f.write(params)
    scipy.io.savemat(os.path.join(info, "query_IDX.mat"),
                     {"query_IDX": np.asarray(query, np.float64).reshape(1, -1)})
    return mars
