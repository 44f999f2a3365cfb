"""Dense optical flow between consecutive frames with OpenCV DIS.

DIS (Dense Inverse Search, Kroeger et al. 2016) is used rather than Farneback: on 128x64
pedestrian crops it is several times faster at comparable accuracy, which matters because
flow is computed for every frame of every dataset. Flow is computed on the grey level of the
128x64 frame, expressed in pixels of that frame, clipped to +-FLOW_CLIP pixels and divided by
FLOW_CLIP, so stored values lie in [-1, 1]. Channel 0 is horizontal (positive = rightwards),
channel 1 vertical (positive = downwards).

Frame t (t >= 1) gets the flow of the pair (t-1, t); frame 0 gets the flow of pair (0, 1), so
all frames carry motion. A single-frame tracklet gets zero flow.
"""
from __future__ import annotations

import cv2
import numpy as np

FLOW_CLIP = 8.0


def _dis() -> "cv2.DISOpticalFlow":
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis


def compute_flow(frames: np.ndarray) -> np.ndarray:
    """Optical flow of an RGB uint8 sequence (T, H, W, 3) -> float16 (T, H, W, 2) in [-1, 1]."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"compute_flow expects uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    out = np.zeros((t, h, w, 2), np.float16)
    if t < 2:
        return out
    dis = _dis()
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    for i in range(1, t):
        f = dis.calc(grey[i - 1], grey[i], None)
        out[i] = np.clip(f / FLOW_CLIP, -1.0, 1.0)
    out[0] = out[1]
    return out
