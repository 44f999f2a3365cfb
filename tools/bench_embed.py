"""Inference throughput of the CRF network on 16-frame sequences; prints one JSON line.

For each batch size, times the model in inference mode inside a tf.function (as evaluation and
serving run it) on random in-memory sequences: sequences per second, and achieved FLOP/s
(keras_crf_reid.models.flops) as a fraction of the matmul peak sampled between calls.

With --tracklet_frames=N it measures instead the memory of `serving.inference.load(...).embed` on
one folder of N frames (default-config model saved as .keras): peak RSS after a warm-up embed of
16 frames, peak RSS after the N-frame embed, and its wall time. Run it in a fresh process.

    python tools/bench_embed.py --tracklet_frames=2000
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags
from bench_util import peak_rss_mb, write_frames
from bench_flags import apply_thread_flags

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "8", "32"], "Sequences per call.")
flags.DEFINE_integer("seq_len", 16, "Frames per sequence.")
flags.DEFINE_enum("variant", "cnn_rnn", ["cnn", "rnn", "cnn_rnn"], "Model variant.")
flags.DEFINE_integer("calls", 8, "Timed calls per batch size.")
flags.DEFINE_float("max_seconds", 10.0, "Time budget per batch size (at least one call).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the embedding function.")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 policy (float16 compute; for GPUs).")
flags.DEFINE_float("peak_gflops", 0.0, "Matmul peak to compare against (0: sample it here).")
flags.DEFINE_integer("tracklet_frames", 0, "Measure peak RSS of embedding one folder of this many "
                     "frames instead (0: the throughput benchmark).", lower_bound=0)






def bench_tracklet(frames: int) -> dict:
    """Peak RSS and time of load(...).embed on a folder of `frames` frames."""
    import tempfile

    import keras

    from keras_crf_reid.geometry import FRAME_WIDTH, NUM_CHANNELS
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    from keras_crf_reid.serving import inference

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        path = os.path.join(tmp, "crf.keras")
        build_crf_model(ModelConfig()).save(path)
        small = write_frames(os.path.join(tmp, "small"), 16)
        big = write_frames(os.path.join(tmp, "big"), frames)
        embedder = inference.load(path)
        embedder.embed(small)
        before = peak_rss_mb()
        t0 = time.perf_counter()
        embedder.embed(big)
        seconds = time.perf_counter() - t0
        after = peak_rss_mb()
    return {"benchmark": "embed_tracklet", "frames": frames, "seconds": round(seconds, 2),
            "peak_rss_mb_after_warmup": before, "peak_rss_mb": after,
            "peak_growth_mb": round(after - before, 1), "loadavg_1m": round(os.getloadavg()[0], 2)}


def main(argv):
    del argv
    if FLAGS.tracklet_frames:
        print(json.dumps(bench_tracklet(FLAGS.tracklet_frames)))
        return
    import keras
    import numpy as np
    import tensorflow as tf

    apply_thread_flags()
    from keras_crf_reid.models.flops import (crf_forward_flops, matmul_probe, throughput_figures,
                                             time_interleaved)
    from keras_crf_reid.geometry import FRAME_WIDTH, NUM_CHANNELS
    from keras_crf_reid.models.network import ModelConfig, build_crf_model

    keras.utils.set_random_seed(0)
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    cfg = ModelConfig(variant=FLAGS.variant)
    model = build_crf_model(cfg)
    embed = tf.function(lambda x: model(x, training=False), jit_compile=FLAGS.jit_compile or None)
    probe = None if FLAGS.peak_gflops else matmul_probe(chain=2)
    rng = np.random.default_rng(0)
    t = FLAGS.seq_len
    rows = []
    for bs in (int(b) for b in FLAGS.batch_sizes):
        x = tf.constant(rng.standard_normal(
            (bs, t, cfg.input_height, FRAME_WIDTH, NUM_CHANNELS), np.float32))
        work = lambda: embed(x).numpy()
        t0 = time.perf_counter()
        work()
        first = time.perf_counter() - t0
        work()
        m = time_interleaved(work, FLAGS.calls, probe, FLAGS.max_seconds)
        rows.append({"batch": bs, "first_call_s": round(first, 3), **throughput_figures(
            m, crf_forward_flops(cfg, bs * t), bs, "seqs", FLAGS.peak_gflops)})
    key = "fraction_of_peak_cpu" if "fraction_of_peak_cpu" in rows[0] else "fraction_of_peak"
    best = max(rows, key=lambda r: r[key])
    print(json.dumps({
        "benchmark": "embed", "seq_len": t, "variant": cfg.variant,
        "jit_compile": FLAGS.jit_compile, "mixed_precision": FLAGS.mixed_precision,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "gflop_per_seq": round(crf_forward_flops(cfg, t) / 1e9, 3), "by_batch": rows,
        "best_batch": best["batch"], "fraction_of_peak": best["fraction_of_peak"],
        "fraction_of_peak_cpu": best.get("fraction_of_peak_cpu"),
        "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    app.run(main)
