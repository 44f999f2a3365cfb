"""Single-frame re-id on MARS's official split, as the tracker uses a model: one frame of each
query tracklet against one frame of each gallery tracklet, each embedded as a one-frame sequence
with zero optical flow (keras_crf_reid.tracking.pipeline.model_appearance); rank-1/5/20 and mAP
(MARS's rule: same-camera matches ignored). With --sequence also the whole-tracklet figure
(frame groups with flow, as the evaluation embeds them) beside it. Prints JSON.

    .venv/bin/python tools/eval_single_frame.py --model=saved_models/crf_mars [--sequence]
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_crf_reid  # noqa: E402
from keras_crf_reid.datasets import get_dataset  # noqa: E402
from keras_crf_reid.datasets.frames import read_frames  # noqa: E402
from keras_crf_reid.evaluation.metrics import cmc_summary, euclidean_distances, evaluate_rank  # noqa: E402
from keras_crf_reid.serving.inference import frame_groups  # noqa: E402
from keras_crf_reid.tracking.pipeline import model_appearance  # noqa: E402

flags.DEFINE_string("data_root", "../shared/realdata/mars_multi", "MARS-layout dataset.")
flags.DEFINE_string("model", "saved_models/crf_mars", "Model measured.")
flags.DEFINE_list("frames", ["middle"], "Which frame of each tracklet: first, middle, last or "
                  "an index; several give one row each.")
flags.DEFINE_boolean("sequence", False, "Also the whole-tracklet (sequence) figure.")
flags.DEFINE_integer("batch", 64, "Crops per forward pass.", lower_bound=1)
FLAGS = flags.FLAGS


def pick(frames: list[str], which: str) -> str:
    """The path of one frame of a tracklet: first, middle, last or an index (clipped)."""
    if which == "first":
        return frames[0]
    if which == "last":
        return frames[-1]
    if which == "middle":
        return frames[len(frames) // 2]
    try:
        return frames[min(int(which), len(frames) - 1)]
    except ValueError:
        raise app.UsageError(f"--frames: {which!r} is not first, middle, last or an "
                             f"index") from None


def single_frame_features(embed, tracklets, which: str, batch: int = 64) -> np.ndarray:
    """(N, D) embeddings of one frame of each tracklet through `embed` (crops -> features)."""
    crops = read_frames([pick(list(t.frames), which) for t in tracklets], on_bad_image="fail")[0]
    return np.concatenate([embed(crops[i:i + batch]) for i in range(0, len(crops), batch)])


def sequence_features(model, tracklets) -> np.ndarray:
    """(N, D): the mean of each tracklet's frame-group embeddings (keras_crf_reid/serving/rerank_eval.py's way)."""
    h, w, _ = model.frame_shape
    return np.stack([np.concatenate([model.predict(g) for g in frame_groups(
        list(t.frames), model.group_len, h, w, where=t.key, colour_norm=model.colour_norm)]
    ).mean(axis=0) for t in tracklets])


def score(qf: np.ndarray, gf: np.ndarray, query, gallery) -> dict:
    """Rank-1/5/10/20 and mAP (percent) of query features against gallery features."""
    cmc, mean_ap = evaluate_rank(euclidean_distances(qf, gf), [t.pid for t in query],
                                 [t.pid for t in gallery], [t.camid for t in query],
                                 [t.camid for t in gallery])
    return {k: round(v, 1) for k, v in cmc_summary(cmc, mean_ap).items()}


def main(argv):
    del argv
    dataset = get_dataset("mars", FLAGS.data_root)
    split = dataset.fixed_splits[0]
    query = [dataset.tracklets[i] for i in split.query]
    gallery = [dataset.tracklets[i] for i in split.gallery]
    model = keras_crf_reid.load(FLAGS.model)
    embed = model_appearance(model)
    rows = []
    for which in FLAGS.frames:
        t = time.time()
        qf = single_frame_features(embed, query, which, FLAGS.batch)
        gf = single_frame_features(embed, gallery, which, FLAGS.batch)
        rows.append({"input": f"one frame ({which}), no flow", **score(qf, gf, query, gallery),
                     "seconds": round(time.time() - t, 1)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if FLAGS.sequence:
        t = time.time()
        qf, gf = sequence_features(model, query), sequence_features(model, gallery)
        rows.append({"input": f"whole tracklet ({model.group_len}-frame groups, flow)",
                     **score(qf, gf, query, gallery), "seconds": round(time.time() - t, 1)})
    print(json.dumps({"data_root": FLAGS.data_root, "model": FLAGS.model,
                      "num_query": len(query), "num_gallery": len(gallery), "rows": rows},
                     indent=1))


if __name__ == "__main__":
    app.run(main)
