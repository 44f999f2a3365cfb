"""Which dataset a run reads (or generates) and how its identities are split; no TensorFlow.

keras_crf_reid.datasets reads the data (its `DATASETS` registry has a reader per name here) and
keras_crf_reid.runner.data prepares it for a run.
"""
from __future__ import annotations

from keras_crf_reid.options import config_class, option

# Readers of keras_crf_reid.datasets.DATASETS, by name.
DATASETS = ("ilidsvid", "mars", "prid2011", "prid2011_178", "prid_layout", "synthetic")
ON_BAD_IMAGE = ("skip", "fail")
TRAIN_SPLITS = ("train", "all")


@config_class
class DataConfig:
    """Which dataset to read (or generate) and how its identities are split."""

    dataset: str = option("synthetic", "Dataset reader.", choices=DATASETS)
    data_root: str = option("", "Dataset folder; several comma-separated two-camera folders are "
                            "pooled. Empty with --dataset=synthetic: generate one.")
    data_dir: str = option("data", "Where generated synthetic data is written.", results=False)
    cache_dir: str = option("cache", "Where decoded frames and optical flow are cached.",
                            results=False)
    num_ids: int = option(100, "Identities of the generated synthetic dataset.", lower_bound=2)
    synthetic_seed: int = option(0, "Seed of the generated synthetic dataset.")
    min_len: int | None = option(None, "Minimum tracklet length (default: the dataset's protocol).",
                                 lower_bound=1)
    on_bad_image: str = option("skip", "Unreadable frames: skip with a warning (counted) or fail.",
                               choices=ON_BAD_IMAGE)
    num_splits: int = option(10, "Random 50/50 identity splits (PRID-2011, iLIDS-VID).",
                             results=False, lower_bound=1)
    splits: tuple[int, ...] = option((), "Split indices to run (default: all --num_splits).",
                                     results=False)
    split_seed: int = option(0, "Seed of the random identity splits.")
    train_fraction: float = option(0.5, "Share of the identities trained on per random split; "
                                   "1.0 trains on all of them and needs --eval_data_root.")
    train_split: str = option("train", "With --eval_data_root, what of a --data_root with a fixed "
                              "split (MARS) trains: its training part (train) or every tracklet "
                              "of a real person, training and test folders alike (all; MARS "
                              "junk and distractor tracks excluded).", choices=TRAIN_SPLITS)
    eval_dataset: str = option("", "Reader of --eval_data_root (default: --dataset).",
                               choices=("",) + DATASETS)
    eval_data_root: str = option("", "Evaluate on this separate dataset folder of unseen people "
                                 "(comma-separated folders are pooled): its probe/gallery "
                                 "cameras are query and gallery; every identity of --data_root "
                                 "(or --train_fraction of them) trains. Empty: split --data_root.")

    def __post_init__(self):
        if any(s < 0 for s in self.splits):
            raise ValueError(f"--splits must be split indices >= 0, got {list(self.splits)}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"--train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_fraction == 1.0 and not self.eval_data_root:
            raise ValueError("--train_fraction=1.0 trains on every identity of --data_root and "
                             "leaves none to test: give a separate --eval_data_root")
        if self.train_split == "all" and not self.eval_data_root:
            raise ValueError("--train_split=all trains on every tracklet of --data_root and "
                             "leaves none to test: give a separate --eval_data_root (e.g. "
                             "../shared/realdata/mot_tracklets/pets09_s2l1)")
        if self.eval_dataset and not self.eval_data_root:
            raise ValueError(f"--eval_dataset={self.eval_dataset} needs --eval_data_root (the "
                             f"folder of the evaluation people)")
