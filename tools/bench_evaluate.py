"""Times distances + CMC + mAP at MARS test scale and prints one JSON line.

Features are synthetic (an identity centre plus noise, fixed seed) so that correct matches are
spread through the ranking as with a real model; labels follow MARS-like proportions: 1980
queries, 9330 gallery tracklets, 636 identities, 6 cameras, a few junk (-1) gallery tracklets.
"""
from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
from absl import app, flags

from keras_crf_reid.datasets.base import JUNK_PID
from keras_crf_reid.evaluation import metrics

FLAGS = flags.FLAGS
flags.DEFINE_integer("queries", 1980, "Number of query tracklets.")
flags.DEFINE_integer("gallery", 9330, "Number of gallery tracklets.")
flags.DEFINE_integer("dim", 128, "Feature dimension.")
flags.DEFINE_integer("ids", 636, "Number of test identities.")
flags.DEFINE_integer("cams", 6, "Number of cameras.")
flags.DEFINE_float("junk_fraction", 0.02, "Fraction of gallery tracklets with the junk pid -1.")
flags.DEFINE_float("noise", 1.5, "Feature noise relative to the identity-centre spread.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions; the fastest is reported.")


def synthetic_split(num_q: int, num_g: int, dim: int, num_ids: int, num_cams: int,
                    junk_fraction: float, noise: float, seed: int):
    """Query/gallery features, pids and camids with every query identity in the gallery."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim)).astype(np.float32)
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = np.concatenate([np.arange(num_ids), rng.integers(0, num_ids, num_g - num_ids)])
    rng.shuffle(g_pids)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    qf = centres[q_pids] + noise * rng.standard_normal((num_q, dim)).astype(np.float32)
    gf = centres[g_pids] + noise * rng.standard_normal((num_g, dim)).astype(np.float32)
    g_pids[rng.random(num_g) < junk_fraction] = JUNK_PID
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams) -> tuple[np.ndarray, float]:
    """The timed work: distances, then CMC and mAP."""
    distmat = metrics.euclidean_distances(qf, gf)
    return metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20)


def main(argv):
    del argv
    data = synthetic_split(FLAGS.queries, FLAGS.gallery, FLAGS.dim, FLAGS.ids, FLAGS.cams,
                           FLAGS.junk_fraction, FLAGS.noise, FLAGS.seed)
    evaluate(*data)  # warm-up: BLAS threads, page faults
    times = []
    for _ in range(max(1, FLAGS.repeats)):
        t0 = time.perf_counter()
        cmc, mean_ap = evaluate(*data)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    evaluate(*data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    summary = metrics.cmc_summary(cmc, mean_ap)
    print(json.dumps({
        "queries": FLAGS.queries, "gallery": FLAGS.gallery, "dim": FLAGS.dim,
        "seconds": round(min(times), 4), "seconds_all": [round(t, 4) for t in times],
        "peak_mem_mb": round(peak / 2**20, 1),
        "rank1": round(summary["rank1"], 4), "mAP": round(summary["mAP"], 4),
    }))


if __name__ == "__main__":
    app.run(main)
