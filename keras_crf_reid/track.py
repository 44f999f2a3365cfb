"""Tracks people through a video from its per-frame detections, with the re-id model as
appearance (DeepSORT-style; keras_crf_reid.tracking):

    python -m keras_crf_reid.track --video=vtest.avi --detections=det.txt --out=runs/track \
        [--appearance=reid|none] [--model=saved_models/crf_mars]
    python -m keras_crf_reid.track --video=vtest.avi --detector=hog --out=runs/track

Writes OUT/tracks.txt (MOTChallenge result format) and OUT/tracklets/<track id>/NNNN.jpg
(64x128 crops named by frame number), ready for `keras_crf_reid.serving.search`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys

import numpy as np

from absl import app, flags

from keras_crf_reid import cli
from keras_crf_reid.configs.tracker import DEFAULT_MODEL, TrackerConfig
from keras_crf_reid.options import flag_name


def define_tracking_flags() -> None:
    """Flags shared by track and find_person (the tracker's generated from TrackerConfig)."""

    flags.DEFINE_string("video", None, "Video file (anything OpenCV decodes).")
    flags.DEFINE_string("detections", None, "MOTChallenge detection file: frame, -1, x, y, w, h, "
                        "score, ... (frames from 1). Or --detector.")
    flags.DEFINE_enum("detector", None, ["hog"], "Detect the people instead of reading "
                      "--detections: hog (OpenCV 4's HOG people detector; writes "
                      "OUT/detections.txt).")
    flags.DEFINE_string("out", None, "Output folder: tracks.txt and tracklets/<id>/NNNN.jpg.")
    flags.DEFINE_string("model", DEFAULT_MODEL, "Re-id model (SavedModel or .keras) for "
                        "--appearance=reid.")
    flags.DEFINE_float("min_score", float("-inf"), "Ignore detections scored below this.")
    cli.define_flags(TrackerConfig)
    for name in ("video", "out"):
        flags.mark_flag_as_required(name)
    flags.register_multi_flags_validator(
        ["detections", "detector"], lambda d: (d["detections"] is None) != (d["detector"] is None),
        message="give exactly one of --detections=FILE and --detector=NAME")


def tracker_config(f=flags.FLAGS) -> TrackerConfig:
    """The TrackerConfig the flags describe (`f`: parsed flags, or any object with those
    attributes; settings it lacks keep their defaults)."""
    return TrackerConfig(**{field.name: getattr(f, flag_name(field))
                            for field in dataclasses.fields(TrackerConfig)
                            if hasattr(f, flag_name(field))})


def run_tracking(f=flags.FLAGS, embedder=None) -> dict:
    """Reads the flags' detections, tracks the video (with the loaded re-id model `embedder` as
    appearance, or IoU and motion only when None), writes --out; returns track_video's dict."""
    from keras_crf_reid.tracking import video
    from keras_crf_reid.tracking.detections import drop_outside, read_mot, write_mot
    from keras_crf_reid.tracking.pipeline import model_appearance, track_video

    os.makedirs(f.out, exist_ok=True)
    if f.detector:
        from keras_crf_reid.tracking.detector import detect_video
        dets = detect_video(f.video, f.detector, progress=True)
        write_mot(os.path.join(f.out, "detections.txt"), dets)
        dets = dets.subset(np.flatnonzero(dets.score >= f.min_score))
    else:
        dets = drop_outside(read_mot(f.detections, f.min_score), video.frame_size(f.video))
    embed = model_appearance(embedder) if embedder is not None else None
    return track_video(f.video, dets, embed, tracker_config(f), f.out, progress=True)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        import keras_crf_reid
        f = flags.FLAGS
        out = run_tracking(f, keras_crf_reid.load(f.model) if f.appearance == "reid" else None)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    print(f"{out['num_tracks']} tracks over {out['frames']} frames written to "
          f"{os.path.join(flags.FLAGS.out, 'tracks.txt')} and {os.path.join(flags.FLAGS.out, 'tracklets')}/")
    return 0


if __name__ == "__main__":
    define_tracking_flags()
    flags.DEFINE_enum("appearance", "reid", ["reid", "none"], "Appearance cost: the re-id model's "
                      "embeddings, or none (IoU and motion only).")
    cli.run(main)
