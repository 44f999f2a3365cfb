"""Association settings of the tracker (keras_crf_reid.tracking.tracker); no TensorFlow.

The defaults were chosen one at a time on MOT15 PETS09-S2L1's public detections with
saved_models/crf_mars version 2 (docs/tracking.md; TUD-Campus and TUD-Stadtmitte held out) and
re-checked on PETS09 with version 3; box_blend alone was chosen on TUD-Campus (PETS09 and
TUD-Stadtmitte held out for it). The appearance thresholds are cosine distances of the model:
check them when the model changes. `track` and `find_person` generate their flags from here.
"""
from __future__ import annotations

from keras_crf_reid.options import config_class, option


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
                or self.low_iou_min > 1):
            raise ValueError(f"--appearance_weight and --box_blend must be in [0, 1] and "
                             f"--iou_min, --low_iou_min in (0, 1]; got {self.appearance_weight}, "
                             f"{self.box_blend}, {self.iou_min}, {self.low_iou_min}")
