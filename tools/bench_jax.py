"""The CRF training step on Keras's JAX backend at several batch sizes and precisions; one JSON
line per (precision, batch size), then a summary line.

For the GPU machine (tools/bench_gpu_jax.sh runs it there): jax_step.JaxTrainStep on random
in-memory batches already on the device, float32 (the "float32" policy; XLA may use TF32 for its
matmuls and convolutions on GPUs) and bfloat16 (Keras's "mixed_bfloat16" policy: bfloat16
compute, float32 weights), pairs/s and achieved FLOP/s (keras_crf_reid.models.flops.crf_train_flops)
as a share of the matmul peak measured in the same precision in jax.jit (--peak_size). A batch
size that fails (e.g. out of device memory) prints its error and the others still run. Needs
KERAS_BACKEND=jax; runs on CPU too (tiny flags for a check).

    KERAS_BACKEND=jax PYTHONPATH=. python tools/bench_jax.py --batch_sizes=16,64,256
"""
from __future__ import annotations

import json
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["16", "64", "256"], "Sequence pairs per step.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "float32 and/or bfloat16 "
                  "(mixed_bfloat16 policy).")
flags.DEFINE_integer("seq_len", 16, "Frames per sequence.")
flags.DEFINE_list("filters", ["16", "32", "32"], "Conv filters (the paper's by default).")
flags.DEFINE_integer("embed_dim", 128, "Embedding size.")
flags.DEFINE_integer("num_classes", 100, "Identities of the classifier.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after the first (compilation).")
flags.DEFINE_integer("steps", 10, "Timed steps per batch size.")
flags.DEFINE_float("max_seconds", 20.0, "Stop timing a batch size after this long.")
flags.DEFINE_integer("peak_size", 8192, "Square matmul size of the peak measurement.")
flags.DEFINE_integer("peak_repeats", 5, "Timed peak calls; the fastest counts.")

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def bench_one(precision: str, batch: int, peak_gflops: float) -> dict:
    """Figures of the step at one precision and batch size (fresh model and optimizer)."""
    import jax
    import keras
    import numpy as np

    from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS
    from keras_crf_reid.models.flops import crf_train_flops, throughput_figures, time_interleaved
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    from keras_crf_reid.training.jax_step import JaxTrainStep

    keras.utils.clear_session()  # before the policy: clearing the session resets it
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    cfg = ModelConfig(filters=tuple(int(f) for f in FLAGS.filters), embed_dim=FLAGS.embed_dim)
    model = build_crf_model(cfg)
    classifier = keras.layers.Dense(FLAGS.num_classes, name="id_classifier", dtype="float32")
    classifier.build((None, model.output_shape[-1]))
    step = JaxTrainStep(model, classifier, keras.optimizers.SGD(1e-3, momentum=0.9))
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    shape = (batch, FLAGS.seq_len, FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS)
    inputs = (jax.random.normal(ka, shape), jax.random.normal(kb, shape))
    rng = np.random.default_rng(0)
    targets = {"label": jax.numpy.asarray((np.arange(batch) < batch // 2).astype(np.float32)),
               "class_a": jax.numpy.asarray(rng.integers(0, FLAGS.num_classes, batch), "int32"),
               "class_b": jax.numpy.asarray(rng.integers(0, FLAGS.num_classes, batch), "int32")}
    work = lambda: float(step(inputs, targets)["total"])  # noqa: E731
    t0 = time.perf_counter()
    loss = work()
    compile_s = time.perf_counter() - t0
    for _ in range(FLAGS.warmup):
        work()
    m = time_interleaved(work, FLAGS.steps, None, FLAGS.max_seconds)
    m["peak"] = [peak_gflops]
    flops = crf_train_flops(cfg, 2 * batch * FLAGS.seq_len)
    out = {"precision": precision, "batch_pairs": batch, "seq_len": FLAGS.seq_len,
           "first_step_seconds": round(compile_s, 2), "first_loss": round(loss, 4),
           "gflop_per_step": round(flops / 1e9, 2)}
    out.update(throughput_figures(m, flops, batch, "pairs"))
    out["fraction_of_peak_median"] = round(flops / out["seconds_median"] / 1e9 / peak_gflops, 3)
    return out


def main(argv):
    del argv
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise app.UsageError("run with KERAS_BACKEND=jax")
    from keras_crf_reid.models.flops import measure_matmul_gflops

    device = jax.devices()[0]
    info = {"device": device.platform, "device_kind": getattr(device, "device_kind", ""),
            "jax": jax.__version__, "keras": keras.__version__}
    print(json.dumps({"benchmark": "jax_info", **info}), flush=True)
    peaks, rows = {}, []
    for precision in FLAGS.precisions:
        if precision not in POLICIES:
            raise app.UsageError(f"--precisions: choose from {', '.join(POLICIES)}, got {precision!r}")
        peaks[precision] = round(measure_matmul_gflops(FLAGS.peak_size, 4, FLAGS.peak_repeats,
                                                       precision), 1)
        print(json.dumps({"benchmark": "jax_peak", "precision": precision,
                          "size": FLAGS.peak_size, "peak_gflops": peaks[precision]}), flush=True)
        for batch in (int(b) for b in FLAGS.batch_sizes):
            try:
                row = bench_one(precision, batch, peaks[precision])
            except Exception as e:  # noqa: BLE001  (e.g. out of device memory: go on)
                row = {"precision": precision, "batch_pairs": batch,
                       "error": f"{type(e).__name__}: {str(e)[:300]}"}
            rows.append({"benchmark": "jax_train", **row})
            print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if "error" not in r]
    best = {p: max((r for r in ok if r["precision"] == p), key=lambda r: r["pairs_per_s"],
                   default=None) for p in peaks}
    print(json.dumps({"benchmark": "jax_summary", **info, "peak_gflops": peaks,
                      "best": {p: None if r is None else {k: r[k] for k in (
                          "batch_pairs", "pairs_per_s", "gflops", "fraction_of_peak")}
                               for p, r in best.items()},
                      "errors": len(rows) - len(ok)}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    app.run(main)
