"""The same CRF training step on Keras 3's TensorFlow and JAX backends; prints one JSON line.

Each backend runs in its own subprocess (KERAS_BACKEND set before Keras is imported) on the
same weights (the first backend initialises them from --seed and saves them; the others load
them) and the same batch (--batch_size pairs of --seq_len frames, --seed): TensorFlow through
trainer.Trainer's own step (tf.function, tf.distribute), JAX through jax_step.JaxTrainStep.
Per backend: the loss with dropout off before any update (`loss`; the backends must agree
within --rtol) and after one update (`loss_after_step`; agrees too when --dropout=0, else
the dropout masks differ), pairs/s of the timed steps and their share of the framework's own
matmul peak (keras_crf_reid.models.flops, sampled between steps). The last line is
`{"backends": {"tensorflow": {"loss": .., "pairs_per_s": ..}, "jax": {...}}, ...}`; the exit
status is 1 when the losses disagree or a backend failed.

    PYTHONPATH=. python tools/bench_backends.py [--backends=tensorflow,jax] [--steps=8]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax")

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", list(BACKENDS), "Backends to run, in order (the first one "
                  "initialises the weights).")
flags.DEFINE_integer("batch_size", 16, "Sequence pairs per step.")
flags.DEFINE_integer("seq_len", 8, "Frames per sequence.")
flags.DEFINE_list("filters", ["16", "32", "32"], "Conv filters (the paper's by default).")
flags.DEFINE_integer("embed_dim", 128, "Embedding size.")
flags.DEFINE_float("dropout", 0.5, "Dropout of the model (0: the after-step losses agree too).")
flags.DEFINE_integer("num_classes", 100, "Identities of the classifier.")
flags.DEFINE_float("learning_rate", 1e-3, "SGD learning rate (momentum 0.9, clipnorm 10).")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the batch.")
flags.DEFINE_integer("warmup", 2, "Untimed steps after the first (tracing, compilation).")
flags.DEFINE_integer("steps", 8, "Timed steps per backend.")
flags.DEFINE_float("max_seconds", 60.0, "Stop timing after this long (at least one step).")
flags.DEFINE_bool("peak", True, "Sample the matmul peak between steps (share of peak).")
flags.DEFINE_float("rtol", 1e-4, "Relative tolerance of the backends' loss agreement.")
flags.DEFINE_integer("timeout_s", 600, "Limit per backend subprocess.")
flags.DEFINE_string("child", "", "Internal: run one backend in this process.")
flags.DEFINE_string("workdir", "", "Internal: the folder holding the shared batch and weights.")

MOMENTUM, CLIPNORM = 0.9, 10.0


def _model_config():
    from keras_crf_reid.models.network import ModelConfig

    return ModelConfig(filters=tuple(int(f) for f in FLAGS.filters), embed_dim=FLAGS.embed_dim,
                       dropout=FLAGS.dropout)


def make_batch(path: str) -> None:
    """Writes the seeded batch (inputs a, b and the targets) as an .npz file."""
    import numpy as np

    from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS

    rng = np.random.default_rng(FLAGS.seed)
    bs = FLAGS.batch_size
    shape = (bs, FLAGS.seq_len, FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS)
    np.savez(path, a=rng.standard_normal(shape, np.float32), b=rng.standard_normal(shape, np.float32),
             label=(np.arange(bs) < bs // 2).astype(np.float32),
             class_a=rng.integers(0, FLAGS.num_classes, bs).astype(np.int32),
             class_b=rng.integers(0, FLAGS.num_classes, bs).astype(np.int32))


def _shared_weights(model, classifier, path: str) -> None:
    """Loads model and classifier weights from `path`, or saves them there if it is missing."""
    import numpy as np

    layers = (model, classifier)
    if os.path.exists(path):
        data = np.load(path)
        for i, layer in enumerate(layers):
            n = len(layer.get_weights())
            layer.set_weights([data[f"{i}_{k}"] for k in range(n)])
        return
    arrays = {f"{i}_{k}": w for i, layer in enumerate(layers) for k, w in enumerate(layer.get_weights())}
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)


def run_child(backend: str) -> dict:
    """One backend's figures (in a process whose KERAS_BACKEND is `backend`)."""
    import random

    import keras
    import numpy as np

    if keras.backend.backend() != backend:
        raise RuntimeError(f"--child={backend} but Keras runs on {keras.backend.backend()!r}")
    from keras_crf_reid.models.flops import (crf_train_flops, matmul_probe, throughput_figures,
                                             time_interleaved)
    from keras_crf_reid.models.network import build_crf_model
    from keras_crf_reid.training.losses import crf_loss

    random.seed(FLAGS.seed)  # Keras draws unseeded layers' seeds (dropout) from `random`
    np.random.seed(FLAGS.seed)
    if backend == "tensorflow":
        keras.utils.set_random_seed(FLAGS.seed)
    cfg = _model_config()
    data = np.load(os.path.join(FLAGS.workdir, "batch.npz"))
    inputs = (data["a"], data["b"])
    targets = {k: data[k] for k in ("label", "class_a", "class_b")}
    bs = FLAGS.batch_size
    weights = os.path.join(FLAGS.workdir, "weights.npz")
    if backend == "tensorflow":
        import tensorflow as tf

        from keras_crf_reid.training.trainer import TrainConfig, Trainer

        trainer = Trainer(build_crf_model(cfg), FLAGS.num_classes,
                          TrainConfig(learning_rate=FLAGS.learning_rate, momentum=MOMENTUM,
                                      clipnorm=CLIPNORM),
                          os.path.join(FLAGS.workdir, "tf_trainer"))
        model, classifier = trainer.model, trainer.classifier
        _shared_weights(model, classifier, weights)
        step = trainer._make_step(bs)
        inputs = tuple(tf.constant(x) for x in inputs)
        targets = {k: tf.constant(v) for k, v in targets.items()}

        def evaluate() -> float:
            emb = model(tf.concat(inputs, 0), training=False)
            logits = classifier(emb)
            terms = crf_loss(emb[:bs], emb[bs:], logits[:bs], logits[bs:], targets["label"],
                             targets["class_a"], targets["class_b"])
            return float(keras.ops.mean(terms["total"]))
    else:
        from keras_crf_reid.training.jax_step import JaxTrainStep

        model = build_crf_model(cfg)
        classifier = keras.layers.Dense(FLAGS.num_classes, name="id_classifier", dtype="float32")
        classifier.build((None, model.output_shape[-1]))
        _shared_weights(model, classifier, weights)
        step = JaxTrainStep(model, classifier,
                            keras.optimizers.SGD(FLAGS.learning_rate, momentum=MOMENTUM),
                            clipnorm=CLIPNORM)

        def evaluate() -> float:
            return float(step.evaluate(inputs, targets)["total"])
    out: dict = {"backend": backend, "keras": keras.__version__, "loss": evaluate()}
    work = lambda: float(step(inputs, targets)["total"])  # noqa: E731
    work()
    out["loss_after_step"] = evaluate()
    for _ in range(FLAGS.warmup):
        work()
    probe = matmul_probe(chain=2) if FLAGS.peak else None
    flops = crf_train_flops(cfg, 2 * bs * FLAGS.seq_len)
    m = time_interleaved(work, FLAGS.steps, probe, FLAGS.max_seconds)
    if probe is None:
        m["peak"] = [float("nan")]
    out.update(throughput_figures(m, flops, bs, "pairs"))
    out["gflop_per_step"] = round(flops / 1e9, 2)
    if backend == "jax":
        import jax

        out["jax"] = jax.__version__
        out["device"] = str(jax.devices()[0].platform)
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    return out


