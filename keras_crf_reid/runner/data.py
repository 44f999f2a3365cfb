"""A run's data: read (or generate) the dataset, pool folders, cache frames and flow, make splits.

With --eval_data_root the run trains on one dataset and tests on another: the two are joined
into one dataset (training tracklets first, then the evaluation tracklets with their person ids
moved above the training ones) over a store that reads each part from its own cache, so every
split is an ordinary `Split` of indices and the per-split runner, baseline and plots need not
know that two folders are involved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from keras_crf_reid import datasets
from keras_crf_reid.datasets import DatasetError, ReidDataset, Split
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.metrics import JUNK_PID
from keras_crf_reid.datasets.validate import drop_tracklets, validate_frames
from keras_crf_reid.runner.config import DataConfig


@dataclasses.dataclass
class RunData:
    """A run's dataset, its flow-cached store, all its splits and a fingerprint of its files."""

    dataset: ReidDataset
    store: TrackletStore
    splits: list[Split]
    fingerprint: str
    eval_dataset: ReidDataset | None = None

    def split_digest(self, split_id: int) -> str:
        """Hash of the identities of split `split_id` (a resumed split must have the same)."""
        text = json.dumps(self.splits[split_id].to_dict(), sort_keys=True).encode()
        return hashlib.sha1(text).hexdigest()

    def split_ids(self, data_cfg: DataConfig) -> tuple[int, ...]:
        """--splits (default: the first --num_splits), checked against the available splits."""
        ids = data_cfg.splits or tuple(range(min(data_cfg.num_splits, len(self.splits))))
        for s in ids:
            if not 0 <= s < len(self.splits):
                raise ValueError(f"--splits: index {s} out of range (dataset has "
                                 f"{len(self.splits)} splits)")
        return ids


def _load_one(cfg: DataConfig, root: str, progress: bool) -> ReidDataset:
    if cfg.dataset == "synthetic" and not root:
        from keras_crf_reid.datasets.synthetic import generate_synthetic
        root = generate_synthetic(
            os.path.join(cfg.data_dir, f"synthetic_{cfg.num_ids}_s{cfg.synthetic_seed}"),
            num_ids=cfg.num_ids, seed=cfg.synthetic_seed, progress=progress)
    elif not root:
        raise ValueError(f"--data_root is required for --dataset={cfg.dataset}")
    kwargs = {} if cfg.min_len is None else {"min_len": cfg.min_len}
    return datasets.get_dataset(cfg.dataset, root, **kwargs)


def load_dataset(cfg: DataConfig, progress: bool = True) -> ReidDataset:
    """Reads the dataset, generating the synthetic one first when no root is given.

    Several comma-separated --data_root folders (two-camera datasets) are pooled into one;
    pooled person ids become 10000 * (folder index) + id, so no two folders share an identity.
    """
    roots = [r for r in cfg.data_root.split(",") if r]
    if len(roots) <= 1:
        return _load_one(cfg, cfg.data_root, progress)
    parts = [_load_one(cfg, r, progress) for r in roots]
    tracklets, skipped = [], {}
    for i, d in enumerate(parts):
        if d.probe_cam != 0 or d.gallery_cam != 1 or d.fixed_splits:
            raise ValueError(f"--data_root: {d.root} has no cam 0 / cam 1 protocol; only "
                             f"two-camera datasets without fixed splits can be pooled")
        if max(d.pids) >= 10000 or min(d.pids) < 0:
            raise ValueError(f"--data_root: {d.root} has person ids outside 0..9999; cannot pool")
        tracklets += [dataclasses.replace(t, pid=10000 * i + t.pid) for t in d.tracklets]
        skipped.update(d.skipped)
    name = "+".join(os.path.basename(os.path.normpath(r)) for r in roots)
    return ReidDataset(name=name, root=",".join(d.root for d in parts), tracklets=tracklets,
                       skipped=skipped)


def data_fingerprint(dataset: ReidDataset) -> str:
    """Hash of ids, cameras, lengths, frame names and first/last frame sizes of every tracklet.

    Regenerated or replaced frames change the sizes; moving the dataset folder does not matter.
    """
    h = hashlib.sha1()
    for t in dataset.tracklets:
        ends = (t.frames[0], t.frames[-1]) if t.frames else ()
        names = [os.path.join(*os.path.normpath(p).split(os.sep)[-3:]) for p in ends]
        sizes = [os.path.getsize(p) if os.path.exists(p) else -1 for p in ends]
        h.update(f"{t.pid}|{t.camid}|{len(t.frames)}|{names}|{sizes}\n".encode())
    return h.hexdigest()[:16]


def _roots(dataset: ReidDataset) -> list[str]:
    return [os.path.realpath(r) for r in dataset.root.split(",") if r]


