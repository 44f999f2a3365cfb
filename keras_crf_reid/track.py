"""Tracks people through a video from its per-frame detections, with the re-id model as
appearance (DeepSORT-style; keras_crf_reid.tracking):

    python -m keras_crf_reid.track --video=vtest.avi --detections=det.txt --out=runs/track \
        [--appearance=reid|none] [--model=saved_models/crf_mars_sample]

Writes OUT/tracks.txt (MOTChallenge result format) and OUT/tracklets/<track id>/NNNN.jpg
(64x128 crops named by frame number), ready for `keras_crf_reid.serving.search`.
"""
from __future__ import annotations

import logging
import os
import sys

from absl import app, flags

from keras_crf_reid import cli

DEFAULT_MODEL = "saved_models/crf_mars"


def define_tracking_flags() -> None:
    """Flags shared by track and find_person (tracker defaults from TrackerConfig)."""
    from keras_crf_reid.tracking.tracker import TrackerConfig

    flags.DEFINE_string("video", None, "Video file (anything OpenCV decodes).")
    flags.DEFINE_string("detections", None, "MOTChallenge detection file: frame, -1, x, y, w, h, "
                        "score, ... (frames from 1).")
    flags.DEFINE_string("out", None, "Output folder: tracks.txt and tracklets/<id>/NNNN.jpg.")
    flags.DEFINE_string("model", DEFAULT_MODEL, "Re-id model (SavedModel or .keras) for "
                        "--appearance=reid.")
    flags.DEFINE_float("min_score", float("-inf"), "Ignore detections scored below this.")
    d = TrackerConfig()
    flags.DEFINE_float("appearance_weight", d.appearance_weight, "Weight of the appearance "
                       "distance in the assignment cost (the rest is 1 - IoU).")
    flags.DEFINE_float("max_cos", d.max_cos, "Largest cosine distance of a match that overlaps "
                       "the track's predicted box (IoU >= iou_min).")
    flags.DEFINE_float("reacquire_cos", d.reacquire_cos, "Largest cosine distance of a match "
                       "inside the track's motion gate without that overlap.")
    flags.DEFINE_float("iou_min", d.iou_min, "Least IoU of an overlap match.")
    flags.DEFINE_integer("max_age", d.max_age, "Frames a lost track is kept.", lower_bound=1)
    flags.DEFINE_integer("n_init", d.n_init, "Matches before a track is confirmed.", lower_bound=1)
    for name in ("video", "detections", "out"):
        flags.mark_flag_as_required(name)


def tracker_config(f=flags.FLAGS):
    from keras_crf_reid.tracking.tracker import TrackerConfig
    return TrackerConfig(appearance_weight=f.appearance_weight, max_cos=f.max_cos,
                         reacquire_cos=f.reacquire_cos, iou_min=f.iou_min, max_age=f.max_age,
                         n_init=f.n_init)


def run_tracking(f=flags.FLAGS, embedder=None) -> dict:
    """Reads the flags' detections, tracks the video (with the loaded re-id model `embedder` as
    appearance, or IoU and motion only when None), writes --out; returns track_video's dict."""
    from keras_crf_reid.tracking.detections import read_mot
    from keras_crf_reid.tracking.pipeline import model_appearance, track_video

    dets = read_mot(f.detections, f.min_score)
    embed = model_appearance(embedder) if embedder is not None else None
    os.makedirs(f.out, exist_ok=True)
    return track_video(f.video, dets, embed, tracker_config(f), f.out, progress=True)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        import keras_crf_reid
        f = flags.FLAGS
        out = run_tracking(f, keras_crf_reid.load(f.model) if f.appearance == "reid" else None)
    except (ValueError, OSError) as e:
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
