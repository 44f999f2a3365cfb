"""Helpers shared by the embedding benchmarks (no flags here, so any tool can import them)."""
from __future__ import annotations

import os


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_frames(folder: str, n: int) -> str:
    """n PNG frames of a shifting random texture (optical flow has something to track)."""
    import cv2
    import numpy as np

    os.makedirs(folder)
    base = np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), np.roll(base, i, axis=1))
    return folder
