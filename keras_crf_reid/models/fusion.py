"""Local-global fusion: x_final = W_u x_upper + W_l x_lower + W_g x_global.

The part models (model.ModelConfig.part) crop the upper half (rows 0-63) or lower half
(rows 64-127) of each 128x64 frame themselves; the fusion model is ONE Keras model taking full
frames, running the frozen part models and combining their embeddings with three trainable
scalar weights (initialised to 1).
"""
from __future__ import annotations

import keras

from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS

FUSION_ORDER = ("upper", "lower", "full")


@keras.saving.register_keras_serializable("keras_crf_reid")
class WeightedSum(keras.layers.Layer):
    """sum_k w_k x_k with one trainable scalar per input (named in `names`), initialised to 1."""

    def __init__(self, names=(), **kwargs):
        super().__init__(**kwargs)
        self.names = tuple(names)

    def get_config(self):
        return {**super().get_config(), "names": self.names}

    def build(self, input_shape):
        self.w = self.add_weight(shape=(len(input_shape),), name="fusion_weights",
                                 initializer="ones")

    def call(self, inputs):
        return sum(self.w[k] * x for k, x in enumerate(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def build_fusion_model(part_models: dict[str, keras.Model], name: str = "crf_fusion") -> keras.Model:
    """Full frames (batch, T, 128, 64, 5) -> `embedding`; part models are frozen inside.

    `part_models` maps "upper", "lower", "full" to trained CRF models (any subset of at
    least one); the weights are ordered upper, lower, full (W_u, W_l, W_g).
    """
    order = [p for p in FUSION_ORDER if p in part_models]
    if not order:
        raise ValueError("build_fusion_model needs at least one part model")
    frames = keras.Input((None, FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS), name="frames")
    embs = []
    for part in order:
        m = part_models[part]
        m.trainable = False
        embs.append(m(frames, training=False))
    fused = WeightedSum(order, name="fusion")(embs)
    out = keras.layers.Activation("linear", dtype="float32", name="embedding")(fused)
    return keras.Model(frames, out, name=name)


def fusion_weights(model: keras.Model) -> dict[str, float]:
    """The learned scalar weights by part name."""
    layer = model.get_layer("fusion")
    return {p: float(v) for p, v in zip(layer.names, layer.w.numpy())}
