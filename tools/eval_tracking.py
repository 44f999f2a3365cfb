"""Tracking accuracy on MOT15 sequences: ground-truth boxes given as detections (identities
withheld), and the same boxes degraded (seeded), tracked with --appearance=none and =reid;
MOTA, IDF1 and identity switches from py-motmetrics. Prints JSON; --table writes markdown.

    .venv/bin/python tools/eval_tracking.py --mot_root=../shared/realdata/mot15 \
        --model=saved_models/crf_mars_sample --table=runs/tracking/table.md
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_crf_reid  # noqa: E402
from keras_crf_reid.atomic import write_atomic  # noqa: E402
from keras_crf_reid.tracking.detections import Detections, from_arrays, read_mot, write_mot  # noqa: E402
from keras_crf_reid.tracking.metrics import mot_metrics  # noqa: E402
from keras_crf_reid.tracking.pipeline import model_appearance, track_video  # noqa: E402
from keras_crf_reid.tracking.tracker import TrackerConfig  # noqa: E402

SEQUENCES = {"PETS09-S2L1": "vtest.avi", "TUD-Campus": "TUD-Campus.mp4",
             "TUD-Stadtmitte": "TUD-Stadtmitte.mp4"}
flags.DEFINE_string("mot_root", "../shared/realdata/mot15", "Folder of the MOT15 sequences.")
flags.DEFINE_list("sequences", list(SEQUENCES), "Sequences to run.")
flags.DEFINE_string("model", "saved_models/crf_mars_sample", "Re-id model for --appearance=reid.")
flags.DEFINE_list("appearance", ["none", "reid"], "Appearance modes compared.")
flags.DEFINE_float("drop", 0.2, "Degraded detections: share of ground-truth boxes dropped.")
flags.DEFINE_float("jitter", 0.05, "Degraded: position/size noise, std as a share of w and h.")
flags.DEFINE_float("false_per_frame", 0.5, "Degraded: mean false boxes per frame (Poisson).")
flags.DEFINE_integer("seed", 0, "Seed of the degradation.")
flags.DEFINE_float("crossing_iou", 0.1, "Crossings dropped: boxes overlapping another person's "
                   "by more than this IoU are removed.")
flags.DEFINE_string("table", None, "Also write the markdown table here.")
flags.DEFINE_string("detections_out", None, "Also write each sequence's degraded detections "
                    "here as <sequence>_degraded.txt (MOTChallenge format).")
FLAGS = flags.FLAGS


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
    from keras_crf_reid.tracking.tracker import iou_matrix
    keep = np.ones(len(gt), bool)
    for f in np.unique(gt.frame):
        rows = np.flatnonzero(gt.frame == f)
        m = iou_matrix(gt.boxes[rows], gt.boxes[rows])
        np.fill_diagonal(m, 0)
        keep[rows[(m > iou).any(axis=1)]] = False
    return withheld(gt.subset(np.flatnonzero(keep)))


def _frame_size(seq_dir: str) -> tuple[int, int]:
    info = dict(line.strip().split("=", 1) for line in open(os.path.join(seq_dir, "seqinfo.ini"))
                if "=" in line)
    return int(info["imWidth"]), int(info["imHeight"])


def main(argv):
    del argv
    if FLAGS.detections_out:
        os.makedirs(FLAGS.detections_out, exist_ok=True)
    embed = model_appearance(keras_crf_reid.load(FLAGS.model)) if "reid" in FLAGS.appearance else None
    rows = []
    for seq in FLAGS.sequences:
        seq_dir = os.path.join(FLAGS.mot_root, seq)
        gt = read_mot(os.path.join(seq_dir, "gt", "gt.txt"))
        video = os.path.join(seq_dir, SEQUENCES[seq])
        inputs = {"gt boxes": withheld(gt),
                  "degraded": degrade(gt, _frame_size(seq_dir), FLAGS.drop, FLAGS.jitter,
                                      FLAGS.false_per_frame, FLAGS.seed),
                  "crossings dropped": drop_crossings(gt, FLAGS.crossing_iou)}
        if FLAGS.detections_out:
            write_mot(os.path.join(FLAGS.detections_out, f"{seq}_degraded.txt"), inputs["degraded"])
        for cond, dets in inputs.items():
            for mode in FLAGS.appearance:
                t = time.time()
                out = track_video(video, dets, embed if mode == "reid" else None, TrackerConfig(),
                                  progress=True)
                m = mot_metrics(gt, out["tracks"])
                rows.append({"sequence": seq, "detections": cond, "appearance": mode,
                             "tracks": out["num_tracks"], "seconds": round(time.time() - t, 1), **m})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    settings = {"crossing_iou": FLAGS.crossing_iou, "drop": FLAGS.drop, "jitter": FLAGS.jitter, "false_per_frame": FLAGS.false_per_frame,
                "seed": FLAGS.seed, "model": FLAGS.model}
    print(json.dumps({"settings": settings, "rows": rows}, indent=1))
    if FLAGS.table:
        head = ("| sequence | detections | appearance | MOTA | IDF1 | ID switches | tracks | "
                "recall | precision | s |\n|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|\n")
        body = "".join(f"| {r['sequence']} | {r['detections']} | {r['appearance']} | "
                       f"{r['mota']:.3f} | {r['idf1']:.3f} | {int(r['num_switches'])} | "
                       f"{r['tracks']} | {r['recall']:.3f} | {r['precision']:.3f} | "
                       f"{r['seconds']:.0f} |\n" for r in rows)
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.table)), exist_ok=True)
        write_atomic(FLAGS.table, head + body)


if __name__ == "__main__":
    app.run(main)
