"""Scores a hand-crafted nearest-neighbour baseline (stripe HSV histogram by default) on a
dataset's splits and prints JSON: `python -m keras_crf_reid.baseline --data_root=DIR`.

    python -m keras_crf_reid.baseline                  # generated synthetic data, 100 ids
    python -m keras_crf_reid.baseline --data_root=/data/prid_2011 --dataset=prid2011
    python -m keras_crf_reid.baseline --dataset=mars \
        --data_root=../shared/realdata/mars_multi --num_splits=1     # MARS's official split
    python -m keras_crf_reid.baseline --kind=hist ...          # the old standardised RGB one
    python -m keras_crf_reid.baseline --kind=imagenet_224 ...  # DeepSORT's embedder

Every flag and its default: keras_crf_reid.configs.evaluation.BaselineConfig.
"""
from __future__ import annotations


import numpy as np

from keras_crf_reid import cli
from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.configs.evaluation import BaselineConfig

cli.define_flags(BaselineConfig)


def score_baseline(cfg: BaselineConfig) -> dict:
    """Mean, std and per-split metrics of `cfg.kind` features on the dataset's splits (or on all
    its people with `cfg.unseen`)."""
    from keras_crf_reid.datasets import Split, get_splits
    from keras_crf_reid.datasets.splits import eval_protocol
    from keras_crf_reid.evaluation.baseline import TITLES, evaluate_baseline
    from keras_crf_reid.runner.data import load_dataset

    dataset = load_dataset(DataConfig(
        dataset=cfg.dataset if cfg.data_root else "synthetic", data_root=cfg.data_root,
        data_dir=cfg.data_dir, num_ids=cfg.num_ids, synthetic_seed=cfg.synthetic_seed))
    if cfg.unseen:
        splits = [Split((), *map(tuple, eval_protocol(dataset)))]
    else:
        splits = get_splits(dataset, num_splits=cfg.num_splits, seed=cfg.seed)
    cache: dict = {}
    per_split = [evaluate_baseline(dataset, s, kind=cfg.kind, max_frames=cfg.max_frames or None,
                                   normalize=cfg.normalize, cache=cache) for s in splits]
    keys = list(per_split[0])
    return {
        "dataset": dataset.name, "root": dataset.root, "kind": cfg.kind, "title": TITLES[cfg.kind],
        "normalize": cfg.normalize, "num_splits": len(splits),
        "query": len(splits[0].query), "gallery": len(splits[0].gallery),
        "mean": {k: round(float(np.mean([r[k] for r in per_split])), 2) for k in keys},
        "std": {k: round(float(np.std([r[k] for r in per_split])), 2) for k in keys},
        "per_split": per_split,
    }


if __name__ == "__main__":
    cli.run_json(BaselineConfig, score_baseline)
