"""One worker of a small tf.distribute training run, for tests/distributed_test.py.

Builds the strategy before any other TensorFlow op (MultiWorkerMirroredStrategy requires it;
the cluster comes from TF_CONFIG), trains a tiny CRF model with the real Trainer on a cached
synthetic dataset, and writes the model's initial and final weights and the classifier's
to --out (.npz). Trainer checkpoints into --model_dir on the chief only (other workers save to
scratch folders) and every worker restores from the chief's latest checkpoint, so a re-run
resumes.
"""
from __future__ import annotations

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("strategy", "multi_worker", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy (distribute.make_strategy).")
flags.DEFINE_string("data_root", None, "Synthetic dataset in the PRID layout.")
flags.DEFINE_string("cache_dir", None, "Frame+flow cache (built beforehand by the caller).")
flags.DEFINE_string("model_dir", None, "The chief's checkpoint folder.")
flags.DEFINE_string("out", None, "Where to write the final weights (.npz).")
flags.DEFINE_integer("steps", 3, "Training steps.")
flags.DEFINE_integer("batch_size", 4, "Global batch of sequence pairs.")
flags.DEFINE_integer("seq_len", 3, "Frames per sequence.")
flags.mark_flags_as_required(["data_root", "cache_dir", "model_dir", "out"])


def task_of(tf_config: str | None) -> tuple[str, int]:
    """(task type, index) from a TF_CONFIG JSON string; ("chief", 0) when there is none."""
    task = json.loads(tf_config or "{}").get("task", {})
    return task.get("type", "chief"), int(task.get("index", 0))


def main(argv):
    del argv
    from keras_crf_reid.training.distribute import make_strategy

    strategy = make_strategy(FLAGS.strategy)  # first: before any other TensorFlow op
    import keras
    import numpy as np

    from keras_crf_reid.datasets.pipeline import PairConfig, PairSampler, replica_pairs
    from keras_crf_reid.datasets.prid2011 import load_prid_layout
    from keras_crf_reid.datasets.store import TrackletStore
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    from keras_crf_reid.training.trainer import TrainConfig, Trainer

    task_type, task_id = task_of(os.environ.get("TF_CONFIG"))
    keras.utils.set_random_seed(0)
    store = TrackletStore(load_prid_layout(FLAGS.data_root), FLAGS.cache_dir)
    train = range(len(store))
    pairs = PairConfig(seq_len=FLAGS.seq_len, batch_size=FLAGS.batch_size, seed=0)
    sampler = PairSampler(store, train, pairs)
    with strategy.scope():
        model = build_crf_model(ModelConfig(filters=(4, 4, 4), embed_dim=8, dropout=0.0))
    trainer = Trainer(model, sampler.num_classes,
                      TrainConfig(steps=FLAGS.steps, optimizer="adam", learning_rate=1e-2,
                                  ckpt_every=2, log_every=1), FLAGS.model_dir, strategy)
    trainer.restore()
    initial = [w.numpy().copy() for w in model.weights]
    stats = trainer.fit(lambda start, ctx: replica_pairs(store, train, pairs, start, ctx),
                        FLAGS.batch_size, progress=False)
    final = [w.numpy() for w in model.weights]
    np.savez(FLAGS.out, **{f"final_{i}": w for i, w in enumerate(final)},
             **{f"initial_{i}": w for i, w in enumerate(initial)},
             **{f"classifier_{i}": w.numpy() for i, w in enumerate(trainer.classifier.weights)})
    print(json.dumps({"task": f"{task_type}:{task_id}", "chief": trainer.is_chief,
                      "replicas": strategy.num_replicas_in_sync,
                      "checkpoints": trainer.manager.directory,
                      "step": stats["step"], "total": stats.get("total")}))


if __name__ == "__main__":
    app.run(main)
