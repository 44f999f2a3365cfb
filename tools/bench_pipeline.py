"""Throughput of the training input pipeline (pipeline.pair_dataset); prints one JSON line.

Generates a small synthetic dataset in a temporary folder and times pair batches delivered
(a) from a TrackletStore with its on-disk frame+flow cache built first, and (b) uncached,
decoding frames and computing DIS flow on every access. Compared with the training step's
consumption (--train_pairs_per_s, from bench_train.py), the cached pipeline should deliver at
least 3x what training consumes so the step never waits for data.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_ids", 20, "Identities of the synthetic dataset.")
flags.DEFINE_integer("batch_size", 16, "Sequence pairs per batch.")
flags.DEFINE_integer("seq_len", 16, "Frames per sequence.")
flags.DEFINE_integer("parallel_calls", 2, "pair_dataset's num_parallel_calls.")
flags.DEFINE_integer("batches", 20, "Timed batches, cached store.")
flags.DEFINE_integer("uncached_batches", 3, "Timed batches, uncached store (0: skip).")
flags.DEFINE_float("max_seconds", 20.0, "Time budget per configuration (at least one batch).")
flags.DEFINE_float("train_pairs_per_s", 0.0, "Training consumption to compare against (0: none).")
flags.DEFINE_float("train_cpu_s_per_pair", 0.0, "Training CPU seconds per pair (0: none): also "
                   "compare CPU costs, which machine load disturbs less than wall time.")
flags.DEFINE_string("data_dir", "", "Reuse this folder for the synthetic data (default: temp).")


def _rate(ds, batches: int, max_seconds: float) -> dict:
    """Pairs/s over up to `batches` batches after the first (which includes start-up)."""
    it = iter(ds)
    t0 = time.perf_counter()
    next(it)
    first = time.perf_counter() - t0
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while n < max(1, batches):
        next(it)
        n += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"batches": n, "first_batch_s": round(first, 3),
            "pairs_per_s": round(n * FLAGS.batch_size / secs, 2),
            "cpu_s_per_pair": round(cpu / (n * FLAGS.batch_size), 4)}


def main(argv):
    del argv
    from keras_crf_reid.datasets.prid2011 import load_prid_layout
    from keras_crf_reid.datasets.synthetic import generate_synthetic
    from keras_crf_reid.datasets.pipeline import PairConfig, pair_dataset
    from keras_crf_reid.datasets.store import TrackletStore

    out: dict = {"benchmark": "pipeline", "num_ids": FLAGS.num_ids,
                 "batch_pairs": FLAGS.batch_size, "seq_len": FLAGS.seq_len,
                 "parallel_calls": FLAGS.parallel_calls}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate_synthetic(os.path.join(FLAGS.data_dir or tmp, f"syn_{FLAGS.num_ids}"),
                                  num_ids=FLAGS.num_ids, seed=0, progress=False)
        dataset = load_prid_layout(root)
        out["generate_s"] = round(time.perf_counter() - t0, 2)
        out["tracklets"] = len(dataset.tracklets)
        out["frames"] = dataset.stats()["frames"]
        pairs = PairConfig(seq_len=FLAGS.seq_len, batch_size=FLAGS.batch_size)
        train = range(len(dataset.tracklets))

        t0 = time.perf_counter()
        cached = TrackletStore(dataset, os.path.join(tmp, "cache")).build(progress=False)
        out["cache_build_s"] = round(time.perf_counter() - t0, 2)
        ds, _ = pair_dataset(cached, train, pairs, parallel_calls=FLAGS.parallel_calls)
        out["cached"] = _rate(ds, FLAGS.batches, FLAGS.max_seconds)
        if FLAGS.uncached_batches:
            ds, _ = pair_dataset(TrackletStore(dataset, None), train, pairs,
                                 parallel_calls=FLAGS.parallel_calls)
            out["uncached"] = _rate(ds, FLAGS.uncached_batches, FLAGS.max_seconds)
            out["cache_speedup"] = round(out["cached"]["pairs_per_s"]
                                         / out["uncached"]["pairs_per_s"], 1)
    out["pairs_per_s"] = out["cached"]["pairs_per_s"]
    if FLAGS.train_pairs_per_s:
        out["train_pairs_per_s"] = FLAGS.train_pairs_per_s
        out["ratio_to_train"] = round(out["pairs_per_s"] / FLAGS.train_pairs_per_s, 2)
    if FLAGS.train_cpu_s_per_pair:
        out["cpu_ratio_to_train"] = round(
            FLAGS.train_cpu_s_per_pair / out["cached"]["cpu_s_per_pair"], 2)
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