def _run_backend(backend: str, workdir: str, argv: list[str]) -> dict:
    """Runs this script for one backend in a subprocess; returns its JSON object or an error."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, os.path.abspath(__file__), *argv, f"--child={backend}",
           f"--workdir={workdir}"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=FLAGS.timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {FLAGS.timeout_s} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:] or ["no output"]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)[:500]}


def _rel_diff(values: list[float]) -> float:
    lo, hi = min(values), max(values)
    return (hi - lo) / max(abs(hi), 1e-12)


def compare(results: dict[str, dict], rtol: float, dropout: float) -> dict:
    """Agreement of the backends' losses, and their speeds relative to the first backend."""
    ok = {b: r for b, r in results.items() if "error" not in r}
    out: dict = {}
    if len(ok) >= 2:
        out["loss_rel_diff"] = _rel_diff([r["loss"] for r in ok.values()])
        after = _rel_diff([r["loss_after_step"] for r in ok.values()])
        out["loss_after_step_rel_diff"] = after
        agree = out["loss_rel_diff"] <= rtol and (dropout > 0 or after <= rtol)
        out["losses_agree"] = bool(agree)
        first = next(iter(ok.values()))
        out["pairs_per_s_vs_" + first["backend"]] = {
            b: round(r["pairs_per_s"] / first["pairs_per_s"], 2) for b, r in ok.items()}
    out["ok"] = len(ok) == len(results) and out.get("losses_agree", len(ok) == 1)
    return out


def main(argv):
    if FLAGS.child:
        print(json.dumps(run_child(FLAGS.child)), flush=True)
        return 0
    unknown = [b for b in FLAGS.backends if b not in BACKENDS]
    if unknown or not FLAGS.backends:
        raise app.UsageError(f"--backends: choose from {', '.join(BACKENDS)}, got {unknown}")
    passed = [a for a in sys.argv[1:] if not a.startswith(("--child", "--workdir", "--backends"))]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as workdir:
        make_batch(os.path.join(workdir, "batch.npz"))
        for backend in FLAGS.backends:
            print(f"running {backend} ...", file=sys.stderr, flush=True)
            results[backend] = _run_backend(backend, workdir, passed)
            r = results[backend]
            print(f"{backend}: " + (r["error"] if "error" in r else
                                    f"loss {r['loss']:.6f}, after one step "
                                    f"{r['loss_after_step']:.6f}, {r['pairs_per_s']:.2f} pairs/s, "
                                    f"{100 * r['fraction_of_peak']:.0f}% of peak"),
                  file=sys.stderr, flush=True)
    summary = compare(results, FLAGS.rtol, FLAGS.dropout)
    print(json.dumps({"benchmark": "backends", "batch_pairs": FLAGS.batch_size,
                      "seq_len": FLAGS.seq_len, "filters": [int(f) for f in FLAGS.filters],
                      "embed_dim": FLAGS.embed_dim, "dropout": FLAGS.dropout,
                      "backends": results, **summary,
                      "loadavg_1m": round(os.getloadavg()[0], 2)}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    app.run(main)
