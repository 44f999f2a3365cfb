"""Tracking accuracy on MOT15 sequences, tracked with --appearance=none and =reid and scored by
py-motmetrics (MOTA, IDF1, identity switches; IoU 0.5, ground-truth rows with flag 0 ignored).
The main benchmark is MOT15's public detections (det/det.txt, the boxes SORT's table was
measured on), beside SORT's and DeepSORT's rows on the same boxes; also ground-truth boxes
given as detections (identities withheld), degraded (seeded) or with crossings dropped.
Prints JSON; --table writes markdown.

    .venv/bin/python tools/eval_tracking.py --table=runs/tracking/table.md
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
from keras_crf_reid.track import DEFAULT_MODEL  # noqa: E402
from keras_crf_reid.tracking.pipeline import (embed_detections, model_appearance,  # noqa: E402
                                              track_features, track_video)
from keras_crf_reid.configs.tracker import TrackerConfig  # noqa: E402

SEQUENCES = {"PETS09-S2L1": "vtest.avi", "TUD-Campus": "TUD-Campus.mp4",
             "TUD-Stadtmitte": "TUD-Stadtmitte.mp4"}
flags.DEFINE_string("mot_root", "../shared/realdata/mot15", "Folder of the MOT15 sequences.")
flags.DEFINE_list("sequences", list(SEQUENCES), "Sequences to run.")
flags.DEFINE_string("model", DEFAULT_MODEL, "Re-id model for --appearance=reid.")
flags.DEFINE_list("appearance", ["none", "reid"], "Appearance modes compared.")
flags.DEFINE_list("detections", ["public"], "Detection sets: public (det/det.txt), gt, "
                  "degraded, crossings.")
flags.DEFINE_string("config", "{}", "JSON of TrackerConfig fields changed from the defaults, "
                    "e.g. '{\"max_cos\": 0.6}'.")
flags.DEFINE_string("features_dir", None, "Cache the per-detection embeddings here "
                    "(<model>_<sequence>_<detections>.npy) and track from them without the video: "
                    "for comparing settings (the seconds column then excludes decoding).")
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


# the same public detections given to the reference trackers (issue 28; py-motmetrics, IoU 0.5)
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


def _inputs(seq_dir: str, gt: Detections) -> dict[str, Detections]:
    out = {}
    for name in FLAGS.detections:
        if name == "public":
            out[name] = read_mot(os.path.join(seq_dir, "det", "det.txt"))
        elif name == "gt":
            out[name] = withheld(gt)
        elif name == "degraded":
            out[name] = degrade(gt, _frame_size(seq_dir), FLAGS.drop, FLAGS.jitter,
                                FLAGS.false_per_frame, FLAGS.seed)
        elif name == "crossings":
            out[name] = drop_crossings(gt, FLAGS.crossing_iou)
        else:
            raise app.UsageError(f"--detections: unknown set {name!r} (public, gt, degraded, "
                                 f"crossings)")
    return out


def _features(embed, video: str, dets: Detections, key: str) -> np.ndarray:
    path = os.path.join(FLAGS.features_dir, f"{key}.npy")
    if os.path.isfile(path):
        feats = np.load(path)
        if len(feats) == len(dets):
            return feats
    feats = embed_detections(video, dets, embed, progress=True)
    os.makedirs(FLAGS.features_dir, exist_ok=True)
    np.save(path, feats)
    return feats


def main(argv):
    del argv
    if FLAGS.detections_out:
        os.makedirs(FLAGS.detections_out, exist_ok=True)
    try:
        config = TrackerConfig(**{**TrackerConfig().__dict__, **json.loads(FLAGS.config)})
    except (ValueError, TypeError) as e:
        raise app.UsageError(f"--config={FLAGS.config}: {e}") from e
    embed = (model_appearance(keras_crf_reid.load(FLAGS.model)) if "reid" in FLAGS.appearance
             else None)
    rows = []
    for seq in FLAGS.sequences:
        seq_dir = os.path.join(FLAGS.mot_root, seq)
        gt = read_mot(os.path.join(seq_dir, "gt", "gt.txt"))
        video = os.path.join(seq_dir, SEQUENCES[seq])
        inputs = _inputs(seq_dir, gt)
        if FLAGS.detections_out and "degraded" in inputs:
            write_mot(os.path.join(FLAGS.detections_out, f"{seq}_degraded.txt"), inputs["degraded"])
        for cond, dets in inputs.items():
            for mode in FLAGS.appearance:
                t = time.time()
                if FLAGS.features_dir:
                    key = f"{os.path.basename(os.path.normpath(FLAGS.model))}_{seq}_{cond}"
                    feats = _features(embed, video, dets, key) if mode == "reid" else None
                    t = time.time()
                    out = track_features(dets, feats, _frame_size(seq_dir), config)
                else:
                    out = track_video(video, dets, embed if mode == "reid" else None, config,
                                      progress=True)
                m = mot_metrics(gt, out["tracks"])
                rows.append({"sequence": seq, "detections": CONDITIONS[cond], "appearance": mode,
                             "tracks": out["num_tracks"], "seconds": round(time.time() - t, 1),
                             **m})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    settings = {"crossing_iou": FLAGS.crossing_iou, "drop": FLAGS.drop, "jitter": FLAGS.jitter,
                "false_per_frame": FLAGS.false_per_frame, "seed": FLAGS.seed, "model": FLAGS.model,
                "tracker": config.__dict__}
    print(json.dumps({"settings": settings, "rows": rows}, indent=1))
    if FLAGS.table:
        head = ("| sequence | detections | tracker | MOTA | IDF1 | ID switches | tracks | "
                "recall | precision | s |\n|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|\n")
        body = ""
        for seq in FLAGS.sequences:
            if "public" in FLAGS.detections:
                for name in ("SORT", "DeepSORT"):
                    mota, idf1, sw, p, r = REFERENCE[(seq, name)]
                    body += (f"| {seq} | public | {name} (issue 28) | {mota:.3f} | {idf1:.3f} | "
                             f"{sw} | | {r:.3f} | {p:.3f} | |\n")
            body += "".join(f"| {r['sequence']} | {r['detections']} | {r['appearance']} | "
                            f"{r['mota']:.3f} | {r['idf1']:.3f} | {int(r['num_switches'])} | "
                            f"{r['tracks']} | {r['recall']:.3f} | {r['precision']:.3f} | "
                            f"{r['seconds']:.0f} |\n" for r in rows if r["sequence"] == seq)
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.table)), exist_ok=True)
        write_atomic(FLAGS.table, head + body)


if __name__ == "__main__":
    app.run(main)
