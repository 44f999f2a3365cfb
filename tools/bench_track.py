"""Speed of `keras_crf_reid.track` on PETS09-S2L1 (768x576, 795 frames, ~6 public detections a
frame): frames per second of the whole tracking (decoding, cropping, embedding, association),
and of decoding alone; prints one JSON object.

    .venv/bin/python tools/bench_track.py [--model=saved_models/crf_mars] [--embed=ambiguous]
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_crf_reid.configs.tracker import DEFAULT_MODEL  # noqa: E402

SEQ = "../shared/realdata/mot15/PETS09-S2L1"
flags.DEFINE_string("video", f"{SEQ}/vtest.avi", "Video tracked.")
flags.DEFINE_string("detections", f"{SEQ}/det/det.txt", "Its detections (MOTChallenge).")
flags.DEFINE_string("gt", f"{SEQ}/gt/gt.txt", "Ground truth to score the run ('' : none).")
flags.DEFINE_string("model", DEFAULT_MODEL, "Re-id model ('' : IoU and motion only).")
flags.DEFINE_enum("embed", "ambiguous", ["all", "ambiguous"], "Which detections are embedded "
                  "(see keras_crf_reid.tracking.pipeline.track_video).")
flags.DEFINE_integer("frames", 0, "Track only the first N frames (0: all).", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np

    import keras_crf_reid
    from keras_crf_reid.tracking import video
    from keras_crf_reid.tracking.detections import read_mot
    from keras_crf_reid.tracking.pipeline import model_appearance, track_video

    dets = read_mot(FLAGS.detections)
    if FLAGS.frames:
        dets = dets.subset(np.flatnonzero(dets.frame <= FLAGS.frames))
    t = time.perf_counter()
    decoded = 0
    for n, _ in video.read_video(FLAGS.video):
        decoded = n
        if n == FLAGS.frames:
            break
    decode_s = time.perf_counter() - t
    embed = None
    if FLAGS.model:
        embed = model_appearance(keras_crf_reid.load(FLAGS.model))
        embed(np.zeros((6, 128, 64, 3), np.uint8))  # graph traced before the clock starts
    calls = {"calls": 0, "crops": 0}

    def counted(crops):
        calls["calls"] += 1
        calls["crops"] += len(crops)
        return embed(crops)

    t = time.perf_counter()
    out = track_video(FLAGS.video, dets, counted if embed else None, embed_mode=FLAGS.embed,
                      max_frames=FLAGS.frames or None)
    track_s = time.perf_counter() - t
    result = {"video": FLAGS.video, "frames": out["frames"], "detections": len(dets),
              "model": FLAGS.model or None, "embed": FLAGS.embed,
              "frames_per_s": round(out["frames"] / track_s, 1),
              "decode_only_frames_per_s": round(decoded / decode_s, 1),
              "embedded_crops": calls["crops"], "embed_calls": calls["calls"],
              "load_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    if FLAGS.gt:
        from keras_crf_reid.tracking.metrics import mot_metrics
        gt = read_mot(FLAGS.gt)
        m = mot_metrics(gt.subset(np.flatnonzero(gt.frame <= out["frames"])), out["tracks"])
        result.update({k: round(m[k], 3) for k in ("mota", "idf1", "num_switches")})
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
