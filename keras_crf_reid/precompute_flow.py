"""Decodes every frame of a dataset and computes its optical flow once, into --cache_dir.

    python -m keras_crf_reid.precompute_flow --flagfile=pipelines/prid.flags --data_root=/data/prid_2011

Training and evaluation then read the cache (store.TrackletStore) instead of recomputing. The
build streams over the tracklets (one per worker thread in memory), shows a progress bar in
frames with an ETA, and writes each tracklet atomically: after a kill or a full disk (an error
naming the entry) re-running keeps the finished tracklets and computes only the missing ones.
"""
from __future__ import annotations

import json
import sys
import time

from absl import app, flags

from keras_crf_reid import cli
from keras_crf_reid.configs import experiment

experiment.define_flags()
flags.DEFINE_integer("cache_workers", 0, "Threads decoding frames and computing flow (0: all cores).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_crf_reid.datasets import DatasetError
    from keras_crf_reid.datasets.store import TrackletStore, drop_unreadable
    from keras_crf_reid.runner.data import load_dataset
    try:
        cfg = experiment.config_from_flags(FLAGS).data
        dataset = load_dataset(cfg, FLAGS.progress)
        t0 = time.time()
        store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image)
        store.build(workers=FLAGS.cache_workers or None, progress=FLAGS.progress)
        kept, _ = drop_unreadable(dataset, store)   # as training will see it
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    # "skipped" counts what load and build left out: entries, undecodable frames, and the
    # tracklets with no readable frame (with their persons where a camera is left without them)
    print(json.dumps({**kept.stats(), "cache": store.dir, "seconds": round(time.time() - t0, 2),
                      "skipped_frames": len(store.skipped_frames),
                      "unreadable_tracklets": len(store.empty)}))
    return 0


if __name__ == "__main__":
    cli.run(main)
