"""MOTChallenge text files: detections in (frame, id, x, y, w, h, score, ...), tracks out.

Boxes are (left, top, width, height) in pixels, frames 1-based. Detection files use id -1;
ground-truth files (gt/gt.txt) carry the identity there, and MOT15's 7th column is 1.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from keras_crf_reid.atomic import write_atomic

log = logging.getLogger(__name__)


class DetectionFileError(ValueError):
    """A detection file that is missing or not in MOTChallenge format (names file and line)."""


@dataclasses.dataclass(frozen=True)
class Detections:
    """Rows of a MOTChallenge file: frame (N,), id (N,), boxes (N, 4) tlwh, score (N,), and
    the file and line each row was read from (empty path when made from arrays)."""

    frame: np.ndarray
    id: np.ndarray
    boxes: np.ndarray
    score: np.ndarray
    line: np.ndarray | None = None
    path: str = ""

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, rows: np.ndarray) -> "Detections":
        return Detections(self.frame[rows], self.id[rows], self.boxes[rows], self.score[rows],
                          None if self.line is None else self.line[rows], self.path)


def from_arrays(frame, ids, boxes, score=None) -> Detections:
    """Detections from arrays (score defaults to 1)."""
    frame = np.asarray(frame, np.int64)
    score = np.ones(len(frame)) if score is None else np.asarray(score, np.float64)
    return Detections(frame, np.asarray(ids, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4),
                      score)


def read_mot(path: str, min_score: float = -np.inf) -> Detections:
    """Reads a MOTChallenge detection or ground-truth file; DetectionFileError naming the line
    for anything that is not `frame, id, x, y, w, h[, score, ...]` with frame >= 1 and w, h > 0."""
    if not os.path.isfile(path):
        raise DetectionFileError(f"{path}: detection file does not exist")
    rows, lines = [], []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ").split()
            if len(parts) < 6:
                raise DetectionFileError(f"{path}:{n}: expected at least 6 comma-separated values "
                                         f"(frame, id, x, y, w, h[, score]), got {len(parts)}: {line!r}")
            try:
                vals = [float(p) for p in parts[:7]]
            except ValueError:
                raise DetectionFileError(f"{path}:{n}: non-numeric value in {line!r}") from None
            if not np.isfinite(vals).all():
                raise DetectionFileError(f"{path}:{n}: NaN or infinite value in {line!r}")
            if vals[0] < 1 or vals[0] != int(vals[0]):
                raise DetectionFileError(f"{path}:{n}: frame must be an integer >= 1, got {parts[0]}")
            if vals[4] <= 0 or vals[5] <= 0:
                raise DetectionFileError(f"{path}:{n}: box width and height must be > 0, got "
                                         f"{parts[4]} x {parts[5]}")
            rows.append(vals + [1.0] * (7 - len(vals)))
            lines.append(n)
    if not rows:
        raise DetectionFileError(f"{path}: no detections in the file")
    a = np.asarray(rows)
    dets = dataclasses.replace(from_arrays(a[:, 0], a[:, 1], a[:, 2:6], a[:, 6]),
                               line=np.asarray(lines, np.int64), path=path)
    return dets.subset(np.flatnonzero(dets.score >= min_score))


def drop_outside(dets: Detections, frame_size: tuple[int, int], shown: int = 5) -> Detections:
    """`dets` less the boxes lying entirely outside a (width, height) frame, each logged as a
    warning naming its file:line (the first `shown`, then a count)."""
    x, y, w, h = dets.boxes.T
    out = np.flatnonzero((x >= frame_size[0]) | (y >= frame_size[1]) | (x + w <= 0) | (y + h <= 0))
    for i in out[:shown]:
        where = f"{dets.path}:{dets.line[i]}" if dets.line is not None else f"row {i + 1}"
        log.warning("%s: box (%g, %g, %g, %g) lies entirely outside the %dx%d frame: ignored",
                    where, *dets.boxes[i], *frame_size)
    if len(out) > shown:
        log.warning("%s: %d more boxes entirely outside the frame ignored",
                    dets.path or "detections", len(out) - shown)
    return dets.subset(np.setdiff1d(np.arange(len(dets)), out))


def format_mot(dets: Detections) -> str:
    """MOTChallenge result lines: frame, id, x, y, w, h, score, -1, -1, -1 (sorted by frame, id)."""
    order = np.lexsort((dets.id, dets.frame))
    return "".join(f"{dets.frame[i]},{dets.id[i]},{dets.boxes[i, 0]:.2f},{dets.boxes[i, 1]:.2f},"
                   f"{dets.boxes[i, 2]:.2f},{dets.boxes[i, 3]:.2f},{dets.score[i]:.3g},-1,-1,-1\n"
                   for i in order)


def write_mot(path: str, dets: Detections) -> str:
    """Writes `format_mot(dets)` atomically; returns the path."""
    return write_atomic(path, format_mot(dets))
