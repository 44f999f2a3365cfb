"""Tracking accuracy on MOT15 sequences, tracked with --appearance=none and =reid and scored by
py-motmetrics (MOTA, IDF1, identity switches; IoU 0.5, ground-truth rows with flag 0 ignored).
The main benchmark is MOT15's public detections (det/det.txt, the boxes SORT's table was
measured on), beside SORT's and DeepSORT's rows on the same boxes; also ground-truth boxes
given as detections (identities withheld), degraded (seeded) or with crossings dropped.
Prints JSON; --table writes markdown. The tracker's settings are flags (--max_cos=0.6, ...).

    python -m keras_crf_reid.tracking.evaluate --table=runs/tracking/table.md

Every flag and its default: keras_crf_reid.configs.tracker.TrackingEvalConfig.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np

from keras_crf_reid import cli
from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.configs.tracker import MOT15_VIDEOS, TrackingEvalConfig
from keras_crf_reid.tracking.detections import Detections, from_arrays, read_mot, write_mot
from keras_crf_reid.tracking.metrics import mot_metrics
from keras_crf_reid.tracking.pipeline import (AppearanceFn, embed_detections, track_features,
                                              track_video)
from keras_crf_reid.tracking.tracker import iou_matrix

# the same public detections given to the reference trackers (issue 28; py-motmetrics, IoU 0.5):
# MOTA, IDF1, ID switches, precision, recall
REFERENCE = {
    ("PETS09-S2L1", "SORT"): (0.619, 0.351, 103, 0.874, 0.750),
    ("PETS09-S2L1", "DeepSORT"): (0.639, 0.547, 64, 0.848, 0.796),
    ("TUD-Campus", "SORT"): (0.627, 0.606, 6, 0.943, 0.685),
    ("TUD-Campus", "DeepSORT"): (0.571, 0.647, 8, 0.879, 0.688),
    ("TUD-Stadtmitte", "SORT"): (0.717, 0.735, 10, 0.975, 0.745),
    ("TUD-Stadtmitte", "DeepSORT"): (0.702, 0.718, 12, 0.955, 0.748),
}
CONDITIONS = {"public": "public", "gt": "gt boxes", "degraded": "degraded",
              "crossings": "crossings dropped"}


def withheld(gt: Detections) -> Detections:
    """Ground-truth boxes as detections: identity -1, score 1."""
    return from_arrays(gt.frame, -np.ones(len(gt)), gt.boxes)


def degrade(gt: Detections, frame_size: tuple[int, int], drop: float, jitter: float,
            false_per_frame: float, seed: int) -> Detections:
    """Drops a share of the boxes, jitters the rest and adds false boxes of person-like size."""
    rng = np.random.default_rng(seed)
    keep = rng.random(len(gt)) >= drop
    boxes = gt.boxes[keep].copy()
    wh = np.repeat(boxes[:, 2:], 2, axis=1)
    boxes += rng.normal(0, jitter, boxes.shape) * wh
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 4)
    frames = list(gt.frame[keep])
    w_img, h_img = frame_size
    for f in range(1, int(gt.frame.max()) + 1):
        for _ in range(rng.poisson(false_per_frame)):
            w, h = gt.boxes[rng.integers(len(gt)), 2:]
            boxes = np.vstack([boxes, [rng.uniform(0, w_img - w), rng.uniform(0, h_img - h), w, h]])
            frames.append(f)
    return from_arrays(frames, -np.ones(len(frames)), boxes)


def drop_crossings(gt: Detections, iou: float) -> Detections:
    """Ground-truth boxes minus every box overlapping another person's by IoU > `iou` in its
    frame: the detector misses people where they cross or occlude each other."""
    keep = np.ones(len(gt), bool)
    for f in np.unique(gt.frame):
        rows = np.flatnonzero(gt.frame == f)
        m = iou_matrix(gt.boxes[rows], gt.boxes[rows])
        np.fill_diagonal(m, 0)
        keep[rows[(m > iou).any(axis=1)]] = False
    return withheld(gt.subset(np.flatnonzero(keep)))


def frame_size(seq_dir: str) -> tuple[int, int]:
    """(width, height) from a MOTChallenge sequence's seqinfo.ini."""
    with open(os.path.join(seq_dir, "seqinfo.ini")) as f:
        info = dict(line.strip().split("=", 1) for line in f if "=" in line)
    return int(info["imWidth"]), int(info["imHeight"])


def detection_sets(cfg: TrackingEvalConfig, seq_dir: str, gt: Detections) -> dict[str, Detections]:
    """{set name: detections} of cfg.detections for one sequence."""
    out = {}
    for name in cfg.detections:
        if name == "public":
            out[name] = read_mot(os.path.join(seq_dir, "det", "det.txt"))
        elif name == "gt":
            out[name] = withheld(gt)
        elif name == "degraded":
            out[name] = degrade(gt, frame_size(seq_dir), cfg.drop, cfg.jitter,
                                cfg.false_per_frame, cfg.seed)
        else:
            out[name] = drop_crossings(gt, cfg.crossing_iou)
    return out


