"""Test-time augmentation settings: which views of a tracklet are averaged (see
keras_crf_reid.models.tta).

Shared by the run's evaluation and export (EvalConfig nests it) and by the export CLI, so a
checkpoint exported by hand wraps the model exactly as the run's own export does.
"""
from __future__ import annotations

from typing import Sequence

from keras_crf_reid.options import config_class, option

CROPS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
VIEWS = ("identity", "mirror") + tuple(f"{m}crop_{c}" for m in ("", "mirror_") for c in CROPS)
DEFAULT_VIEWS = ("identity", "mirror", "crop_center", "mirror_crop_center")
DEFAULT_CROP_SCALE = 0.9


def check_views(views: Sequence[str], crop_scale: float) -> tuple[str, ...]:
    """The views as a tuple; ValueError for unknown or repeated views or a bad crop scale."""
    views = tuple(views)
    bad = [v for v in views if v not in VIEWS]
    if not views or bad:
        raise ValueError(f"TTA views (--tta_views) must be a non-empty subset of {','.join(VIEWS)}, "
                         f"got {','.join(bad or views)}")
    if len(set(views)) != len(views):
        raise ValueError(f"TTA views (--tta_views) must not repeat, got {','.join(views)}")
    if not 0.1 <= crop_scale <= 1.0:
        raise ValueError(f"TTA crop scale (--tta_crop_scale) must be in [0.1, 1], got {crop_scale}")
    return views


@config_class
class TTAConfig:
    """Whether the scored (evaluated and exported) model averages views of its input, and which."""

    enabled: bool = option(False, "Test-time augmentation: average the embeddings of mirrored "
                           "and cropped views (evaluation and the exported model alike).",
                           flag="tta")
    views: tuple[str, ...] = option(DEFAULT_VIEWS, f"Views averaged with --tta, any of "
                                    f"{','.join(VIEWS)}.", flag="tta_views")
    crop_scale: float = option(DEFAULT_CROP_SCALE, "Side of the cropped views with --tta, as a "
                               "fraction of the frame side.", flag="tta_crop_scale")

    def __post_init__(self):
        check_views(self.views, self.crop_scale)
