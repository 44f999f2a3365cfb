"""Settings of a generated synthetic dataset (keras_crf_reid.datasets.synthetic); no TensorFlow."""
from __future__ import annotations

from keras_crf_reid.options import config_class, option



@config_class
class SyntheticConfig:
    """Where the dataset goes, how many people, how long their tracklets, with what seed."""

    out: str | None = option(None, "Folder to write the dataset into (PRID-2011 layout).",
                             required=True)
    num_ids: int = option(100, "Number of identities.", lower_bound=1)
    seed: int = option(0, "Random seed; the same seed gives byte-identical frames.", lower_bound=0)
    min_len: int = option(8, "Shortest tracklet, in frames.", lower_bound=1)
    max_len: int = option(48, "Longest tracklet, in frames.", lower_bound=1)
    workers: int = option(1, "Worker processes.", lower_bound=1)