def _features(cfg: TrackingEvalConfig, embed: AppearanceFn, video: str, dets: Detections,
              key: str) -> np.ndarray:
    path = os.path.join(cfg.features_dir, f"{key}.npy")
    if os.path.isfile(path):
        feats = np.load(path)
        if len(feats) == len(dets):
            return feats
    feats = embed_detections(video, dets, embed, progress=True)
    os.makedirs(cfg.features_dir, exist_ok=True)
    np.save(path, feats)
    return feats


def markdown_table(cfg: TrackingEvalConfig, rows: list[dict]) -> str:
    """The rows per sequence, after SORT's and DeepSORT's reference rows on public detections."""
    head = ("| sequence | detections | tracker | MOTA | IDF1 | ID switches | tracks | "
            "recall | precision | s |\n|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|\n")
    body = ""
    for seq in cfg.sequences:
        if "public" in cfg.detections:
            for name in ("SORT", "DeepSORT"):
                mota, idf1, sw, p, r = REFERENCE[(seq, name)]
                body += (f"| {seq} | public | {name} (issue 28) | {mota:.3f} | {idf1:.3f} | "
                         f"{sw} | | {r:.3f} | {p:.3f} | |\n")
        body += "".join(f"| {r['sequence']} | {r['detections']} | {r['appearance']} | "
                        f"{r['mota']:.3f} | {r['idf1']:.3f} | {int(r['num_switches'])} | "
                        f"{r['tracks']} | {r['recall']:.3f} | {r['precision']:.3f} | "
                        f"{r['seconds']:.0f} |\n" for r in rows if r["sequence"] == seq)
    return head + body


def evaluate_tracking(cfg: TrackingEvalConfig, embed: AppearanceFn | None = None) -> dict:
    """Tracks and scores every sequence, detection set and appearance mode of `cfg` (`embed`:
    the re-id appearance, needed for --appearance=reid); writes --table and --detections_out.

    Returns {"settings": ..., "rows": [one dict of metrics per run]}; each row is also printed
    to stderr as it is done.
    """
    if "reid" in cfg.appearance and embed is None:
        raise ValueError("--appearance=reid needs a re-id model")
    if cfg.detections_out:
        os.makedirs(cfg.detections_out, exist_ok=True)
    rows = []
    for seq in cfg.sequences:
        seq_dir = os.path.join(cfg.mot_root, seq)
        gt = read_mot(os.path.join(seq_dir, "gt", "gt.txt"))
        video = os.path.join(seq_dir, MOT15_VIDEOS[seq])
        inputs = detection_sets(cfg, seq_dir, gt)
        if cfg.detections_out and "degraded" in inputs:
            write_mot(os.path.join(cfg.detections_out, f"{seq}_degraded.txt"), inputs["degraded"])
        for cond, dets in inputs.items():
            for mode in cfg.appearance:
                t = time.time()
                if cfg.features_dir:
                    key = f"{os.path.basename(os.path.normpath(cfg.model))}_{seq}_{cond}"
                    feats = _features(cfg, embed, video, dets, key) if mode == "reid" else None
                    t = time.time()
                    out = track_features(dets, feats, frame_size(seq_dir), cfg.tracker)
                else:
                    out = track_video(video, dets, embed if mode == "reid" else None, cfg.tracker,
                                      progress=True)
                m = mot_metrics(gt, out["tracks"])
                rows.append({"sequence": seq, "detections": CONDITIONS[cond], "appearance": mode,
                             "tracks": out["num_tracks"], "seconds": round(time.time() - t, 1),
                             **m})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    settings = {"crossing_iou": cfg.crossing_iou, "drop": cfg.drop, "jitter": cfg.jitter,
                "false_per_frame": cfg.false_per_frame, "seed": cfg.seed, "model": cfg.model,
                "tracker": dataclasses.asdict(cfg.tracker)}
    if cfg.table:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.table)), exist_ok=True)
        write_atomic(cfg.table, markdown_table(cfg, rows))
    return {"settings": settings, "rows": rows}


def main(cfg: TrackingEvalConfig) -> dict:
    """Loads --model when an appearance mode needs it and runs `evaluate_tracking`."""
    embed = None
    if "reid" in cfg.appearance:
        from keras_crf_reid.serving.inference import load
        from keras_crf_reid.tracking.pipeline import model_appearance
        embed = model_appearance(load(cfg.model))
    return evaluate_tracking(cfg, embed)


if __name__ == "__main__":
    cli.define_flags(TrackingEvalConfig)
    cli.run_json(TrackingEvalConfig, main)
