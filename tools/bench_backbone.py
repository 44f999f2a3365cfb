"""Cost of each per-frame backbone on this machine; prints one JSON line per backbone.

For the paper's CNN (the mars_multi recipe: CNN only, 8-frame windows) and the ImageNet
MobileNetV2 (pipelines/mars_multi_mobilenet.flags: 4-frame windows, blocks from
--trainable_from on trained), it times the Trainer's own P x K step (8 x 4 sequences,
contrastive + softmax, Adam) on random tensors in memory, as seconds per 1,000 steps, and the
inference-mode embedding of 32 tracklets x 8 frames as frames per second. Steps and embedding
calls of the two backbones are interleaved so both see the same machine load; the 1-minute load
average is recorded.

    PYTHONPATH=. python tools/bench_backbone.py
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
flags.DEFINE_integer("steps", 6, "Timed training steps per backbone (after 2 untimed).")
flags.DEFINE_integer("embed_calls", 3, "Timed embedding calls per backbone.")
flags.DEFINE_integer("trainable_from", 8, "mobilenet_v2: first trained block (the recipe's).")

NUM_PERSONS, NUM_INSTANCES, NUM_CLASSES = 8, 4, 128
EMBED_BATCH, EMBED_LEN = 32, 8


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    apply_thread_flags()
    from keras_crf_reid.configs.train import TrainConfig
    from keras_crf_reid.geometry import INPUT_SHAPE
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    from keras_crf_reid.training.trainer import Trainer

    keras.utils.set_random_seed(0)
    configs = {
        "paper": (ModelConfig(variant="cnn", flow_norm="frame_std"), 8),
        "mobilenet_v2": (ModelConfig(variant="cnn", backbone="mobilenet_v2", colour_norm="fixed",
                                     trainable_from=FLAGS.trainable_from, dropout=0.0), 4),
    }
    rng = np.random.default_rng(0)
    n = NUM_PERSONS * NUM_INSTANCES
    labels = {"class": tf.constant(np.repeat(rng.choice(NUM_CLASSES, NUM_PERSONS, replace=False),
                                             NUM_INSTANCES))}
    tcfg = TrainConfig(steps=10 ** 9, optimizer="adam", learning_rate=3e-4)
    x_embed = tf.constant(rng.standard_normal((EMBED_BATCH, EMBED_LEN, *INPUT_SHAPE), np.float32))
    work, timings = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cfg, seq_len) in configs.items():
            model = build_crf_model(cfg)
            trainer = Trainer(model, NUM_CLASSES, tcfg, os.path.join(tmp, name))
            step = trainer._make_step(n)
            x = tf.constant(rng.standard_normal((n, seq_len, *INPUT_SHAPE), np.float32))
            embed = tf.function(lambda v, m=model: m(v, training=False))
            work[name] = (lambda s=step, v=x: float(s(v, labels)["total"]),
                          lambda e=embed: e(x_embed).numpy())
            for _ in range(2):
                work[name][0]()
            work[name][1]()
            timings[name] = {"step": [], "embed": [], "seq_len": seq_len,
                             "trainable_params": int(sum(np.prod(w.shape)
                                                         for w in model.trainable_weights))}
        for _ in range(FLAGS.steps):
            for name in work:
                t0 = time.perf_counter()
                work[name][0]()
                timings[name]["step"].append(time.perf_counter() - t0)
        for _ in range(FLAGS.embed_calls):
            for name in work:
                t0 = time.perf_counter()
                work[name][1]()
                timings[name]["embed"].append(time.perf_counter() - t0)
    for name, t in timings.items():
        print(json.dumps({
            "benchmark": "backbone", "backbone": name, "batch": f"{NUM_PERSONS}x{NUM_INSTANCES} "
            f"sequences of {t['seq_len']} frames", "trainable_params": t["trainable_params"],
            "train_s_per_1000_steps": round(1000 * statistics.median(t["step"]), 1),
            "embed_frames_per_s": round(EMBED_BATCH * EMBED_LEN / statistics.median(t["embed"]), 1),
            "loadavg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    app.run(main)
