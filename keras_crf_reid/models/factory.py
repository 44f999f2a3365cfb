"""Building models: untrained (any body part, or the fusion of all three), from a trainer
checkpoint, or from a .keras file.

The trainer saves tf.train.Checkpoint(model=..., classifier=..., optimizer=..., step=...) under
`<run>/split_<k>/<part>/ckpt`; a model is rebuilt from its ModelConfig (part included: part
models crop themselves) and every one of its variables must be found in the checkpoint, so a
partial or mismatched checkpoint never leaves random weights in an evaluated or exported model.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf

from keras_crf_reid.configs.model import ModelConfig
from keras_crf_reid.models.fusion import FUSION_ORDER, build_fusion_model
from keras_crf_reid.models.network import build_crf_model

FUSION = "fusion"


def checkpoint_prefix(checkpoint: str) -> str:
    """The checkpoint prefix of a prefix or of a directory (its latest checkpoint)."""
    prefix = tf.train.latest_checkpoint(checkpoint) if os.path.isdir(checkpoint) else checkpoint
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(f"{checkpoint}: no TensorFlow checkpoint found (expected a prefix "
                                f"with a .index file, or a directory with a 'checkpoint' file)")
    return prefix


def build_model(config: ModelConfig, part: str = "full") -> keras.Model:
    """The untrained model of a body part, or of the fusion (part="fusion") of all three parts."""
    if part == FUSION:
        return build_fusion_model({p: build_model(config, p) for p in FUSION_ORDER})
    return build_crf_model(dataclasses.replace(config, part=part), name=f"crf_{part}")


def restore_checkpoint(checkpoint: str, config: ModelConfig = ModelConfig(),
                       part: str | None = None) -> keras.Model:
    """A model built from `config` (its part, or `part`, which may be "fusion") with the weights
    of a trainer checkpoint (prefix, or directory meaning its latest checkpoint)."""
    prefix = checkpoint_prefix(checkpoint)
    part = part or config.part
    model = build_model(dataclasses.replace(config, pretrained=False), part)  # weights: below
    try:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ValueError(f"{prefix}: checkpoint does not hold the weights of a {part} model with "
                         f"config {config} ({e})") from e
    return model


def load_keras_model(path: str) -> keras.Model:
    """Loads a `.keras` file (without optimizer state), naming the path in any error."""
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras model file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: Keras model file does not exist")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError(f"{path}: cannot load Keras model ({type(e).__name__}: {e})") from e
