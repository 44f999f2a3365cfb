"""A video plus its detections -> tracks (MOTChallenge rows) and per-track 64x128 crop folders."""
from __future__ import annotations

import logging
import os
import shutil
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from keras_crf_reid.tracking import video
from keras_crf_reid.tracking.detections import DetectionFileError, Detections, from_arrays, write_mot
from keras_crf_reid.configs.tracker import TrackerConfig
from keras_crf_reid.tracking.tracker import Tracker

TRACKS_FILE = "tracks.txt"
TRACKLETS_DIR = "tracklets"
log = logging.getLogger(__name__)

# crops (N, 128, 64, 3) uint8 RGB -> embeddings (N, D)
AppearanceFn = Callable[[np.ndarray], np.ndarray]


def model_appearance(embedder) -> AppearanceFn:
    """Per-detection embeddings from a loaded re-id model (keras_crf_reid.load): each crop is a
    one-frame sequence (its optical flow is zero, as for any single-frame tracklet), colour
    normalised as the model was trained (its colour_norm); one forward pass for all the crops."""
    from keras_crf_reid.datasets.preprocess import to_model_input

    def embed(crops: np.ndarray) -> np.ndarray:
        rgb = np.asarray(crops, np.uint8)[:, None]
        x = to_model_input(rgb, np.zeros(rgb.shape[:-1] + (2,), np.float32),
                           embedder.colour_norm).numpy()
        return embedder.predict(x)

    return embed


def track_video(video_path: str, dets: Detections, appearance: AppearanceFn | None = None,
                config: TrackerConfig = TrackerConfig(), out_dir: str | None = None,
                progress: bool = False, embed_mode: str = "ambiguous",
                max_frames: int | None = None) -> dict:
    """Tracks `dets` through the video (its first `max_frames`); with `out_dir` writes
    tracks.txt and tracklets/<id>/. embed_mode "all" embeds every detection, "ambiguous" (one
    batched call a frame) only those whose association appearance can change, and each
    track's at least every `config.embed_every` frames.

    Returns {"tracks": Detections (id = track id), "frames": frames read, "num_tracks": ...,
    "frame_ranges": {track id: (first, last)}}.
    """
    if embed_mode not in ("all", "ambiguous"):
        raise ValueError(f"embed_mode must be 'all' or 'ambiguous', got {embed_mode!r}")
    by_frame = _rows_by_frame(dets)
    tracker = Tracker(config, use_appearance=appearance is not None)
    crops_dir = os.path.join(out_dir, TRACKLETS_DIR) if out_dir else None
    if crops_dir:
        shutil.rmtree(crops_dir, ignore_errors=True)
        os.makedirs(crops_dir)
    total = video.frame_count(video_path) or None
    frames = 0
    for n, rgb in tqdm(video.read_video(video_path), total=total, desc="track", unit="frame",
                       disable=not progress):
        if max_frames is not None and n > max_frames:
            break
        frames = n
        tracker.frame_size = (rgb.shape[1], rgb.shape[0])
        rows = by_frame.get(n, _NO_ROWS)
        boxes = dets.boxes[rows]
        crops = np.stack([video.crop(rgb, b) for b in boxes]) if len(rows) and (
            crops_dir or embed_mode == "all") else None
        feats = None
        if appearance is not None and embed_mode == "all":
            feats = appearance(crops) if len(rows) else np.zeros((0, 1), np.float32)
        elif appearance is not None:
            def feats(idx, rgb=rgb, boxes=boxes, crops=crops):
                return appearance(crops[idx] if crops is not None
                                  else np.stack([video.crop(rgb, boxes[i]) for i in idx]))
        tracker.update(n, boxes, feats, dets.score[rows])
        if crops_dir:
            for t in tracker.tracks:
                f, d = tracker.history[t.id][-1]
                if f == n:
                    folder = os.path.join(crops_dir, str(t.id))
                    os.makedirs(folder, exist_ok=True)
                    cv2.imwrite(os.path.join(folder, f"{n:04d}.jpg"),
                                cv2.cvtColor(crops[d], cv2.COLOR_RGB2BGR))
    if dets.frame.size and dets.frame.min() > frames:
        raise DetectionFileError(f"the detections start at frame {dets.frame.min()} but the video "
                                 f"{video_path} has only {frames} frames")
    if dets.frame.size and dets.frame.max() > frames:
        log.warning("detections reach frame %d but the video %s has %d frames: later ones ignored",
                    dets.frame.max(), video_path, frames)
    return {**_result(tracker, dets, by_frame, crops_dir, out_dir), "frames": frames}


