"""Decodes every frame of a dataset and computes its optical flow once, into --cache_dir.

    python tools/precompute_flow.py --flagfile=pipelines/prid.flags --data_root=/data/prid_2011

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

from keras_crf_reid import flags as crf_flags
from keras_crf_reid.datasets.base import DatasetError

flags.DEFINE_integer("workers", 0, "Threads decoding frames and computing flow (0: all cores).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_crf_reid.experiment import config_from_flags, load_data
    from keras_crf_reid.store import TrackletStore
    try:
        cfg = config_from_flags(FLAGS)
        dataset = load_data(cfg)
        t0 = time.time()
        store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image)
        store.build(workers=FLAGS.workers or None, progress=cfg.progress)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({**dataset.stats(), "cache": store.dir, "seconds": round(time.time() - t0, 2),
                      "skipped_frames": len(store.skipped_frames)}))
    return 0


if __name__ == "__main__":
    app.run(main, argv=crf_flags.resolve_flagfile_argv(sys.argv))
