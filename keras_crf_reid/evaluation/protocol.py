"""Test protocol: tracklet features = mean over all of its frame groups (16 frames by default); CMC, mAP."""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from keras_crf_reid.datasets.base import Split
from keras_crf_reid.datasets.pipeline import group_dataset
from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.evaluation.metrics import cmc_summary, euclidean_distances, evaluate_rank
from keras_crf_reid.evaluation.rerank import rerank_features
from keras_crf_reid.geometry import DEFAULT_COLOUR_NORM, GROUP_LEN, INPUT_SHAPE


def compiled_embedder(model: keras.Model) -> Callable:
    """A tf.function running `model` in inference mode on full frames (B, T, 128, 64, 5).

    The signature leaves batch and time free, so evaluation never retraces.
    """
    @tf.function(input_signature=[tf.TensorSpec((None, None, *INPUT_SHAPE), tf.float32)])
    def embed(x):
        return model(x, training=False)

    return embed


def embed_tracklets(embed: Callable, store: TrackletStore, indices: Sequence[int],
                    seq_len: int = GROUP_LEN, batch_size: int = 32, progress: bool = False,
                    num_parallel_calls: int = -1,
                    colour_norm: str = DEFAULT_COLOUR_NORM) -> np.ndarray:
    """(len(indices), D) features: the mean embedding of each tracklet's frame groups, prepared
    with the model's `colour_norm` (ModelConfig.colour_norm)."""
    ds, counts = group_dataset(store, indices, seq_len, batch_size, num_parallel_calls,
                               colour_norm)
    sums = None
    bar = tqdm(total=int(counts.sum()), desc="embed", unit="group", disable=not progress)
    for x, owner in ds:
        e = embed(x).numpy().astype(np.float64)
        if sums is None:
            sums = np.zeros((len(indices), e.shape[1]))
        np.add.at(sums, owner.numpy(), e)
        bar.update(len(e))
    bar.close()
    return (sums / counts[:, None]).astype(np.float32)


def split_distances(features: dict[int, np.ndarray], split: Split, rerank: bool = False) -> np.ndarray:
    """(query x gallery) distances from per-tracklet features (index -> vector): Euclidean, or
    k-reciprocal re-ranked ones with `rerank`."""
    query = np.stack([features[i] for i in split.query])
    gallery = np.stack([features[i] for i in split.gallery])
    return rerank_features(query, gallery) if rerank else euclidean_distances(query, gallery)


def score_distances(dist: np.ndarray, store: TrackletStore, split: Split, max_rank: int = 20) -> dict:
    """CMC (rank 1/5/10/20, full curve) and mAP of a split's distance matrix."""
    tr = store.dataset.tracklets
    cmc, mean_ap = evaluate_rank(dist, [tr[i].pid for i in split.query], [tr[i].pid for i in split.gallery],
                                 [tr[i].camid for i in split.query], [tr[i].camid for i in split.gallery],
                                 max_rank=min(max_rank, len(split.gallery)))
    cmc = np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")
    return {**cmc_summary(cmc, mean_ap), "cmc": [float(c) for c in cmc]}


def evaluate_split(embed: Callable, store: TrackletStore, split: Split, seq_len: int = GROUP_LEN,
                   batch_size: int = 32, progress: bool = False, with_distances: bool = False,
                   num_parallel_calls: int = -1, colour_norm: str = DEFAULT_COLOUR_NORM,
                   rerank: bool = False):
    """Embeds the query and gallery tracklets of a split and scores them (distances re-ranked
    with `rerank`).

    Returns the metrics dict, or (metrics, float32 distance matrix) with `with_distances`.
    `num_parallel_calls`: evaluation batches prepared concurrently (-1: AUTOTUNE).
    """
    indices = sorted(set(split.query) | set(split.gallery))
    feats = embed_tracklets(embed, store, indices, seq_len, batch_size, progress,
                            num_parallel_calls, colour_norm)
    dist = split_distances(dict(zip(indices, feats)), split, rerank)
    metrics = score_distances(dist, store, split)
    return (metrics, dist.astype(np.float32)) if with_distances else metrics
