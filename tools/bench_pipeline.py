"""Throughput of the training input pipeline (pipeline.pair_dataset); prints one JSON line.

Generates a small synthetic dataset in a temporary folder, builds its frame cache (reporting
`cache_bytes_per_frame`), then times pair batches in subprocesses pinned to 1, 2, ... cores
(`os.sched_setaffinity` before TensorFlow starts, TF intra/inter-op threads and OpenCV threads
set to the same count): `pairs_per_s_by_cores` is the best of --rounds alternating rounds,
`scaling` the ratio of the largest to the smallest core count. `cores_busy_by_cores` (process
CPU seconds per wall second) shows how much of the pinned cores the pipeline actually got: on
a loaded machine it stays below the core count and the scaling with it; `free_cores_probe` is
what busy-looping processes pinned to the same cores got just before. The cached rate reads the
compact cache; the uncached rate (on the largest core count) decodes frames and computes DIS
flow on every access. Compared with the training step's consumption (--train_pairs_per_s, from
bench_train.py), the cached pipeline should deliver at least 3x what training consumes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_ids", 20, "Identities of the synthetic dataset.")
flags.DEFINE_integer("batch_size", 16, "Sequence pairs per batch.")
flags.DEFINE_integer("seq_len", 16, "Frames per sequence.")
flags.DEFINE_integer("num_parallel_calls", -1, "pair_dataset's num_parallel_calls (-1: AUTOTUNE).")
flags.DEFINE_list("cores", ["1", "2"], "Core counts to pin the pipeline to (first N allowed CPUs).")
flags.DEFINE_integer("rounds", 2, "Alternating rounds over --cores; the best rate of each is kept.")
flags.DEFINE_integer("batches", 20, "Timed batches, cached store.")
flags.DEFINE_integer("uncached_batches", 3, "Timed batches, uncached store (0: skip).")
flags.DEFINE_float("max_seconds", 20.0, "Time budget per configuration (at least one batch).")
flags.DEFINE_float("train_pairs_per_s", 0.0, "Training consumption to compare against (0: none).")
flags.DEFINE_float("train_cpu_s_per_pair", 0.0, "Training CPU seconds per pair (0: none): also "
                   "compare CPU costs, which machine load disturbs less than wall time.")
flags.DEFINE_string("data_dir", "", "Reuse this folder for the synthetic data (default: temp).")
flags.DEFINE_integer("child_cores", 0, "Internal: run one measurement pinned to this many cores.")
flags.DEFINE_string("child_root", "", "Internal: dataset folder of the measurement.")
flags.DEFINE_string("child_cache", "", "Internal: cache folder of the measurement ('' uncached).")


def _rate(ds, batches: int, max_seconds: float, warmup: int = 2) -> dict:
    """Pairs/s over up to `batches` batches after `warmup` (start-up, autotuning)."""
    it = iter(ds)
    t0 = time.perf_counter()
    for _ in range(warmup):
        next(it)
    first = time.perf_counter() - t0
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while n < max(1, batches):
        next(it)
        n += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"batches": n, "warmup_s": round(first, 3),
            "pairs_per_s": round(n * FLAGS.batch_size / secs, 2),
            "cpu_s_per_pair": round(cpu / (n * FLAGS.batch_size), 4),
            "cores_busy": round(cpu / secs, 2), "loadavg_1m": round(os.getloadavg()[0], 2)}


def _spin(cpu: int, seconds: float = 1.5) -> float:
    """Busy-loops pinned to `cpu`; returns the share of that core this process obtained."""
    os.sched_setaffinity(0, [cpu])
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        sum(range(10000))
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def free_cores(n: int) -> float:
    """Cores of the first n allowed CPUs that a CPU-bound job actually gets now (load probe)."""
    import multiprocessing
    cpus = sorted(os.sched_getaffinity(0))[:n]
    with multiprocessing.get_context("spawn").Pool(len(cpus)) as pool:
        return round(sum(pool.map(_spin, cpus)), 2)


def _child() -> dict:
    """One measurement in this process, pinned to --child_cores cores."""
    cores = FLAGS.child_cores
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise app.UsageError(f"--cores: {cores} requested, only {len(allowed)} CPUs allowed")
    os.sched_setaffinity(0, allowed[:cores])
    import cv2
    import tensorflow as tf
    cv2.setNumThreads(cores)
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    from keras_crf_reid.datasets.prid2011 import load_prid_layout
    from keras_crf_reid.datasets.pipeline import PairConfig, pair_dataset
    from keras_crf_reid.datasets.store import TrackletStore

    dataset = load_prid_layout(FLAGS.child_root)
    store = TrackletStore(dataset, FLAGS.child_cache or None)
    pairs = PairConfig(seq_len=FLAGS.seq_len, batch_size=FLAGS.batch_size,
                       num_parallel_calls=FLAGS.num_parallel_calls)
    ds, _ = pair_dataset(store, range(len(dataset.tracklets)), pairs)
    batches = FLAGS.batches if FLAGS.child_cache else FLAGS.uncached_batches
    return {"cores": cores, **_rate(ds, batches, FLAGS.max_seconds)}


def _measure(cores: int, root: str, cache: str) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), f"--child_cores={cores}",
            f"--child_root={root}", f"--child_cache={cache}", f"--batch_size={FLAGS.batch_size}",
            f"--seq_len={FLAGS.seq_len}", f"--num_parallel_calls={FLAGS.num_parallel_calls}",
            f"--batches={FLAGS.batches}", f"--uncached_batches={FLAGS.uncached_batches}",
            f"--max_seconds={FLAGS.max_seconds}"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"bench_pipeline child ({cores} cores) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.child_cores:
        print(json.dumps(_child()))
        return
    from keras_crf_reid.datasets.prid2011 import load_prid_layout
    from keras_crf_reid.datasets.synthetic import generate_synthetic
    from keras_crf_reid.datasets.store import TrackletStore

    cores = sorted({int(c) for c in FLAGS.cores})
    out: dict = {"benchmark": "pipeline", "num_ids": FLAGS.num_ids,
                 "batch_pairs": FLAGS.batch_size, "seq_len": FLAGS.seq_len,
                 "num_parallel_calls": FLAGS.num_parallel_calls,
                 "loadavg_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate_synthetic(os.path.join(FLAGS.data_dir or tmp, f"syn_{FLAGS.num_ids}"),
                                  num_ids=FLAGS.num_ids, seed=0, progress=False)
        dataset = load_prid_layout(root)
        out["generate_s"] = round(time.perf_counter() - t0, 2)
        out["tracklets"] = len(dataset.tracklets)
        out["frames"] = dataset.stats()["frames"]

        t0 = time.perf_counter()
        cache = os.path.join(tmp, "cache")
        store = TrackletStore(dataset, cache).build(progress=False)
        out["cache_build_s"] = round(time.perf_counter() - t0, 2)
        size = sum(os.path.getsize(os.path.join(store.dir, f)) for f in os.listdir(store.dir))
        out["cache_bytes_per_frame"] = round(size / int(store.lengths().sum()))

        out["free_cores_probe"] = {str(c): free_cores(c) for c in cores}
        runs: dict[int, list[dict]] = {c: [] for c in cores}
        for _ in range(max(1, FLAGS.rounds)):
            for c in cores:
                runs[c].append(_measure(c, root, cache))
        best = {c: max(r, key=lambda m: m["pairs_per_s"]) for c, r in runs.items()}
        out["pairs_per_s_by_cores"] = {str(c): best[c]["pairs_per_s"] for c in cores}
        out["all_rounds_pairs_per_s"] = {str(c): [m["pairs_per_s"] for m in r] for c, r in runs.items()}
        out["cpu_s_per_pair_by_cores"] = {str(c): best[c]["cpu_s_per_pair"] for c in cores}
        out["cores_busy_by_cores"] = {str(c): best[c]["cores_busy"] for c in cores}
        if len(cores) > 1:
            out["scaling"] = round(best[cores[-1]]["pairs_per_s"] / best[cores[0]]["pairs_per_s"], 2)
        out["cached"] = best[cores[-1]]
        if FLAGS.uncached_batches:
            out["uncached"] = _measure(cores[-1], root, "")
            out["cache_speedup"] = round(out["cached"]["pairs_per_s"]
                                         / out["uncached"]["pairs_per_s"], 1)
    out["cached_pairs_per_s"] = out["pairs_per_s"] = out["cached"]["pairs_per_s"]
    if FLAGS.uncached_batches:
        out["uncached_pairs_per_s"] = out["uncached"]["pairs_per_s"]
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
