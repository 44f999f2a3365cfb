"""Runs jax_step.JaxTrainStep under KERAS_BACKEND=jax on a tiny model; prints one JSON line.

For tests/jax_step_test.py: a NaN batch as the very first step must leave every weight as it
was (finite 0); three plain SGD steps (small learning rate, dropout 0) on one pair batch, and on
one identity (P x K) batch with the triplet loss, must lower that batch's loss; sync() must
write the step's state into the Keras variables; TensorFlow must never have been imported.
"""
from __future__ import annotations

import json
import random
import sys

import keras
import numpy as np

from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.training.jax_step import JaxTrainStep


def main() -> None:
    random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)  # Keras's unseeded initialisers
    model = build_crf_model(ModelConfig(filters=(4, 8), embed_dim=16, dropout=0.0))
    classifier = keras.layers.Dense(6, name="id_classifier")
    classifier.build((None, 16))
    step = JaxTrainStep(model, classifier, keras.optimizers.SGD(1e-3))
    before = [np.array(w) for w in model.get_weights()]
    rng = np.random.default_rng(0)
    shape = (4, 2, 128, 64, 5)
    inputs = (rng.standard_normal(shape, np.float32), rng.standard_normal(shape, np.float32))
    targets = {"label": np.array([1, 1, 0, 0], np.float32),
               "class_a": np.array([0, 1, 2, 3], np.int32),
               "class_b": np.array([0, 1, 4, 5], np.int32)}
    bad = (np.full(shape, np.nan, np.float32), inputs[1])
    nan_out = step(bad, targets)
    step.sync()
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    losses = [float(step.evaluate(inputs, targets)["total"])]
    for _ in range(3):
        step(inputs, targets)
        losses.append(float(step.evaluate(inputs, targets)["total"]))
    step.sync()
    pk = JaxTrainStep(model, classifier, keras.optimizers.SGD(1e-3), metric_loss="triplet")
    ids = (np.concatenate(inputs), {"class": np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32)})
    pk_losses = [float(pk.evaluate(*ids)["total"])]
    for _ in range(3):
        pk(*ids)
        pk_losses.append(float(pk.evaluate(*ids)["total"]))
    synced = all(np.array_equal(np.asarray(v.value), np.asarray(s))
                 for v, s in zip(step.variables, step.state[0]))
    print(json.dumps({"backend": keras.backend.backend(), "nan_finite": float(nan_out["finite"]),
                      "unchanged_after_nan": unchanged, "losses": losses, "synced": synced, "pk_losses": pk_losses,
                      "tensorflow_imported": "tensorflow" in sys.modules}))


if __name__ == "__main__":
    main()
