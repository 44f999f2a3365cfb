"""Reading pedestrian frames from disk into fixed-size RGB uint8 arrays."""
from __future__ import annotations

import io
import logging
import os
import warnings
from typing import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Frames larger than this (in pixels) are refused instead of decoded: protects memory.
MAX_IMAGE_PIXELS = 50_000_000

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed or violates the expected layout.

    The message always names the offending path and what is wrong with it.
    """


class BadImageError(DatasetError):
    """An image file that cannot be decoded into a frame."""


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


def _declared_pixels(data: np.ndarray) -> int:
    """Pixel count from the image header alone (PIL reads headers lazily); 0 if unknown."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data.tobytes())) as im:
                return int(im.size[0]) * int(im.size[1])
    except Image.DecompressionBombError:
        return MAX_IMAGE_PIXELS + 1
    except Exception:  # not an image PIL knows: leave the verdict to the decoder
        return 0


def read_frame(path: str, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH) -> np.ndarray:
    """Decodes one image file to RGB uint8 (height, width, 3).

    Grayscale is expanded to three channels, alpha is dropped, 16-bit images are scaled to 8 bits.
    Raises BadImageError naming the file when it is missing, empty, truncated, not an image or huge.
    """
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise BadImageError(f"{path}: cannot read image ({e.strerror or e})") from e
    if size == 0:
        raise BadImageError(f"{path}: image file is empty (0 bytes)")
    data = np.fromfile(path, dtype=np.uint8)
    declared = _declared_pixels(data)
    if declared > MAX_IMAGE_PIXELS:
        raise BadImageError(f"{path}: image header declares {declared} pixels, above the limit of "
                            f"{MAX_IMAGE_PIXELS} pixels (refused before decoding)")
    header_ok = cv2.haveImageReader(path) if hasattr(cv2, "haveImageReader") else True
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if header_ok else None
    if img is None:
        raise BadImageError(f"{path}: not a decodable image (corrupt, truncated or wrong format)")
    if img.shape[0] * img.shape[1] > MAX_IMAGE_PIXELS:
        raise BadImageError(f"{path}: image of {img.shape[1]}x{img.shape[0]} pixels exceeds the "
                            f"limit of {MAX_IMAGE_PIXELS} pixels")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise BadImageError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise BadImageError(f"{path}: unsupported number of channels {img.shape[2]}")
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def read_frames(paths: Sequence[str], on_bad_image: str = "skip", height: int = FRAME_HEIGHT,
                width: int = FRAME_WIDTH) -> tuple[np.ndarray, list[str]]:
    """Reads frames in order; returns (uint8 (T, H, W, 3), list of skipped paths).

    on_bad_image: "skip" drops undecodable frames with a warning (they are returned so callers
    can count them); "fail" raises BadImageError on the first one.
    """
    skipped: list[str] = []
    out = list(iter_frames(paths, on_bad_image, height, width, skipped))
    arr = np.stack(out) if out else np.zeros((0, height, width, 3), np.uint8)
    return arr, skipped


def iter_frames(paths: Sequence[str], on_bad_image: str = "skip", height: int = FRAME_HEIGHT,
                width: int = FRAME_WIDTH, skipped: list[str] | None = None) -> Iterator[np.ndarray]:
    """`read_frames` one frame at a time (uint8 (H, W, 3)); skipped paths are appended to
    `skipped` when given."""
    if on_bad_image not in ("skip", "fail"):
        raise ValueError(f"on_bad_image must be 'skip' or 'fail', got {on_bad_image!r}")
    for p in paths:
        try:
            frame = read_frame(p, height, width)
        except BadImageError as e:
            if on_bad_image == "fail":
                raise
            log.warning("skipping frame: %s", e)
            if skipped is not None:
                skipped.append(p)
            continue
        yield frame
