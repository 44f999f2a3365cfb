"""Dropping unreadable frames and tracklets from a dataset before its splits are made.

Two ways in: `validate_frames` decodes every frame itself (for runs without a frame cache);
`drop_tracklets` removes the tracklets the frame cache found empty while it decoded them
(`TrackletStore.empty`), so a cached run decodes its frames only once.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Mapping

from keras_crf_reid.datasets.base import (DatasetError, ReidDataset, Split, Tracklet,
                                          check_two_cameras, warn_skipped)
from keras_crf_reid.datasets.frames import BadImageError, read_frame


class EmptyTrackletError(DatasetError):
    """A tracklet none of whose frames could be decoded (skipped with --on_bad_image=skip)."""


def _reindexed(dataset: ReidDataset, new_index: dict[int, int], tracklets: list[Tracklet],
               bad: dict[str, str]) -> ReidDataset:
    """`dataset` with `tracklets` (old index i now new_index[i]) and `bad` added to skipped."""
    splits = None
    if dataset.fixed_splits is not None:
        splits = [Split(*(tuple(new_index[i] for i in part if i in new_index)
                          for part in (s.train, s.query, s.gallery)))
                  for s in dataset.fixed_splits]
    out = dataclasses.replace(dataset, tracklets=tracklets, fixed_splits=splits,
                              skipped={**dataset.skipped, **bad})
    if not out.tracklets:
        raise DatasetError(f"{dataset.root}: no tracklet has a readable frame")
    if out.probe_cam is not None:
        check_two_cameras(out.tracklets, out.root)
    return out


def _where(t: Tracklet, shared: set[str]) -> str:
    """Where a dropped tracklet is reported: its folder, or its first frame if the folder holds
    other tracklets too (MARS)."""
    if not t.frames:
        return t.key
    folder = os.path.dirname(t.frames[0])
    return t.frames[0] if folder in shared else folder


def drop_tracklets(dataset: ReidDataset, empty: Mapping[int, str]) -> tuple[ReidDataset, list[int]]:
    """The dataset without tracklets `empty` (index -> reason), and the old indices it keeps.

    Each dropped tracklet is recorded in `skipped` under its folder. On a two-camera dataset a
    person left without a tracklet in the probe or the gallery camera is dropped altogether
    (as the readers drop persons seen by one camera only). Fixed splits are re-indexed.
    """
    if not empty:
        return dataset, list(range(len(dataset.tracklets)))
    folders = Counter(os.path.dirname(t.frames[0]) for t in dataset.tracklets if t.frames)
    shared = {f for f, n in folders.items() if n > 1}
    bad = {_where(dataset.tracklets[i], shared): reason for i, reason in empty.items()}
    drop = set(empty)
    if dataset.probe_cam is not None and dataset.gallery_cam is not None:
        cams: dict[int, set[int]] = {}
        for i, t in enumerate(dataset.tracklets):
            if i not in drop:
                cams.setdefault(t.pid, set()).add(t.camid)
        for pid in sorted({dataset.tracklets[i].pid for i in empty}):
            missing = {dataset.probe_cam, dataset.gallery_cam} - cams.get(pid, set())
            if not missing:
                continue
            for i, t in enumerate(dataset.tracklets):
                if t.pid == pid and i not in drop:
                    drop.add(i)
                    bad[_where(t, shared)] = (f"person {pid} has no readable tracklet in camera "
                                      f"{min(missing)}; dropped from every camera")
    keep = [i for i in range(len(dataset.tracklets)) if i not in drop]
    warn_skipped(f"{dataset.root}: tracklets without a readable frame", bad)
    out = _reindexed(dataset, {i: j for j, i in enumerate(keep)},
                     [dataset.tracklets[i] for i in keep], bad)
    return out, keep


def validate_frames(dataset: ReidDataset, on_bad_image: str = "skip") -> ReidDataset:
    """Decodes every frame once (before caching) and returns the dataset without bad frames.

    on_bad_image: "skip" drops undecodable frames, and tracklets left empty, recording each in
    `skipped` (fixed splits are re-indexed to match); "fail" raises BadImageError on the first.
    """
    if on_bad_image not in ("skip", "fail"):
        raise ValueError(f"on_bad_image must be 'skip' or 'fail', got {on_bad_image!r}")
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
    warn_skipped(f"{dataset.root}: undecodable frames", bad)
    return _reindexed(dataset, new_index, tracklets, bad)
