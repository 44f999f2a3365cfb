"""Decoding every frame of a dataset once, to drop unreadable frames and tracklets before use."""
from __future__ import annotations

import dataclasses

from keras_crf_reid.datasets.base import ReidDataset, Split, Tracklet, check_two_cameras, warn_skipped
from keras_crf_reid.datasets.frames import BadImageError, read_frame


def validate_frames(dataset: ReidDataset, on_bad_image: str = "skip") -> ReidDataset:
    """Decodes every frame once (before caching) and returns the dataset without bad frames.

    on_bad_image: "skip" drops undecodable frames, and tracklets left empty, recording each in
    `skipped` (fixed splits are re-indexed to match); "fail" raises BadImageError on the first.
    """
    if on_bad_image not in ("skip", "fail"):
        raise ValueError(f"on_bad_image must be 'skip' or 'fail', got {on_bad_image!r}")
    skipped = dict(dataset.skipped)
    bad: dict[str, str] = {}
    new_index: dict[int, int] = {}
    tracklets: list[Tracklet] = []
    for i, t in enumerate(dataset.tracklets):
        good = []
        for path in t.frames:
            try:
                read_frame(path)
                good.append(path)
            except BadImageError as e:
                if on_bad_image == "fail":
                    raise
                bad[path] = str(e)
        if not good:
            bad[t.key] = f"tracklet of person {t.pid}, camera {t.camid}: no decodable frame left"
            continue
        new_index[i] = len(tracklets)
        tracklets.append(t if len(good) == len(t.frames) else dataclasses.replace(t, frames=tuple(good)))
    if not bad:
        return dataset
    skipped.update(bad)
    warn_skipped(f"{dataset.root}: undecodable frames", bad)
    splits = None
    if dataset.fixed_splits is not None:
        splits = [Split(*(tuple(new_index[i] for i in part if i in new_index)
                          for part in (s.train, s.query, s.gallery)))
                  for s in dataset.fixed_splits]
    out = dataclasses.replace(dataset, tracklets=tracklets, fixed_splits=splits, skipped=skipped)
    if out.probe_cam is not None:
        check_two_cameras(out.tracklets, out.root)
    return out
