"""Readers for PRID-2011, iLIDS-VID, MARS and any PRID-layout folder, plus synthetic data.

`get_dataset(name, root, **kwargs)` picks the reader by name; keyword arguments go to it.
"""
from __future__ import annotations

import functools
from typing import Callable

from keras_crf_reid.datasets.frames import BadImageError, DatasetError, list_images
from keras_crf_reid.datasets.base import (ReidDataset, Split, Tracklet, load_splits,
                                          require_dir, save_splits)
from keras_crf_reid.datasets.ilidsvid import load_ilidsvid
from keras_crf_reid.datasets.mars import load_mars
from keras_crf_reid.datasets.prid2011 import load_prid2011, load_prid2011_178, load_prid_layout
from keras_crf_reid.datasets.splits import check_splits, get_splits, make_random_splits

DATASETS: dict[str, Callable[..., ReidDataset]] = {
    "prid2011": load_prid2011,
    "prid2011_178": load_prid2011_178,
    "ilidsvid": load_ilidsvid,
    "mars": load_mars,
    "prid_layout": load_prid_layout,
    "synthetic": functools.partial(load_prid_layout, name="synthetic"),
}


def get_dataset(name: str, root: str, **kwargs) -> ReidDataset:
    """Reads dataset `name` from `root`; ValueError for an unknown name, DatasetError for bad data."""
    loader = DATASETS.get(name)
    if loader is None:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    require_dir(root, "dataset root")
    return loader(root, **kwargs)


__all__ = [
    "BadImageError", "DATASETS", "DatasetError", "ReidDataset", "Split", "Tracklet", "check_splits",
    "get_dataset", "get_splits", "list_images", "load_ilidsvid", "load_mars", "load_prid2011",
    "load_prid2011_178", "load_prid_layout", "load_splits", "make_random_splits", "save_splits",
]
