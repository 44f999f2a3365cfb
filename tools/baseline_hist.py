"""Colour-histogram / raw-pixel nearest-neighbour baseline over random splits; prints JSON.

    PYTHONPATH=. python tools/baseline_hist.py            # generated synthetic data, 100 ids
    PYTHONPATH=. python tools/baseline_hist.py --data_root=/data/prid_2011 --dataset=prid2011
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from keras_crf_reid.baseline import KINDS, evaluate_baseline
from keras_crf_reid.datasets import get_dataset, get_splits
from keras_crf_reid.datasets.synthetic import generate_synthetic

flags.DEFINE_string("data_root", "", "Dataset folder; empty: generate synthetic data under "
                    "--data_dir and use it.")
flags.DEFINE_string("dataset", "prid_layout", "Reader for --data_root (prid2011, ilidsvid, mars, "
                    "prid_layout, synthetic).")
flags.DEFINE_string("data_dir", "data", "Where generated synthetic data is written.")
flags.DEFINE_integer("num_ids", 100, "Identities of the generated synthetic dataset.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the generated synthetic dataset.")
flags.DEFINE_integer("num_splits", 10, "Number of random train/test identity splits.")
flags.DEFINE_integer("seed", 0, "Seed of the random splits.")
flags.DEFINE_enum("kind", "hist", KINDS, "Features: joint colour histogram or raw pixels.")
flags.DEFINE_bool("normalize", True, "Standardise each frame's colours first (like the model "
                  "input); false: raw colour values.")
flags.DEFINE_integer("max_frames", 0, "Frames used per tracklet, evenly spaced (0: all).")
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv
    root = FLAGS.data_root
    name = FLAGS.dataset
    if not root:
        folder = os.path.join(FLAGS.data_dir, f"synthetic_{FLAGS.num_ids}_s{FLAGS.synthetic_seed}")
        root = generate_synthetic(folder, num_ids=FLAGS.num_ids, seed=FLAGS.synthetic_seed)
        name = "synthetic"
    dataset = get_dataset(name, root)
    splits = get_splits(dataset, num_splits=FLAGS.num_splits, seed=FLAGS.seed)
    cache: dict = {}
    per_split = [evaluate_baseline(dataset, s, kind=FLAGS.kind, max_frames=FLAGS.max_frames or None,
                                   normalize=FLAGS.normalize, cache=cache) for s in splits]
    keys = list(per_split[0])
    print(json.dumps({
        "dataset": dataset.name, "root": dataset.root, "kind": FLAGS.kind,
        "normalize": FLAGS.normalize, "num_splits": len(splits),
        "query": len(splits[0].query), "gallery": len(splits[0].gallery),
        "mean": {k: round(float(np.mean([r[k] for r in per_split])), 2) for k in keys},
        "std": {k: round(float(np.std([r[k] for r in per_split])), 2) for k in keys},
        "per_split": per_split,
    }, indent=1))


if __name__ == "__main__":
    app.run(main)
