"""Flags shared by the compute benchmarks (bench_peak, bench_train, bench_embed)."""
from __future__ import annotations

from absl import flags

flags.DEFINE_integer("intra_op_threads", 0, "tf.config.threading intra-op threads (0: default).")
flags.DEFINE_integer("inter_op_threads", 0, "tf.config.threading inter-op threads (0: default).")


def apply_thread_flags() -> None:
    """Applies --intra_op_threads / --inter_op_threads before TensorFlow runs any op."""
    import tensorflow as tf

    if flags.FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(flags.FLAGS.intra_op_threads)
    if flags.FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(flags.FLAGS.inter_op_threads)
