"""Settings of tracking (keras_crf_reid.tracking); no TensorFlow.

`TrackerConfig` is the tracker's association. Its defaults were chosen one at a time on MOT15
PETS09-S2L1's public detections with saved_models/crf_mars version 2 (docs/tracking.md;
TUD-Campus and TUD-Stadtmitte held out) and re-checked on PETS09 with version 3; box_blend alone
was chosen on TUD-Campus (PETS09 and TUD-Stadtmitte held out for it); reacquire_ratio is the
largest value of a coarse grid keeping appearance >= IoU-only on the 12 detection sets (PETS09's
gt boxes aside, 0.0001 below; TUD-Stadtmitte's crossings decided it: docs/tracking.md, third
round); merged_aspect is the 95th percentile of one person's frame-to-frame aspect change on
PETS09's public boxes (tools/detection_aspect.py; fourth round). The appearance thresholds are
cosine distances of the model: check them when the model changes. `track` and `find_person`
generate their flags from here. `TrackingEvalConfig` is the MOT15 benchmark's command line
(keras_crf_reid.tracking.evaluate), `CropConfig` that of keras_crf_reid.tracking.crop_person.
"""
from __future__ import annotations

from keras_crf_reid.options import config_class, option

# a model base path: its highest version is used, so a new version needs no change here (the
# appearance thresholds in TrackerConfig are this model's distances: re-check them)
DEFAULT_MODEL = "saved_models/crf_mars"
# the MOT15 sequences scored, each with its video file in <mot_root>/<sequence>/
MOT15_VIDEOS = {"PETS09-S2L1": "vtest.avi", "TUD-Campus": "TUD-Campus.mp4",
                "TUD-Stadtmitte": "TUD-Stadtmitte.mp4"}
# detection sets: MOT15's public det/det.txt, ground-truth boxes (identities withheld), degraded
# ground truth, ground truth without the boxes where people cross
DETECTION_SETS = ("public", "gt", "degraded", "crossings")
APPEARANCES = ("none", "reid")


@config_class
class TrackerConfig:
    """How detections are matched to tracks, and when tracks start and end."""

    iou_min: float = option(0.2, "Least IoU of an overlap match.", lower_bound=1e-6)
    appearance_weight: float = option(0.3, "Weight of the appearance distance in the assignment "
                                      "cost (the rest is 1 - IoU).", lower_bound=0)
    max_cos: float = option(0.5, "Largest cosine distance of a match that overlaps the track's "
                            "predicted box (IoU >= iou_min).")
    reacquire_cos: float = option(0.2, "Largest cosine distance of a match inside the track's "
                                  "motion gate without that overlap.")
    reacquire_ratio: float = option(0.7, "A re-acquisition through the gate also needs its cosine "
                                    "distance <= this times the box's distance to every other "
                                    "lost track whose gate holds it (Lowe's ratio test: two "
                                    "lost people it could be, and appearance must tell which); "
                                    "a lost track's overlap match is refused where another "
                                    "track claiming the box is within this times its distance.",
                                    lower_bound=0)
    merged_aspect: float = option(1.3, "A box that two tracks overlap (IoU >= --iou_min) and that "
                                  "is this many times as wide, for its height, as its track's "
                                  "prediction is taken for two people in one box: it extends "
                                  "the track without updating its motion (one frame in a row).",
                                  lower_bound=1)
    max_age: int = option(30, "Frames a lost track is kept.", lower_bound=1)
    n_init: int = option(3, "Matches before a track is confirmed.", lower_bound=1)
    gallery_size: int = option(30, "Recent embeddings kept per track.", lower_bound=1)
    high_score: float = option(0.95, "Detections scored below this only extend tracks, by IoU >= "
                               "--low_iou_min after the confident ones are matched (ByteTrack's "
                               "second association); they start no track.")
    low_iou_min: float = option(0.3, "Least IoU of a low-score match.", lower_bound=1e-6)
    box_blend: float = option(0.5, "Reported box of a match: its track's Kalman box after the "
                              "update (0, as SORT reports) moved this share of the way to the "
                              "detection's box (1: the detection's own).", lower_bound=0)
    embed_every: int = option(5, "With lazy features: embed a track's box at least this often "
                              "(frames).", lower_bound=1)

    def __post_init__(self):
        if (self.appearance_weight > 1 or self.box_blend > 1 or self.iou_min > 1
                or self.low_iou_min > 1 or self.reacquire_ratio > 1):
            raise ValueError(f"--appearance_weight, --box_blend and --reacquire_ratio must be in "
                             f"[0, 1] and --iou_min, --low_iou_min in (0, 1]; got "
                             f"{self.appearance_weight}, {self.box_blend}, "
                             f"{self.reacquire_ratio}, {self.iou_min}, {self.low_iou_min}")


@config_class
class TrackingEvalConfig:
    """`python -m keras_crf_reid.tracking.evaluate`: the tracker scored on MOT15 sequences."""

    mot_root: str = option("../shared/realdata/mot15", "Folder of the MOT15 sequences.")
    sequences: tuple[str, ...] = option(tuple(MOT15_VIDEOS), "Sequences to run.",
                                        choices=tuple(MOT15_VIDEOS))
    model: str = option(DEFAULT_MODEL, "Re-id model for --appearance=reid.")
    appearance: tuple[str, ...] = option(APPEARANCES, "Appearance modes compared.",
                                         choices=APPEARANCES)
    detections: tuple[str, ...] = option(("public",), "Detection sets: public (det/det.txt), gt, "
                                         "degraded, crossings.", choices=DETECTION_SETS)
    features_dir: str | None = option(None, "Cache the per-detection embeddings here "
                                      "(<model>_<sequence>_<detections>.npy) and track from them "
                                      "without the video: for comparing settings (the seconds "
                                      "column then excludes decoding).")
    drop: float = option(0.2, "Degraded detections: share of ground-truth boxes dropped.",
                         lower_bound=0)
    jitter: float = option(0.05, "Degraded: position/size noise, std as a share of w and h.",
                           lower_bound=0)
    false_per_frame: float = option(0.5, "Degraded: mean false boxes per frame (Poisson).",
                                    lower_bound=0)
    seed: int = option(0, "Seed of the degradation.")
    crossing_iou: float = option(0.1, "Crossings dropped: boxes overlapping another person's by "
                                 "more than this IoU are removed.", lower_bound=0)
    table: str | None = option(None, "Also write the markdown table here.")
    detections_out: str | None = option(None, "Also write each sequence's degraded detections "
                                        "here as <sequence>_degraded.txt (MOTChallenge format).")
    tracker: TrackerConfig = TrackerConfig()


@config_class
class CropConfig:
    """`python -m keras_crf_reid.tracking.crop_person`: one annotated person's crops."""

    video: str | None = option(None, "Video file.", required=True)
    gt: str | None = option(None, "MOTChallenge ground-truth file with identities.", required=True)
    id: int | None = option(None, "Identity to crop.", required=True)
    first_frame: int = option(1, "First frame used.", lower_bound=1)
    last_frame: int = option(10 ** 9, "Last frame used.", lower_bound=1)
    every: int = option(1, "Keep every n-th of the person's boxes.", lower_bound=1)
    out: str | None = option(None, "Output folder.", required=True)
