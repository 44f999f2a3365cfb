"""CLEAR-MOT and identity metrics (MOTA, IDF1, ID switches, ...) of tracks against ground truth,
with py-motmetrics (the MOT benchmark's definitions; match when IoU >= 0.5)."""
from __future__ import annotations

import numpy as np

from keras_crf_reid.tracking.detections import Detections

METRICS = ("mota", "idf1", "num_switches", "motp", "precision", "recall", "num_fragmentations",
           "mostly_tracked", "num_unique_objects")


def _motmetrics():
    # py-motmetrics 1.4 calls np.asfarray, which NumPy 2 removed; this is the one shim for it
    if not hasattr(np, "asfarray"):
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)
    try:
        import motmetrics
    except ImportError as e:
        raise ImportError("tracking metrics need py-motmetrics: pip install motmetrics "
                          "(or pip install 'keras_crf_reid[track]')") from e
    return motmetrics


def mot_metrics(gt: Detections, tracks: Detections, iou: float = 0.5) -> dict:
    """{metric: value} of `tracks` against `gt` over the frames of gt. Ground-truth rows whose
    7th column (read as score) is 0 are ignored, as the benchmark does (MOT15's PETS09-S2L1 has
    174 such rows)."""
    mm = _motmetrics()
    gt = gt.subset(np.flatnonzero(gt.score != 0))
    acc = mm.MOTAccumulator(auto_id=False)
    for f in np.unique(gt.frame):
        g = gt.frame == f
        t = tracks.frame == f
        dist = mm.distances.iou_matrix(gt.boxes[g], tracks.boxes[t], max_iou=1.0 - iou)
        acc.update(gt.id[g].tolist(), tracks.id[t].tolist(), dist, frameid=int(f))
    summary = mm.metrics.create().compute(acc, metrics=list(METRICS), name="seq")
    return {k: float(summary[k].iloc[0]) for k in METRICS}
