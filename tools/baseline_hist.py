"""Hand-crafted nearest-neighbour baseline (stripe HSV histogram by default) over the dataset's
splits; prints JSON.

    PYTHONPATH=. python tools/baseline_hist.py            # generated synthetic data, 100 ids
    PYTHONPATH=. python tools/baseline_hist.py --data_root=/data/prid_2011 --dataset=prid2011
    PYTHONPATH=. python tools/baseline_hist.py --dataset=mars \
        --data_root=../shared/realdata/mars_multi --num_splits=1     # MARS's official split
    PYTHONPATH=. python tools/baseline_hist.py --kind=hist ...       # the old standardised RGB one
    PYTHONPATH=. python tools/baseline_hist.py --kind=imagenet_224 ...  # DeepSORT's embedder
"""
from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.datasets import Split, get_splits
from keras_crf_reid.datasets.splits import eval_protocol
from keras_crf_reid.evaluation.baseline import DEFAULT_KIND, KINDS, TITLES, evaluate_baseline
from keras_crf_reid.runner.data import load_dataset

flags.DEFINE_string("data_root", "", "Dataset folder (comma-separated two-camera folders are "
                    "pooled, as in training); empty: generate synthetic data under --data_dir.")
flags.DEFINE_string("dataset", "prid_layout", "Reader for --data_root (prid2011, ilidsvid, mars, "
                    "prid_layout, synthetic).")
flags.DEFINE_string("data_dir", "data", "Where generated synthetic data is written.")
flags.DEFINE_integer("num_ids", 100, "Identities of the generated synthetic dataset.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the generated synthetic dataset.")
flags.DEFINE_integer("num_splits", 10, "Number of random train/test identity splits.")
flags.DEFINE_integer("seed", 0, "Seed of the random splits.")
flags.DEFINE_enum("kind", DEFAULT_KIND, KINDS, "Features: stripe HSV histogram, whole-frame "
                  "joint RGB histogram, raw pixels, or ImageNet MobileNetV2 features without "
                  "fine-tuning at 128x64 or 224x224 (keras_crf_reid/evaluation/baseline.py).")
flags.DEFINE_bool("normalize", True, "hist and pixel: standardise each frame's colours first "
                  "(like the model input); false: raw colour values. Ignored by stripe_hsv.")
flags.DEFINE_bool("unseen", False, "Score every identity, as a --eval_data_root folder of "
                  "unseen people is: its probe camera against its gallery camera (one split).")
flags.DEFINE_integer("max_frames", 0, "Frames used per tracklet, evenly spaced (0: all).")
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv
    dataset = load_dataset(DataConfig(
        dataset=FLAGS.dataset if FLAGS.data_root else "synthetic", data_root=FLAGS.data_root,
        data_dir=FLAGS.data_dir, num_ids=FLAGS.num_ids, synthetic_seed=FLAGS.synthetic_seed))
    if FLAGS.unseen:
        splits = [Split((), *map(tuple, eval_protocol(dataset)))]
    else:
        splits = get_splits(dataset, num_splits=FLAGS.num_splits, seed=FLAGS.seed)
    cache: dict = {}
    per_split = [evaluate_baseline(dataset, s, kind=FLAGS.kind, max_frames=FLAGS.max_frames or None,
                                   normalize=FLAGS.normalize, cache=cache) for s in splits]
    keys = list(per_split[0])
    print(json.dumps({
        "dataset": dataset.name, "root": dataset.root, "kind": FLAGS.kind,
        "title": TITLES[FLAGS.kind],
        "normalize": FLAGS.normalize, "num_splits": len(splits),
        "query": len(splits[0].query), "gallery": len(splits[0].gallery),
        "mean": {k: round(float(np.mean([r[k] for r in per_split])), 2) for k in keys},
        "std": {k: round(float(np.std([r[k] for r in per_split])), 2) for k in keys},
        "per_split": per_split,
    }, indent=1))


if __name__ == "__main__":
    app.run(main)
