"""Crops one annotated person from a video into a tracklet folder (64x128 JPEGs named by frame),
e.g. a query for keras_crf_reid.find_person from the first half of a sequence:

    python -m keras_crf_reid.tracking.crop_person \
        --video=../shared/realdata/mot15/PETS09-S2L1/vtest.avi \
        --gt=../shared/realdata/mot15/PETS09-S2L1/gt/gt.txt --id=1 --last_frame=397 --every=8 \
        --out=runs/find/query_person1

Prints JSON (the folder and the frames cropped). Every flag and its default:
keras_crf_reid.configs.tracker.CropConfig.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from keras_crf_reid import cli
from keras_crf_reid.configs.tracker import CropConfig
from keras_crf_reid.tracking import video
from keras_crf_reid.tracking.detections import Detections, read_mot


def crop_person(video_path: str, gt: Detections, person_id: int, out_dir: str,
                first_frame: int = 1, last_frame: int | None = None, every: int = 1) -> list[int]:
    """Writes every `every`-th box of identity `person_id` in frames first_frame..last_frame of
    the video to out_dir/NNNN.jpg (NNNN: the frame); returns those frames. ValueError when the
    identity has no box there."""
    last = np.inf if last_frame is None else last_frame
    rows = np.flatnonzero((gt.id == person_id) & (gt.frame >= first_frame)
                          & (gt.frame <= last))[::every]
    if not len(rows):
        raise ValueError(f"no box of id {person_id} in frames {first_frame}-"
                         f"{'end' if last_frame is None else last_frame}")
    wanted = {int(gt.frame[r]): gt.boxes[r] for r in rows}
    os.makedirs(out_dir, exist_ok=True)
    for n, rgb in video.read_video(video_path):
        if n in wanted:
            cv2.imwrite(os.path.join(out_dir, f"{n:04d}.jpg"),
                        cv2.cvtColor(video.crop(rgb, wanted[n]), cv2.COLOR_RGB2BGR))
        if n >= max(wanted):
            break
    return sorted(wanted)


def run(cfg: CropConfig) -> dict:
    """Crops cfg.id from cfg.video into cfg.out; returns {"out", "id", "crops", "frames"}."""
    gt = read_mot(cfg.gt)
    try:
        frames = crop_person(cfg.video, gt, cfg.id, cfg.out, cfg.first_frame, cfg.last_frame,
                             cfg.every)
    except ValueError as e:
        raise ValueError(f"{cfg.gt}: {e}") from None
    return {"out": cfg.out, "id": cfg.id, "crops": len(frames), "frames": frames}


if __name__ == "__main__":
    cli.define_flags(CropConfig)
    cli.run_json(CropConfig, run)
