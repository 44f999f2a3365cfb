"""A run's data from its DataConfig: the dataset (read, generated or pooled), its cache, its splits.

The data work itself lives in keras_crf_reid.datasets (pooling and joining in `combine`,
cross-dataset splits in `splits`, the fingerprint in `base`); this module only follows the
flags. With --eval_data_root the run trains on one dataset and tests on another, joined into
one, so the per-split runner, baseline and plots need not know that two folders are involved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from keras_crf_reid import datasets
from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.datasets import ReidDataset, Split
from keras_crf_reid.datasets.base import fingerprint
from keras_crf_reid.datasets.combine import JoinedStore, check_separate, join_datasets, pool_datasets
from keras_crf_reid.datasets.splits import cross_dataset_splits
from keras_crf_reid.datasets.store import TrackletStore, drop_unreadable
from keras_crf_reid.datasets.validate import validate_frames


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

    Several comma-separated --data_root folders (two-camera datasets) are pooled into one
    (combine.pool_datasets: no two folders share an identity).
    """
    roots = [r for r in cfg.data_root.split(",") if r]
    if len(roots) <= 1:
        return _load_one(cfg, cfg.data_root, progress)
    return pool_datasets([_load_one(cfg, r, progress) for r in roots],
                         "+".join(os.path.basename(os.path.normpath(r)) for r in roots))


def load_eval_dataset(cfg: DataConfig, progress: bool = True) -> ReidDataset:
    """The --eval_data_root dataset, read with --eval_dataset (default: --dataset)."""
    return load_dataset(dataclasses.replace(cfg, dataset=cfg.eval_dataset or cfg.dataset,
                                            data_root=cfg.eval_data_root), progress)


def _cached(dataset: ReidDataset, cfg: DataConfig, progress: bool) -> tuple[ReidDataset, TrackletStore]:
    """The dataset's frame + flow store, built, without the tracklets no frame of which decodes."""
    if not cfg.cache_dir:
        dataset = validate_frames(dataset, cfg.on_bad_image)
    store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image).build(
        progress=progress)
    return drop_unreadable(dataset, store)


def prepare(cfg: DataConfig, progress: bool = True) -> RunData:
    """Dataset, flow-cached store, all splits and data fingerprint of a data config.

    Unreadable frames are found while the cache is built (once) and their tracklets dropped
    before the splits are made; without a cache every frame is checked up front instead.
    """
    dataset = load_dataset(cfg, progress)
    evaluation = None
    if cfg.eval_data_root:  # checked before any flow is computed
        evaluation = load_eval_dataset(cfg, progress)
        check_separate(dataset, evaluation)
    dataset, store = _cached(dataset, cfg, progress)
    if evaluation is not None:
        evaluation, eval_store = _cached(evaluation, cfg, progress)
        joined = join_datasets(dataset, evaluation)
        splits = cross_dataset_splits(dataset, evaluation, cfg.num_splits, cfg.split_seed,
                                      cfg.train_fraction, cfg.train_split)
        return RunData(joined, JoinedStore(joined, store, eval_store), splits,
                       fingerprint(joined.tracklets, portable=True), evaluation)
    if cfg.train_fraction != 0.5:
        if dataset.fixed_splits:
            raise ValueError(f"--train_fraction: {dataset.name} has fixed splits; the fraction "
                             f"only applies to random identity splits or with --eval_data_root")
        splits = datasets.make_random_splits(dataset, cfg.num_splits, cfg.split_seed,
                                             cfg.train_fraction)
    else:
        splits = datasets.get_splits(dataset, cfg.num_splits, cfg.split_seed)
    return RunData(dataset, store, splits, fingerprint(dataset.tracklets, portable=True))