def check_eval_roots(train: ReidDataset, evaluation: ReidDataset) -> None:
    """Refuses an evaluation set that is (part of) the training set: same, nested or same files."""
    for e in _roots(evaluation):
        for t in _roots(train):
            if e == t or os.path.commonpath([e, t]) in (e, t):
                how = "is" if e == t else "overlaps"
                raise ValueError(f"--eval_data_root {e} {how} the training folder --data_root {t}; "
                                 f"evaluate on a separate folder of unseen people (or leave "
                                 f"--eval_data_root empty to split --data_root)")
    if data_fingerprint(train) == data_fingerprint(evaluation):
        raise ValueError(f"--eval_data_root {evaluation.root} holds the same frames as --data_root "
                         f"{train.root} (a copy); evaluate on a separate folder of unseen people")


def load_eval_dataset(cfg: DataConfig, progress: bool = True) -> ReidDataset:
    """The --eval_data_root dataset, read with --eval_dataset (default: --dataset)."""
    return load_dataset(dataclasses.replace(cfg, dataset=cfg.eval_dataset or cfg.dataset,
                                            data_root=cfg.eval_data_root), progress)


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


def pid_offset(train: ReidDataset) -> int:
    """A power of ten above every training person id: evaluation id p becomes offset + p."""
    return 10 ** len(str(max(train.pids + [0])))


def join_datasets(train: ReidDataset, evaluation: ReidDataset) -> ReidDataset:
    """Training tracklets, then evaluation tracklets with person ids moved past the training ones
    (junk ids stay junk), so no evaluation person can share an identity with a training one."""
    offset = pid_offset(train)
    moved = [t if t.pid == JUNK_PID else dataclasses.replace(t, pid=offset + t.pid)
             for t in evaluation.tracklets]
    return ReidDataset(name=f"{train.name}-to-{evaluation.name}",
                       root=f"{train.root} (train), {evaluation.root} (eval)",
                       tracklets=list(train.tracklets) + moved,
                       probe_cam=evaluation.probe_cam, gallery_cam=evaluation.gallery_cam,
                       skipped={**train.skipped, **evaluation.skipped})


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


def readable(dataset: ReidDataset, store: TrackletStore) -> tuple[ReidDataset, TrackletStore]:
    """The dataset and store without the tracklets the store's build found no readable frame in.

    Their persons are dropped too where a camera is left without them; every dropped tracklet
    and skipped frame is recorded in `dataset.skipped` (the summary's "skipped" count).
    """
    dropped_frames = {p for i in store.empty for p in dataset.tracklets[i].frames}
    dataset, keep = drop_tracklets(dataset, store.empty)
    dataset.skipped.update({p: "undecodable frame skipped" for p in store.skipped_frames
                            if p not in dropped_frames and p not in dataset.skipped})
    return dataset, (store if len(keep) == len(store) else store.subset(dataset, keep))


def _cached(dataset: ReidDataset, cfg: DataConfig, progress: bool) -> tuple[ReidDataset, TrackletStore]:
    """The dataset's frame + flow store, built, without the tracklets no frame of which decodes."""
    if not cfg.cache_dir:
        dataset = validate_frames(dataset, cfg.on_bad_image)
    store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image).build(
        progress=progress)
    return readable(dataset, store)


def prepare(cfg: DataConfig, progress: bool = True) -> RunData:
    """Dataset, flow-cached store, all splits and data fingerprint of a data config.

    Unreadable frames are found while the cache is built (once) and their tracklets dropped
    before the splits are made; without a cache every frame is checked up front instead.
    """
    dataset = load_dataset(cfg, progress)
    evaluation = None
    if cfg.eval_data_root:  # checked before any flow is computed
        evaluation = load_eval_dataset(cfg, progress)
        check_eval_roots(dataset, evaluation)
    dataset, store = _cached(dataset, cfg, progress)
    if evaluation is not None:
        evaluation, eval_store = _cached(evaluation, cfg, progress)
        joined = join_datasets(dataset, evaluation)
        splits = cross_dataset_splits(dataset, evaluation, cfg.num_splits, cfg.split_seed,
                                      cfg.train_fraction, cfg.train_split)
        return RunData(joined, JoinedStore(joined, store, eval_store), splits,
                       data_fingerprint(joined), evaluation)
    if cfg.train_fraction != 0.5:
        if dataset.fixed_splits:
            raise ValueError(f"--train_fraction: {dataset.name} has fixed splits; the fraction "
                             f"only applies to random identity splits or with --eval_data_root")
        splits = datasets.make_random_splits(dataset, cfg.num_splits, cfg.split_seed,
                                             cfg.train_fraction)
    else:
        splits = datasets.get_splits(dataset, cfg.num_splits, cfg.split_seed)
    return RunData(dataset, store, splits, data_fingerprint(dataset))
