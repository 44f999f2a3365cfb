"""Tiny datasets written in the exact on-disk layouts of PRID-2011, iLIDS-VID and MARS.

Every frame is a real image (cv2-encoded) whose colour encodes (pid, camera, frame number), so
tests can check that frames land in the right tracklet and in the right order.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import cv2
import numpy as np
import scipy.io

FRAME_SIZE = (64, 128)  # width, height
# The real pedestrian data beside the checkout (../shared/realdata); tests skip where it is absent.
REALDATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "realdata")


def write_image(path: str, pid: int, cam: int, frame: int, size: tuple[int, int] = FRAME_SIZE) -> str:
    """Writes one BGR image whose pixels encode (pid, cam, frame); returns the path."""
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (pid * 37) % 256
    img[..., 1] = (cam * 60) % 256
    img[..., 2] = (frame * 5) % 256
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, data = cv2.imencode(os.path.splitext(path)[1], img)
    assert ok, path
    data.tofile(path)  # np.tofile handles non-ASCII paths, unlike cv2.imwrite on some platforms
    return path


def make_prid_fixture(root: str, num_ids: int = 4, num_frames: int = 24,
                      person_ids: Sequence[int] | None = None,
                      lengths: dict[tuple[str, int], int] | None = None,
                      only_in: dict[int, str] | None = None, size: tuple[int, int] = FRAME_SIZE,
                      padded_names: bool = True) -> str:
    """Writes root/prid_2011/multi_shot/cam_a|cam_b/person_XXXX/NNNN.png; returns root/prid_2011.

    person_ids: ids to write (default 1..num_ids); lengths: {(cam, pid): frames} overrides
    num_frames; only_in: {pid: "cam_a" or "cam_b"} writes that person in one camera only;
    padded_names=False names frames 1.png, 2.png, ... to test numeric ordering.
    """
    lengths = lengths or {}
    only_in = only_in or {}
    base = os.path.join(root, "prid_2011")
    ids = list(person_ids) if person_ids is not None else list(range(1, num_ids + 1))
    for camid, cam in enumerate(("cam_a", "cam_b")):
        for pid in ids:
            if only_in.get(pid, cam) != cam:
                continue
            folder = os.path.join(base, "multi_shot", cam, f"person_{pid:04d}")
            os.makedirs(folder, exist_ok=True)
            for f in range(1, lengths.get((cam, pid), num_frames) + 1):
                name = f"{f:04d}.png" if padded_names else f"{f}.png"
                write_image(os.path.join(folder, name), pid, camid, f, size)
    return base


def make_ilids_fixture(root: str, person_numbers: Iterable[int] = (1, 2, 5, 7), num_frames: int = 5,
                       first_frame: int = 95, ls_set: np.ndarray | None = None,
                       size: tuple[int, int] = FRAME_SIZE) -> str:
    """Writes root/i-LIDS-VID/sequences/cam1|cam2/personXXX/camN_personXXX_NNNNN.png; returns root.

    Frame numbers start at `first_frame` (they cross a power of ten to test numeric order).
    With `ls_set` (num_splits, num_persons), also writes root/train-test people splits/
    train_test_splits_ilidsvid.mat holding it.
    """
    for cam in (1, 2):
        for pid in person_numbers:
            folder = os.path.join(root, "i-LIDS-VID", "sequences", f"cam{cam}", f"person{pid:03d}")
            os.makedirs(folder, exist_ok=True)
            for f in range(first_frame, first_frame + num_frames):
                write_image(os.path.join(folder, f"cam{cam}_person{pid:03d}_{f:05d}.png"),
                            pid, cam - 1, f, size)
    if ls_set is not None:
        split_dir = os.path.join(root, "train-test people splits")
        os.makedirs(split_dir, exist_ok=True)
        scipy.io.savemat(os.path.join(split_dir, "train_test_splits_ilidsvid.mat"),
                         {"ls_set": np.asarray(ls_set, np.float64)})
    return root


# (pid, camera 1-based, number of frames); pid 0 = distractor, -1 = junk.
MARS_TRAIN = ((2, 1, 3), (2, 2, 4), (4, 1, 3), (4, 3, 2), (-1, 2, 2))
MARS_TEST = ((3, 1, 3), (3, 2, 2), (5, 4, 3), (5, 6, 2), (3, 1, 2), (0, 2, 2), (-1, 1, 2))
MARS_QUERY = (1, 3)  # 1-based indices into MARS_TEST, as in query_IDX.mat


def mars_frame_name(pid: int, cam: int, tracklet: int, frame: int) -> str:
    folder = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{folder}C{cam}T{tracklet:04d}F{frame:03d}.jpg"


def _write_mars_part(mars: str, part: str, tracks, size) -> tuple[list[str], np.ndarray]:
    names, info, counter = [], [], {}
    for pid, cam, n in tracks:
        counter[(pid, cam)] = counter.get((pid, cam), 0) + 1
        start = len(names) + 1
        for f in range(1, n + 1):
            name = mars_frame_name(pid, cam, counter[(pid, cam)], f)
            write_image(os.path.join(mars, part, name[:4], name), max(pid, 0), cam - 1, f, size)
            names.append(name)
        info.append((start, len(names), pid, cam))
    return names, np.asarray(info, np.float64)


def make_mars_fixture(root: str, train: Sequence[tuple[int, int, int]] = MARS_TRAIN,
                      test: Sequence[tuple[int, int, int]] = MARS_TEST,
                      query: Sequence[int] = MARS_QUERY, size: tuple[int, int] = (32, 64)) -> str:
    """Writes root/MARS/{bbox_train,bbox_test,info} like the official release; returns root/MARS.

    `train`/`test` are (pid, camera 1-based, frames) per track, in .mat row order; `query` are
    1-based rows of `test`. The info .mat files hold doubles, as the real ones do.
    """
    mars = os.path.join(root, "MARS")
    info = os.path.join(mars, "info")
    os.makedirs(info, exist_ok=True)
    for part, tracks, var, txt in (("bbox_train", train, "track_train_info", "train_name.txt"),
                                   ("bbox_test", test, "track_test_info", "test_name.txt")):
        os.makedirs(os.path.join(mars, part), exist_ok=True)
        names, table = _write_mars_part(mars, part, tracks, size)
        with open(os.path.join(info, txt), "w") as f:
            f.write("\n".join(names) + "\n")
        mat_name = "tracks_train_info.mat" if part == "bbox_train" else "tracks_test_info.mat"
        scipy.io.savemat(os.path.join(info, mat_name), {var: table})
    scipy.io.savemat(os.path.join(info, "query_IDX.mat"),
                     {"query_IDX": np.asarray(query, np.float64).reshape(1, -1)})
    return mars
