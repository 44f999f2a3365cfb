"""Effect of k-reciprocal re-ranking (keras_crf_reid.evaluation.rerank) on MARS's official
query/gallery split: rank-1/5/10/20 and mAP with plain Euclidean and re-ranked distances, and the
time re-ranking takes, for an exported model's embeddings and the hand-crafted baselines.
Prints JSON.

    python -m keras_crf_reid.serving.rerank_eval --data_root=../shared/realdata/mars_multi \
        --model=saved_models/crf_mars_sample

Every flag and its default: keras_crf_reid.configs.evaluation.RerankEvalConfig.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
from tqdm import tqdm

from keras_crf_reid import cli
from keras_crf_reid.configs.evaluation import RerankEvalConfig, rerank_setting
from keras_crf_reid.datasets import Tracklet, get_dataset
from keras_crf_reid.evaluation.baseline import tracklet_features
from keras_crf_reid.evaluation.rerank import compare_reranking
from keras_crf_reid.serving import inference


def embed_tracklets(embedder: inference.Embedder, tracklets: Sequence[Tracklet]) -> np.ndarray:
    """(N, D): each tracklet's mean embedding over its frame groups, as evaluation embeds."""
    h, w, _ = embedder.frame_shape
    return np.stack([np.concatenate([embedder.predict(g) for g in inference.frame_groups(
        list(t.frames), embedder.group_len, h, w, where=t.key,
        colour_norm=embedder.colour_norm)]).mean(axis=0)
        for t in tqdm(tracklets, desc="embed", unit="tracklet")])


def rerank_eval(cfg: RerankEvalConfig) -> dict:
    """The comparison's rows: the model's (with `cfg.model_rows`), then each baseline's."""
    dataset = get_dataset("mars", cfg.data_root)
    split = dataset.fixed_splits[0]
    query = [dataset.tracklets[i] for i in split.query]
    gallery = [dataset.tracklets[i] for i in split.gallery]
    settings = [rerank_setting(s) for s in cfg.settings]
    rows = []
    if cfg.model_rows:
        t = time.time()
        if cfg.features_cache and os.path.isfile(cfg.features_cache):
            with np.load(cfg.features_cache) as cached:
                qf, gf = cached["query"], cached["gallery"]
        else:
            embedder = inference.load(cfg.model, group_len=cfg.group_len)
            qf, gf = embed_tracklets(embedder, query), embed_tracklets(embedder, gallery)
            if cfg.features_cache:
                np.savez(cfg.features_cache, query=qf, gallery=gf)
        rows.append({"features": os.path.basename(os.path.normpath(cfg.model)),
                     **compare_reranking(qf, gf, query, gallery, settings),
                     "embed_seconds": round(time.time() - t, 1)})
    for kind in cfg.baselines:
        rows.append({"features": f"baseline {kind}",
                     **compare_reranking(tracklet_features(query, kind),
                                         tracklet_features(gallery, kind), query, gallery,
                                         settings)})
    return {"data_root": cfg.data_root, "model": cfg.model, "group_len": cfg.group_len,
            "num_query": len(query), "num_gallery": len(gallery), "rows": rows}


if __name__ == "__main__":
    cli.define_flags(RerankEvalConfig)
    cli.run_json(RerankEvalConfig, rerank_eval)
