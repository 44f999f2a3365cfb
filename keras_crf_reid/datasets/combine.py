"""Several datasets as one: pooled two-camera folders, or a training set joined to an evaluation set.

Person ids of a dataset added after others move past theirs by one scheme (`pid_offset`: the
first multiple of PID_STRIDE above every id so far; junk ids stay junk), so no two folders
share an identity. A joined dataset keeps the training tracklets first, then the evaluation
ones, over a `JoinedStore` that reads each part from its own cache, so every split is an
ordinary `Split` of indices (see splits.cross_dataset_splits).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

import numpy as np

from keras_crf_reid.datasets.base import JUNK_PID, ReidDataset, Tracklet, fingerprint
from keras_crf_reid.datasets.store import TrackletStore

PID_STRIDE = 10000


def pid_offset(pids: Iterable[int]) -> int:
    """The first multiple of PID_STRIDE above every (non-junk) id of `pids`; 0 for none."""
    top = max((p for p in pids if p != JUNK_PID), default=-1)
    return PID_STRIDE * (top // PID_STRIDE + 1)


def shift_pids(tracklets: Sequence[Tracklet], offset: int) -> list[Tracklet]:
    """The tracklets with person id p moved to offset + p (junk ids stay junk)."""
    return [t if t.pid == JUNK_PID else dataclasses.replace(t, pid=offset + t.pid)
            for t in tracklets]


def pool_datasets(parts: Sequence[ReidDataset], name: str) -> ReidDataset:
    """Two-camera datasets (cam 0 probe, cam 1 gallery, no fixed splits) pooled into one named
    `name`; the ids of each part move past those of the parts before it."""
    tracklets, skipped = [], {}
    for d in parts:
        if d.probe_cam != 0 or d.gallery_cam != 1 or d.fixed_splits:
            raise ValueError(f"--data_root: {d.root} has no cam 0 / cam 1 protocol; only "
                             f"two-camera datasets without fixed splits can be pooled")
        tracklets += shift_pids(d.tracklets, pid_offset(t.pid for t in tracklets))
        skipped.update(d.skipped)
    return ReidDataset(name=name, root=",".join(d.root for d in parts), tracklets=tracklets,
                       skipped=skipped)


def join_datasets(train: ReidDataset, evaluation: ReidDataset) -> ReidDataset:
    """Training tracklets, then evaluation tracklets with person ids moved past the training ones,
    so no evaluation person can share an identity with a training one."""
    moved = shift_pids(evaluation.tracklets, pid_offset(train.pids))
    return ReidDataset(name=f"{train.name}-to-{evaluation.name}",
                       root=f"{train.root} (train), {evaluation.root} (eval)",
                       tracklets=list(train.tracklets) + moved,
                       probe_cam=evaluation.probe_cam, gallery_cam=evaluation.gallery_cam,
                       skipped={**train.skipped, **evaluation.skipped})


def _roots(dataset: ReidDataset) -> list[str]:
    return [os.path.realpath(r) for r in dataset.root.split(",") if r]


def check_separate(train: ReidDataset, evaluation: ReidDataset) -> None:
    """Refuses an evaluation set that is (part of) the training set: same, nested or same files."""
    for e in _roots(evaluation):
        for t in _roots(train):
            if e == t or os.path.commonpath([e, t]) in (e, t):
                how = "is" if e == t else "overlaps"
                raise ValueError(f"--eval_data_root {e} {how} the training folder --data_root {t}; "
                                 f"evaluate on a separate folder of unseen people (or leave "
                                 f"--eval_data_root empty to split --data_root)")
    if fingerprint(train.tracklets, portable=True) == fingerprint(evaluation.tracklets, portable=True):
        raise ValueError(f"--eval_data_root {evaluation.root} holds the same frames as --data_root "
                         f"{train.root} (a copy); evaluate on a separate folder of unseen people")


class JoinedStore(TrackletStore):
    """The store of a joined dataset: index i < len(first) reads `first`, the rest `second`,
    each from its own cache (the same cache a run on either dataset alone uses)."""

    def __init__(self, dataset: ReidDataset, first: TrackletStore, second: TrackletStore):
        super().__init__(dataset, None)
        self.parts = (first, second)

    def _part(self, i: int) -> tuple[TrackletStore, int]:
        n = len(self.parts[0])
        if not 0 <= i < len(self):
            raise IndexError(f"tracklet index {i} out of range of {len(self)}")
        return (self.parts[0], i) if i < n else (self.parts[1], i - n)

    def build(self, workers: int = 2, progress: bool = True) -> "JoinedStore":
        for p in self.parts:
            p.build(workers, progress)
        return self

    def get(self, i: int):
        store, j = self._part(i)
        return store.get(j)

    def lengths(self) -> np.ndarray:
        return np.concatenate([p.lengths() for p in self.parts])
