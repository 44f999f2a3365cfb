"""Video frames with OpenCV and 64x128 person crops from them."""
from __future__ import annotations

import os
from typing import Iterator

import cv2
import numpy as np

from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH


class VideoError(OSError):
    """A video file that is missing or that OpenCV cannot decode."""


def frame_count(path: str) -> int:
    """Frames the container declares (0 when unknown); VideoError when it cannot be opened."""
    cap = _open(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return max(n, 0)


def _open(path: str) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise VideoError(f"{path}: video file does not exist")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: OpenCV cannot open this video (not a video file, or a codec "
                         f"this OpenCV build lacks)")
    return cap


def read_video(path: str) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number from 1, RGB uint8 (H, W, 3)) for every frame; VideoError when no frame
    decodes."""
    cap = _open(path)
    n = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield n, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{path}: OpenCV opened the file but decoded no frame from it")


def crop(frame: np.ndarray, box: np.ndarray, height: int = FRAME_HEIGHT,
         width: int = FRAME_WIDTH) -> np.ndarray:
    """The tlwh box of an RGB frame resized to (height, width, 3); parts outside the frame
    are filled with the nearest edge pixels."""
    x, y, w, h = (float(v) for v in box)
    fh, fw = frame.shape[:2]
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = max(int(np.ceil(x + w)), x0 + 1), max(int(np.ceil(y + h)), y0 + 1)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((height, width, 3), np.uint8)
    patch = frame[cy0:cy1, cx0:cx1]
    patch = cv2.copyMakeBorder(patch, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA)