def embed_detections(video_path: str, dets: Detections, appearance: AppearanceFn,
                     progress: bool = False) -> np.ndarray:
    """Embeddings (N, D) of every detection row (its crop of the video), e.g. to cache them for
    `track_features` when comparing tracker settings."""
    by_frame = _rows_by_frame(dets)
    out = None
    for n, rgb in tqdm(video.read_video(video_path), total=video.frame_count(video_path) or None,
                       desc="embed", unit="frame", disable=not progress):
        rows = by_frame.get(n, _NO_ROWS)
        if len(rows):
            f = appearance(np.stack([video.crop(rgb, b) for b in dets.boxes[rows]]))
            if out is None:
                out = np.full((len(dets), f.shape[1]), np.nan, np.float32)
            out[rows] = f
    if out is None or np.isnan(out).any():
        raise DetectionFileError(f"detections beyond the last frame of {video_path}")
    return out


def track_features(dets: Detections, features: np.ndarray | None, frame_size: tuple[int, int],
                   config: TrackerConfig = TrackerConfig(), embed_mode: str = "ambiguous") -> dict:
    """`track_video` without the video: appearance from per-row `features` (N, D) (or none;
    with embed_mode "ambiguous" the tracker reads only the rows it would have embedded),
    frames 1 .. the last detection's; returns the same dict."""
    by_frame = _rows_by_frame(dets)
    tracker = Tracker(config, use_appearance=features is not None, frame_size=frame_size)
    last = int(dets.frame.max()) if len(dets) else 0
    for n in range(1, last + 1):
        rows = by_frame.get(n, _NO_ROWS)
        feats = None if features is None else features[rows]
        if feats is not None and embed_mode == "ambiguous":
            feats = feats.__getitem__
        tracker.update(n, dets.boxes[rows], feats, dets.score[rows])
    return {**_result(tracker, dets, by_frame, None, None), "frames": last}


_NO_ROWS = np.zeros(0, np.int64)


def _rows_by_frame(dets: Detections) -> dict[int, np.ndarray]:
    order = np.argsort(dets.frame, kind="stable")
    frames, starts = np.unique(dets.frame[order], return_index=True)
    return {int(f): rows for f, rows in zip(frames, np.split(order, starts[1:]))}


def _result(tracker: Tracker, dets: Detections, by_frame: dict[int, np.ndarray],
            crops_dir: str | None, out_dir: str | None) -> dict:
    """Confirmed tracks renumbered 1, 2, ... by first appearance (tentative ones, e.g. on false
    detections, took ids too); renames crop folders and writes tracks.txt when given. Returns
    track_video's dict less "frames"."""
    confirmed = tracker.confirmed_history()
    new_id = {old: i for i, old in enumerate(sorted(confirmed, key=lambda t: (confirmed[t][0][0], t)), 1)}
    history = {new_id[t]: h for t, h in confirmed.items()}
    out_f, out_id, out_rows, out_boxes = [], [], [], []
    for old, tid in new_id.items():
        for (f, d), box in zip(confirmed[old], tracker.filtered[old]):
            out_f.append(f)
            out_id.append(tid)
            out_rows.append(by_frame[f][d])
            out_boxes.append(box)
    out_rows = np.asarray(out_rows, np.int64).reshape(-1)
    blend = tracker.config.box_blend
    boxes = (1 - blend) * np.reshape(out_boxes, (-1, 4)) + blend * dets.boxes[out_rows]
    tracks = from_arrays(out_f, out_id, boxes, dets.score[out_rows])
    if crops_dir:
        for name in os.listdir(crops_dir):
            if int(name) in new_id:
                os.rename(os.path.join(crops_dir, name), os.path.join(crops_dir, f"n{new_id[int(name)]}"))
            else:
                shutil.rmtree(os.path.join(crops_dir, name))
        for name in os.listdir(crops_dir):
            os.rename(os.path.join(crops_dir, name), os.path.join(crops_dir, name[1:]))
        write_mot(os.path.join(out_dir, TRACKS_FILE), tracks)
    ranges = {tid: (hist[0][0], hist[-1][0]) for tid, hist in sorted(history.items())}
    return {"tracks": tracks, "num_tracks": len(history), "frame_ranges": ranges}
