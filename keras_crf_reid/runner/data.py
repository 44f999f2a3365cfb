"""A run's data: read (or generate) the dataset, pool folders, cache frames and flow, make splits."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from keras_crf_reid import datasets
from keras_crf_reid.datasets import ReidDataset, Split
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.datasets.validate import drop_tracklets, validate_frames
from keras_crf_reid.runner.config import DataConfig


@dataclasses.dataclass
class RunData:
    """A run's dataset, its flow-cached store, all its splits and a fingerprint of its files."""

    dataset: ReidDataset
    store: TrackletStore
    splits: list[Split]
    fingerprint: str

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


def prepare(cfg: DataConfig, progress: bool = True) -> RunData:
    """Dataset, flow-cached store, all splits and data fingerprint of a data config.

    Unreadable frames are found while the cache is built (once) and their tracklets dropped
    before the splits are made; without a cache every frame is checked up front instead.
    """
    dataset = load_dataset(cfg, progress)
    if not cfg.cache_dir:
        dataset = validate_frames(dataset, cfg.on_bad_image)
    store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image).build(
        progress=progress)
    dataset, store = readable(dataset, store)
    splits = datasets.get_splits(dataset, cfg.num_splits, cfg.split_seed)
    return RunData(dataset, store, splits, data_fingerprint(dataset))
