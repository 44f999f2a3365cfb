"""Measures the machine's dense float32 matmul FLOP/s in TensorFlow; prints one JSON line.

This is the ceiling the other benchmarks compare against (`fraction_of_peak`): chained square
matmuls in a tf.function, warmed up, best of several timed runs, for a few sizes.
"""
from __future__ import annotations

import json
import os

from absl import app, flags
from bench_flags import apply_thread_flags

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["1024", "2048", "4096"], "Square matmul sizes to time.")
flags.DEFINE_integer("chain", 4, "Matmuls chained in one tf.function call.")
flags.DEFINE_integer("repeats", 5, "Timed calls per size; the fastest counts.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float16", "bfloat16"],
                  "Matmul precision (float16: the tensor-core peak for --mixed_precision on GPUs).")


def main(argv):
    del argv
    import tensorflow as tf

    from keras_crf_reid.models.flops import measure_matmul_gflops

    apply_thread_flags()
    by_size = {int(n): round(measure_matmul_gflops(int(n), FLAGS.chain, FLAGS.repeats,
                                                   FLAGS.dtype), 1)
               for n in FLAGS.sizes}
    print(json.dumps({
        "benchmark": "peak", "dtype": FLAGS.dtype, "gflops_by_size": by_size,
        "peak_gflops": max(by_size.values()), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    app.run(main)
