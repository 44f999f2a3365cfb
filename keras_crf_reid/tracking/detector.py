"""Built-in person detectors, so a raw video can be tracked without a detection file.

    hog: OpenCV's HOG + linear SVM people detector (Dalal & Triggs, CVPR 2005; its weights ship
         inside OpenCV 4's wheel, nothing is downloaded). OpenCV 5 removed it, so setup.py pins
         opencv-python-headless<5; an environment that carries OpenCV 5 anyway gets a clear
         error naming the fix (`pip install "opencv-python-headless>=4.8,<5"`) or a detection
         file (`--detections`).

Better detectors plug in through the detection file: any detector's boxes written as
MOTChallenge rows `frame, -1, x, y, w, h, score` (frames from 1, pixels, top-left corner).
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from keras_crf_reid.tracking import video
from keras_crf_reid.tracking.detections import Detections, from_arrays

DETECTORS = ("hog",)


class DetectorError(RuntimeError):
    """A detector that is unknown or that this OpenCV build lacks."""


def _hog() -> "cv2.HOGDescriptor":
    if not hasattr(cv2, "HOGDescriptor"):
        raise DetectorError(f"--detector=hog needs OpenCV 4's HOG people detector, which the "
                            f"installed OpenCV {cv2.__version__} lacks (setup.py pins <5): pip "
                            f"install 'opencv-python-headless>=4.8,<5', or pass --detections=FILE")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


# Dalal & Triggs's 64x128 window holds the person with about 16 pixels of margin on all sides
HOG_MARGIN = (16 / 64, 16 / 128)


def hog_boxes(hog, rgb: np.ndarray, upscale: float = 1.5, nms_iou: float = 0.4
              ) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, 4) tlwh, scores (N,) in (0, 1)) of the people in one RGB frame: the frame
    enlarged by `upscale` (the detector's window is 64x128: smaller people need it), SVM
    margins through a logistic, overlapping windows suppressed (non-maximum, IoU > nms_iou),
    then each window shrunk by HOG_MARGIN to the person's box."""
    img = cv2.resize(rgb, None, fx=upscale, fy=upscale) if upscale != 1 else rgb
    rects, weights = hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
    if len(rects) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    boxes = np.asarray(rects, np.float64) / upscale
    scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float64).reshape(-1)))
    keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), 0.0, nms_iou)).reshape(-1)
    return shrink(boxes[keep]), scores[keep]


def shrink(windows: np.ndarray, margin: tuple[float, float] = HOG_MARGIN) -> np.ndarray:
    """Detector windows (N, 4) tlwh less `margin` (share of w, of h) on every side."""
    out = np.asarray(windows, np.float64).copy()
    out[:, 0] += margin[0] * out[:, 2]
    out[:, 1] += margin[1] * out[:, 3]
    out[:, 2] *= 1 - 2 * margin[0]
    out[:, 3] *= 1 - 2 * margin[1]
    return out


def detect_video(path: str, name: str = "hog", progress: bool = False) -> Detections:
    """Detections of every frame of the video by the named detector (DETECTORS)."""
    if name not in DETECTORS:
        raise DetectorError(f"--detector={name}: unknown detector (known: {', '.join(DETECTORS)})")
    hog = _hog()
    frames, boxes, scores = [], [], []
    frames_iter: Iterator = video.read_video(path)
    for n, rgb in tqdm(frames_iter, total=video.frame_count(path) or None, desc="detect",
                       unit="frame", disable=not progress):
        b, s = hog_boxes(hog, rgb)
        frames += [n] * len(b)
        boxes.append(b)
        scores.append(s)
    return from_arrays(frames, -np.ones(len(frames)), np.concatenate(boxes or [np.zeros((0, 4))]),
                       np.concatenate(scores or [np.zeros(0)]))
