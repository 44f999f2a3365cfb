"""Are the learned fusion weights worth learning? Scores W_u x_upper + W_l x_lower + W_g x_full
on a split for a grid of weights, beside the run's learned weights and equal weights.

    PYTHONPATH=. python tools/fusion_weights_grid.py --flagfile=pipelines/mars_multi.flags \
        --parts=full,upper,lower

Reads the run's three part checkpoints (`<run>/split_<k>/<part>/ckpt`) and, if present, its
fusion checkpoint; embeds the split's query and gallery once per part (with the run's --tta
views); then ranks every weight triple on the grid. Euclidean ranking is invariant to a common
scale, so W_g is fixed at 1 and W_u, W_l run over --grid. On a dataset whose test split is its
only held-out set (MARS here) the grid's best row is an oracle upper bound, not a recipe:
compare it with the learned and the equal weights. Prints JSON; --out_md writes a table.
"""
from __future__ import annotations

import itertools
import json
import os

import numpy as np
from absl import app, flags

from keras_crf_reid.configs import experiment

experiment.define_flags()
flags.DEFINE_list("grid", ["0", "0.25", "0.5", "0.75", "1", "1.5", "2"],
                  "Values of W_u and W_l (W_g = 1).")
flags.DEFINE_string("out_md", "", "Also write a markdown table here.")
FLAGS = flags.FLAGS


def score(feats: dict[str, np.ndarray], weights: dict[str, float], split, store) -> dict:
    """Rank-1/5/20 and mAP of the weighted sum of per-part features."""
    from keras_crf_reid.evaluation.protocol import score_distances, split_distances

    fused = sum(w * feats[p] for p, w in weights.items())
    index = {i: k for k, i in enumerate(feats["index"])}
    dist = split_distances({i: fused[index[i]] for i in feats["index"]}, split)
    m = score_distances(dist, store, split)
    return {k: round(float(m[k]), 2) for k in ("rank1", "rank5", "rank20", "mAP")}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_crf_reid.evaluation.protocol import compiled_embedder, embed_tracklets
    from keras_crf_reid.models import factory
    from keras_crf_reid.models.fusion import FUSION_ORDER, fusion_weights
    from keras_crf_reid.models.tta import scored_model
    from keras_crf_reid.runner.data import prepare
    from keras_crf_reid.runner.split import split_dir

    cfg = experiment.config_from_flags(FLAGS)
    data = prepare(cfg.data, cfg.run.progress)
    split_id = data.split_ids(cfg.data)[0]
    split, folder = data.splits[split_id], split_dir(cfg, split_id)
    indices = sorted(set(split.query) | set(split.gallery))
    feats: dict[str, np.ndarray] = {"index": np.asarray(indices)}
    for part in FUSION_ORDER:
        model = factory.restore_checkpoint(os.path.join(folder, part, "ckpt"), cfg.model, part)
        embed = compiled_embedder(scored_model(model, cfg.eval.tta, cfg.model.colour_norm))
        feats[part] = embed_tracklets(embed, data.store, indices, cfg.eval.seq_len,
                                      progress=cfg.run.progress).astype(np.float64)
    rows = []
    grid = [float(v) for v in FLAGS.grid]
    for wu, wl in itertools.product(grid, grid):
        rows.append({"weights": {"upper": wu, "lower": wl, "full": 1.0},
                     **score(feats, {"upper": wu, "lower": wl, "full": 1.0}, split, data.store)})
    equal = score(feats, {"upper": 1.0, "lower": 1.0, "full": 1.0}, split, data.store)
    out = {"split": split_id, "equal": equal, "grid": rows,
           "best_mAP": max(rows, key=lambda r: r["mAP"]),
           "best_rank1": max(rows, key=lambda r: (r["rank1"], r["mAP"]))}
    fusion_dir = os.path.join(folder, "fusion", "ckpt")
    if os.path.isdir(fusion_dir):
        learned = fusion_weights(factory.restore_checkpoint(fusion_dir, cfg.model, "fusion"))
        out["learned"] = {"weights": learned, **score(feats, learned, split, data.store)}
    if FLAGS.out_md:
        lines = ["| Weights | W_u | W_l | W_g | Rank-1 | Rank-5 | Rank-20 | mAP |",
                 "|:---|---:|---:|---:|---:|---:|---:|---:|"]
        named = [("equal", {"weights": {"upper": 1, "lower": 1, "full": 1}, **equal})]
        named += [("learned", out["learned"])] if "learned" in out else []
        named += [("best mAP (oracle)", out["best_mAP"]), ("best rank-1 (oracle)", out["best_rank1"])]
        for name, r in named:
            w = r["weights"]
            lines.append(f"| {name} | {w['upper']:.3g} | {w['lower']:.3g} | {w['full']:.3g} | {r['rank1']:.1f} "
                         f"| {r['rank5']:.1f} | {r['rank20']:.1f} | {r['mAP']:.1f} |")
        with open(FLAGS.out_md, "w") as f:
            f.write("\n".join(lines) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
