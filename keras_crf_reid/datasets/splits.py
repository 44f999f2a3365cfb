"""Train / query / gallery splits: random identity splits for two-camera datasets, or fixed ones.

A random split shuffles the identities with a NumPy generator seeded by `seed + split index`,
so split k is the same whatever `num_splits` is, and trains on the first `train_fraction` of
them; the remaining (test) identities give the query (probe camera) and gallery (gallery
camera) tracklets, as in the PRID-2011 / iLIDS-VID protocol. Cross-dataset splits (a training
set joined to an evaluation set, see combine.join_datasets) draw the training identities the
same way and test on the evaluation set's own protocol.
"""
from __future__ import annotations

import numpy as np

from keras_crf_reid.datasets.base import JUNK_PID, DatasetError, ReidDataset, Split


def make_random_splits(dataset: ReidDataset, num_splits: int = 10, seed: int = 0,
                       train_fraction: float = 0.5) -> list[Split]:
    """`num_splits` random identity splits: train ids (all cameras), test ids (probe vs gallery)."""
    if dataset.probe_cam is None or dataset.gallery_cam is None:
        raise DatasetError(f"{dataset.root}: dataset {dataset.name!r} has no probe/gallery camera "
                           f"protocol; use its fixed splits")
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    if not 0.0 <= train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in [0, 1), got {train_fraction}")
    pids = np.array(dataset.pids, dtype=np.int64)
    num_train = int(len(pids) * train_fraction)
    if len(pids) - num_train < 1:
        raise DatasetError(f"{dataset.root}: {len(pids)} identities leave none for testing")
    by_pid: dict[int, list[int]] = {}
    for i, t in enumerate(dataset.tracklets):
        by_pid.setdefault(t.pid, []).append(i)
    splits = []
    for k in range(num_splits):
        order = np.random.default_rng(seed + k).permutation(pids)
        train_ids = sorted(int(p) for p in order[:num_train])
        test_ids = sorted(int(p) for p in order[num_train:])
        train = tuple(i for p in train_ids for i in by_pid[p])
        query = tuple(i for p in test_ids for i in by_pid[p]
                      if dataset.tracklets[i].camid == dataset.probe_cam)
        gallery = tuple(i for p in test_ids for i in by_pid[p]
                        if dataset.tracklets[i].camid == dataset.gallery_cam)
        splits.append(Split(train, query, gallery))
    return splits


def eval_protocol(dataset: ReidDataset) -> tuple[list[int], list[int]]:
    """Query and gallery tracklet indices of an evaluation dataset: its probe and gallery
    cameras, or for a dataset with fixed splits (MARS) the query and gallery of the first."""
    if dataset.probe_cam is None or dataset.gallery_cam is None:
        if not dataset.fixed_splits:
            raise DatasetError(f"{dataset.root}: {dataset.name!r} has neither a probe/gallery "
                               f"camera protocol nor fixed splits to evaluate on")
        s = dataset.fixed_splits[0]
        return list(s.query), list(s.gallery)
    cams = [t.camid for t in dataset.tracklets]
    return ([i for i, c in enumerate(cams) if c == dataset.probe_cam],
            [i for i, c in enumerate(cams) if c == dataset.gallery_cam])


def trainable(dataset: ReidDataset, train_split: str = "train") -> list[int]:
    """Indices of the tracklets of `dataset` that may train when another folder evaluates.

    A dataset with a fixed split (MARS) offers its training part ("train") or every tracklet of
    a real person, test folders included ("all": pid > 0, so MARS's junk (-1) and distractor (0)
    tracks are left out); any other dataset every tracklet but junk.
    """
    if train_split not in ("train", "all"):
        raise ValueError(f"--train_split must be train or all, got {train_split!r}")
    if not dataset.fixed_splits:
        return [i for i, t in enumerate(dataset.tracklets) if t.pid != JUNK_PID]
    if train_split == "train":
        return sorted(dataset.fixed_splits[0].train)
    return [i for i, t in enumerate(dataset.tracklets) if t.pid > 0]


def cross_dataset_splits(train: ReidDataset, evaluation: ReidDataset, num_splits: int, seed: int,
                         train_fraction: float, train_split: str = "train") -> list[Split]:
    """Splits of the joined dataset: train on `train_fraction` of the identities of the
    `trainable` tracklets (per `train_split`; a seeded random subset per split; all of them, the
    same in every split, at 1.0), query and gallery are the evaluation dataset's (indices after
    the training tracklets)."""
    n = len(train.tracklets)
    query, gallery = eval_protocol(evaluation)
    if not query or not gallery:
        raise DatasetError(f"{evaluation.root}: no query or no gallery tracklet to evaluate on")
    candidates = trainable(train, train_split)
    pids = np.array(sorted({train.tracklets[i].pid for i in candidates}), dtype=np.int64)
    if not len(pids):
        raise DatasetError(f"{train.root}: no tracklet to train on (--train_split={train_split})")
    num_train = max(1, int(round(len(pids) * train_fraction)))
    splits = []
    for k in range(num_splits):
        ids = set(np.random.default_rng(seed + k).permutation(pids)[:num_train].tolist())
        splits.append(Split(tuple(i for i in candidates if train.tracklets[i].pid in ids),
                            tuple(n + i for i in query), tuple(n + i for i in gallery)))
    return splits


def get_splits(dataset: ReidDataset, num_splits: int = 10, seed: int = 0) -> list[Split]:
    """The dataset's fixed splits (first `num_splits`) if it has them, else random ones."""
    if dataset.fixed_splits:
        splits = list(dataset.fixed_splits[:num_splits])
        check_splits(dataset, splits)
        return splits
    return make_random_splits(dataset, num_splits=num_splits, seed=seed)


def check_splits(dataset: ReidDataset, splits: list[Split], source: str | None = None) -> None:
    """Raises DatasetError if a split does not fit the dataset (e.g. one loaded from JSON).

    Checks index ranges, non-empty query and gallery, and that no identity is both trained on
    and tested (junk pid -1 aside).
    """
    where = source or dataset.root
    n = len(dataset.tracklets)
    for k, s in enumerate(splits):
        for part, idx in (("train", s.train), ("query", s.query), ("gallery", s.gallery)):
            bad = [i for i in idx if not 0 <= i < n]
            if bad:
                raise DatasetError(f"{where}: split {k} {part} index {bad[0]} out of range of the "
                                   f"{n} tracklets of {dataset.name!r}")
        if not s.query or not s.gallery:
            raise DatasetError(f"{where}: split {k} has an empty query or gallery")
        train_ids = {dataset.tracklets[i].pid for i in s.train}
        test_ids = {dataset.tracklets[i].pid for i in s.query + s.gallery}
        overlap = sorted((train_ids & test_ids) - {JUNK_PID})
        if overlap:
            raise DatasetError(f"{where}: split {k} trains and tests on the same identities "
                               f"{overlap[:5]}")
