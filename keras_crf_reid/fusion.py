"""Local-global fusion: x_final = W_u x_upper + W_l x_lower + W_g x_global.

The part models see the upper half (rows 0-63) or lower half (rows 64-127) of each 128x64
frame; the fusion model is ONE Keras model taking full frames, cropping the halves inside,
and combining the three embeddings with three trainable scalar weights (initialised to 1).
"""
from __future__ import annotations

import keras

from keras_crf_reid.frames import FRAME_HEIGHT

PART_ROWS = {"full": (0, FRAME_HEIGHT), "upper": (0, FRAME_HEIGHT // 2),
             "lower": (FRAME_HEIGHT // 2, FRAME_HEIGHT)}


def part_height(part: str) -> int:
    """Input height of the model for a body part."""
    if part not in PART_ROWS:
        raise ValueError(f"unknown part {part!r}; expected one of {sorted(PART_ROWS)}")
    lo, hi = PART_ROWS[part]
    return hi - lo


@keras.saving.register_keras_serializable("keras_crf_reid")
class CropRows(keras.layers.Layer):
    """Keeps rows [start, stop) of (batch, T, H, W, C) frames."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[:, :, self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return input_shape[:2] + (self.stop - self.start,) + tuple(input_shape[3:])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def crop_part(x, part: str):
    """Crops full frames (batch, T, 128, W, C) to a part's rows."""
    lo, hi = PART_ROWS[part]
    return x if part == "full" else x[:, :, lo:hi]


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
    order = [p for p in ("upper", "lower", "full") if p in part_models]
    if not order:
        raise ValueError("build_fusion_model needs at least one part model")
    any_model = part_models[order[0]]
    width, channels = any_model.input_shape[3], any_model.input_shape[4]
    frames = keras.Input((None, FRAME_HEIGHT, width, channels), name="frames")
    embs = []
    for part in order:
        m = part_models[part]
        m.trainable = False
        lo, hi = PART_ROWS[part]
        x = frames if part == "full" else CropRows(lo, hi, name=f"crop_{part}")(frames)
        embs.append(m(x, training=False))
    fused = WeightedSum(order, name="fusion")(embs)
    out = keras.layers.Activation("linear", dtype="float32", name="embedding")(fused)
    return keras.Model(frames, out, name=name)


def fusion_weights(model: keras.Model) -> dict[str, float]:
    """The learned scalar weights by part name."""
    layer = model.get_layer("fusion")
    return {p: float(v) for p, v in zip(layer.names, layer.w.numpy())}
