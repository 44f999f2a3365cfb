"""Crops one annotated person from a video into a tracklet folder (64x128 JPEGs named by frame),
e.g. a query for keras_crf_reid.find_person from the first half of a sequence:

    .venv/bin/python tools/crop_person.py --video=../shared/realdata/mot15/PETS09-S2L1/vtest.avi \
        --gt=../shared/realdata/mot15/PETS09-S2L1/gt/gt.txt --id=1 --last_frame=397 --every=8 \
        --out=runs/find/query_person1
"""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_crf_reid.tracking import video  # noqa: E402
from keras_crf_reid.tracking.detections import read_mot  # noqa: E402

flags.DEFINE_string("video", None, "Video file.")
flags.DEFINE_string("gt", None, "MOTChallenge ground-truth file with identities.")
flags.DEFINE_integer("id", None, "Identity to crop.")
flags.DEFINE_integer("first_frame", 1, "First frame used.")
flags.DEFINE_integer("last_frame", 10 ** 9, "Last frame used.")
flags.DEFINE_integer("every", 1, "Keep every n-th of the person's boxes.", lower_bound=1)
flags.DEFINE_string("out", None, "Output folder.")
for _name in ("video", "gt", "id", "out"):
    flags.mark_flag_as_required(_name)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    gt = read_mot(FLAGS.gt)
    rows = np.flatnonzero((gt.id == FLAGS.id) & (gt.frame >= FLAGS.first_frame)
                          & (gt.frame <= FLAGS.last_frame))[::FLAGS.every]
    if not len(rows):
        raise SystemExit(f"error: {FLAGS.gt} has no box of id {FLAGS.id} in frames "
                         f"{FLAGS.first_frame}-{FLAGS.last_frame}")
    wanted = {int(gt.frame[r]): gt.boxes[r] for r in rows}
    os.makedirs(FLAGS.out, exist_ok=True)
    for n, rgb in video.read_video(FLAGS.video):
        if n in wanted:
            cv2.imwrite(os.path.join(FLAGS.out, f"{n:04d}.jpg"),
                        cv2.cvtColor(video.crop(rgb, wanted[n]), cv2.COLOR_RGB2BGR))
        if n >= max(wanted):
            break
    print(f"{len(wanted)} crops of id {FLAGS.id} written to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
