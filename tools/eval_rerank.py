"""Effect of k-reciprocal re-ranking (keras_crf_reid.evaluation.rerank) on MARS's official
query/gallery split: rank-1/5/20 and mAP with plain Euclidean distances and re-ranked ones, and the
time re-ranking takes, for the committed model's embeddings and the hand-crafted baselines.
Prints JSON.

    .venv/bin/python tools/eval_rerank.py --data_root=../shared/realdata/mars_multi \
        --model=saved_models/crf_mars_sample
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_crf_reid  # noqa: E402
from keras_crf_reid.datasets import get_dataset  # noqa: E402
from keras_crf_reid.evaluation.baseline import tracklet_features  # noqa: E402
from keras_crf_reid.evaluation.metrics import (cmc_summary, euclidean_distances,  # noqa: E402
                                               evaluate_rank)
from keras_crf_reid.evaluation.rerank import rerank  # noqa: E402
from keras_crf_reid.serving.inference import frame_groups  # noqa: E402

flags.DEFINE_string("data_root", "../shared/realdata/mars_multi", "MARS-layout dataset.")
flags.DEFINE_string("model", "saved_models/crf_mars_sample", "Model embedding the tracklets.")
flags.DEFINE_list("baselines", ["stripe_hsv", "hist"], "Hand-crafted baseline features also "
                  "compared (keras_crf_reid.evaluation.baseline kinds).")
flags.DEFINE_integer("group_len", None, "Frames per embedded group (default: what the export "
                     "records; a .keras file records none and gets 16: give the run's --eval_seq_len).")
flags.DEFINE_boolean("model_rows", True, "Embed with --model (off: baselines only).")
flags.DEFINE_list("settings", ["20:6:0.3"], "Re-ranking settings k1:k2:lambda compared (the "
                  "first is torchreid's default).")
flags.DEFINE_string("features_cache", "", "An .npz keeping the model's query/gallery features "
                    "(reused when present, so other settings need no second embedding pass).")
FLAGS = flags.FLAGS


def _score(dist, query, gallery) -> dict:
    cmc, mean_ap = evaluate_rank(dist, [t.pid for t in query], [t.pid for t in gallery],
                                 [t.camid for t in query], [t.camid for t in gallery])
    return {k: round(v, 1) for k, v in cmc_summary(cmc, mean_ap).items()}


def _compare(name: str, qf: np.ndarray, gf: np.ndarray, query, gallery) -> dict:
    q_g = euclidean_distances(qf, gf)
    q_q, g_g = euclidean_distances(qf, qf), euclidean_distances(gf, gf)
    out = {"features": name, "plain": _score(q_g, query, gallery)}
    for setting in FLAGS.settings:
        k1, k2, lam = setting.split(":")
        t = time.time()
        re = rerank(q_g, q_q, g_g, int(k1), int(k2), float(lam))
        out[f"rerank {setting}"] = {**_score(re, query, gallery),
                                    "seconds": round(time.time() - t, 2)}
    return out


def main(argv):
    del argv
    dataset = get_dataset("mars", FLAGS.data_root)
    split = dataset.fixed_splits[0]
    query = [dataset.tracklets[i] for i in split.query]
    gallery = [dataset.tracklets[i] for i in split.gallery]
    rows = []
    if FLAGS.model_rows:
        model = keras_crf_reid.load(FLAGS.model, group_len=FLAGS.group_len)
        h, w, _ = model.frame_shape

        def embed(tracklets):
            return np.stack([np.concatenate([model.predict(g) for g in frame_groups(
                list(t.frames), model.group_len, h, w, where=t.key,
                colour_norm=model.colour_norm)]).mean(axis=0)
                for t in tqdm(tracklets, desc="embed", unit="tracklet")])

        t = time.time()
        if FLAGS.features_cache and os.path.isfile(FLAGS.features_cache):
            with np.load(FLAGS.features_cache) as cached:
                qf, gf = cached["query"], cached["gallery"]
        else:
            qf, gf = embed(query), embed(gallery)
            if FLAGS.features_cache:
                np.savez(FLAGS.features_cache, query=qf, gallery=gf)
        rows.append({**_compare(os.path.basename(os.path.normpath(FLAGS.model)), qf, gf, query,
                                gallery), "embed_seconds": round(time.time() - t, 1)})
    for kind in FLAGS.baselines:
        rows.append(_compare(f"baseline {kind}", tracklet_features(query, kind),
                             tracklet_features(gallery, kind), query, gallery))
    print(json.dumps({"data_root": FLAGS.data_root, "model": FLAGS.model,
                      "group_len": FLAGS.group_len, "num_query": len(query),
                      "num_gallery": len(gallery), "rows": rows}, indent=1))


if __name__ == "__main__":
    app.run(main)
