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


def frame_size(path: str) -> tuple[int, int]:
    """(width, height) of the video's frames as the container declares them."""
    cap = _open(path)
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return size


# first bytes of the video containers (and raw streams) FFmpeg reads
_SIGNATURES = (
    (0, b"RIFF", "AVI"), (4, b"ftyp", "MP4/MOV"), (4, b"moov", "MOV"), (4, b"mdat", "MOV"),
    (4, b"wide", "MOV"), (4, b"free", "MOV"), (0, b"\x1a\x45\xdf\xa3", "MKV/WebM"),
    (0, b"OggS", "Ogg"), (0, b"FLV", "FLV"), (0, bytes.fromhex("3026b2758e66cf11"), "ASF/WMV"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"), (0, b"\x00\x00\x01\xb3", "MPEG video"),
    (0, b"\x00\x00\x00\x01", "H.264/H.265 stream"), (0, b"YUV4MPEG2", "Y4M"), (0, b"GIF8", "GIF"))
# codecs FFmpeg offers for files that are not video: text shown as terminal art
_NOT_VIDEO_CODECS = {"ansi", "tty ", "bin ", "xbin", "idf "}


def check_container(path: str) -> str:
    """The container's name from the file's first bytes; VideoError when they match no video
    container (a text file, an image, random bytes). Image-sequence patterns (with %) pass."""
    if "%" in os.path.basename(path):
        return "image sequence"
    with open(path, "rb") as f:
        head = f.read(512)
    for offset, magic, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "MPEG-TS"
    kind = "text" if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "data"
    raise VideoError(f"{path}: not a video file: its first bytes ({head[:8]!r}, {kind}) match no "
                     f"video container ({', '.join(sorted({n for _, _, n in _SIGNATURES}))}, "
                     f"MPEG-TS)")


def _open(path: str) -> cv2.VideoCapture:
    if not os.path.isfile(path) and "%" not in os.path.basename(path):
        raise VideoError(f"{path}: video file does not exist")
    container = check_container(path)
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: OpenCV cannot open this {container} video (a codec this "
                         f"OpenCV build lacks, or a damaged file)")
    codec = (int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF).to_bytes(4, "little")
    if codec.decode("latin-1").lower() in _NOT_VIDEO_CODECS:
        cap.release()
        raise VideoError(f"{path}: not a video: OpenCV decodes it with the "
                         f"{codec.decode('latin-1')!r} codec (text drawn as frames)")
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
