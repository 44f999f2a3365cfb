"""Training throughput of the CRF network; prints one JSON line.

Times the Trainer's own distributed step function (forward of both sides, losses, gradients,
clipping, SGD update) on random tensors already in memory, so the figure is the step alone:
sequence pairs per second, and achieved FLOP/s (keras_crf_reid.models.flops.crf_train_flops) as a
fraction of the matmul peak, sampled between steps so both see the same machine load.
--pipeline also times steps fed by pipeline.pair_dataset from a cached synthetic dataset.
--pk also times, interleaved with the pair step (same machine load), the step on a P x K
identity batch (--num_persons x --num_instances sequences, batch-hard triplet loss).
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

from absl import app, flags
from bench_flags import apply_thread_flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 16, "Sequence pairs per step (the paper's 16).")
flags.DEFINE_integer("seq_len", 16, "Frames per sequence.")
flags.DEFINE_enum("variant", "cnn_rnn", ["cnn", "rnn", "cnn_rnn"], "Model variant.")
flags.DEFINE_integer("warmup", 2, "Untimed steps (tracing, compilation).")
flags.DEFINE_integer("steps", 8, "Timed steps.")
flags.DEFINE_float("max_seconds", 30.0, "Stop timing after this long (at least one step).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step.")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 policy and loss scaling.")
flags.DEFINE_float("peak_gflops", 0.0, "Matmul peak to compare against (0: sample it here).")
flags.DEFINE_bool("pipeline", False, "Also time steps fed by pair_dataset (cached synthetic).")
flags.DEFINE_integer("pipeline_ids", 20, "Identities of the synthetic dataset for --pipeline.")
flags.DEFINE_bool("pk", False, "Also time the P x K step, interleaved with the pair step.")
flags.DEFINE_integer("num_persons", 8, "P of the --pk batch.")
flags.DEFINE_integer("num_instances", 4, "K of the --pk batch.")


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    apply_thread_flags()
    from keras_crf_reid.geometry import INPUT_SHAPE
    from keras_crf_reid.models.flops import (crf_train_flops, matmul_probe, throughput_figures,
                                             time_interleaved)
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    from keras_crf_reid.training.trainer import TrainConfig, Trainer

    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(variant=FLAGS.variant)
    bs, t = FLAGS.batch_size, FLAGS.seq_len
    num_classes = 100
    tcfg = TrainConfig(steps=10 ** 9, jit_compile=FLAGS.jit_compile,
                       mixed_precision=FLAGS.mixed_precision)
    rng = np.random.default_rng(0)
    shape = (bs, t, *INPUT_SHAPE)
    inputs = (tf.constant(rng.standard_normal(shape, np.float32)),
              tf.constant(rng.standard_normal(shape, np.float32)))
    targets = {"label": tf.constant((np.arange(bs) < bs // 2).astype(np.float32)),
               "class_a": tf.constant(rng.integers(0, num_classes, bs)),
               "class_b": tf.constant(rng.integers(0, num_classes, bs))}
    probe = None if FLAGS.peak_gflops else matmul_probe(chain=2)
    out: dict = {"benchmark": "train", "batch_pairs": bs, "seq_len": t, "variant": cfg.variant,
                 "jit_compile": FLAGS.jit_compile, "mixed_precision": FLAGS.mixed_precision,
                 "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                 "gflop_per_step": round(crf_train_flops(cfg, 2 * bs * t) / 1e9, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(build_crf_model(cfg), num_classes, tcfg, tmp)
        step = trainer._make_step(bs)
        work = lambda: float(step(inputs, targets)["total"])
        t0 = time.perf_counter()
        work()
        out["first_step_seconds"] = round(time.perf_counter() - t0, 2)
        for _ in range(FLAGS.warmup - 1):
            work()
        m = time_interleaved(work, FLAGS.steps, probe, FLAGS.max_seconds)
        out.update(throughput_figures(m, crf_train_flops(cfg, 2 * bs * t), bs, "pairs",
                                       FLAGS.peak_gflops))
        if FLAGS.pipeline:
            out["pipeline_pairs_per_s"] = _pipeline_rate(trainer, step, tmp)
    if FLAGS.pk:
        with tempfile.TemporaryDirectory() as tmp:
            out.update(_pk_compare(cfg, tcfg, inputs, targets, num_classes, tmp))
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def _pk_compare(cfg, tcfg, inputs, targets, num_classes: int, tmp: str) -> dict:
    """Median wall and CPU seconds of the pair step and the P x K triplet step, alternating."""
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from keras_crf_reid.models.flops import time_interleaved
    from keras_crf_reid.models.network import build_crf_model
    from keras_crf_reid.training.trainer import Trainer

    p, k = FLAGS.num_persons, FLAGS.num_instances
    rng = np.random.default_rng(1)
    pk_x = tf.constant(rng.standard_normal((p * k,) + tuple(inputs[0].shape[1:]), np.float32))
    pk_y = {"class": tf.constant(np.repeat(rng.choice(num_classes, p, replace=False), k))}
    steps = {}
    for name, metric in (("pairs", "contrastive"), ("pk", "triplet")):
        trainer = Trainer(build_crf_model(cfg), num_classes,
                          dataclasses.replace(tcfg, metric_loss=metric), os.path.join(tmp, name))
        batch = (inputs, targets, FLAGS.batch_size) if name == "pairs" else (pk_x, pk_y, p * k)
        fn = trainer._make_step(batch[2])
        steps[name] = (lambda fn=fn, x=batch[0], y=batch[1]: float(fn(x, y)["total"]))
        steps[name]()
    times: dict[str, dict] = {name: {"seconds": [], "cpu_seconds": []} for name in steps}
    for _ in range(FLAGS.steps):
        for name, work in steps.items():
            m = time_interleaved(work, 1, None)
            for key in ("seconds", "cpu_seconds"):
                times[name][key] += m[key]
    out = {"pk_batch": f"{p}x{k} sequences", "pair_batch": f"{FLAGS.batch_size} pairs"}
    for name, m in times.items():
        out[f"{name}_step_s_median"] = round(statistics.median(m["seconds"]), 3)
        out[f"{name}_step_cpu_s_median"] = round(statistics.median(m["cpu_seconds"]), 3)
    return out


def _pipeline_rate(trainer, step, tmp: str) -> float:
    """Median pairs/s of the same step fed by pair_dataset from a cached synthetic dataset."""
    from keras_crf_reid.datasets.pipeline import PairConfig, pair_dataset
    from keras_crf_reid.datasets.prid2011 import load_prid_layout
    from keras_crf_reid.datasets.store import TrackletStore
    from keras_crf_reid.datasets.synthetic import generate_synthetic
    from keras_crf_reid.models.flops import time_interleaved

    root = generate_synthetic(os.path.join(tmp, "data"), num_ids=FLAGS.pipeline_ids, seed=0,
                              progress=False)
    store = TrackletStore(load_prid_layout(root), os.path.join(tmp, "cache")).build(progress=False)
    pairs = PairConfig(seq_len=FLAGS.seq_len, batch_size=FLAGS.batch_size)
    ds, _ = pair_dataset(store, range(len(store)), pairs)
    it = iter(ds)

    def work():
        inputs, targets = next(it)
        targets = {k: v % trainer.classifier.units for k, v in targets.items()}
        return float(step(inputs, targets)["total"])

    work()
    times = time_interleaved(work, FLAGS.steps, None, FLAGS.max_seconds)["seconds"]
    return round(FLAGS.batch_size / statistics.median(times), 2)


if __name__ == "__main__":
    app.run(main)
