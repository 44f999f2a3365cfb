"""The CRF network: a per-frame CNN and an RNN over its outputs, fused by summation.

For a sequence of frames I_1..I_T (T variable):
  f_t = CNN(I_t)                          three blocks Conv5x5 -> MaxPool2x2 -> ReLU, dropout, Dense
  o_t = W_i f_t + W_s r_{t-1} + b,  r_t = ReLU(o_t)
  x_C = mean_t f_t,  x_R = mean_t o_t,  x_F = x_C + x_R
Variants ("cnn", "rnn", "cnn_rnn") output x_C, x_R or x_F, for the paper's ablation.
Every model takes full 128x64 frames; a body-part model (upper or lower half, for the
local-global fusion) crops its rows inside, so callers never crop by hand.

The CNN is applied to every frame by folding time into the batch axis with a reshape (not
Keras TimeDistributed, which is slow and wrong for a None time axis in graph mode on Keras 3.15).
"""
from __future__ import annotations

import dataclasses

import keras
from keras import ops

from keras_crf_reid.options import option
from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS, PARTS, part_height, part_rows

VARIANTS = ("cnn", "rnn", "cnn_rnn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one CRF network (defaults: the paper's)."""

    variant: str = option("cnn_rnn", "Embedding: x_C (cnn), x_R (rnn) or x_F = x_C + x_R.",
                          choices=VARIANTS)
    filters: tuple[int, ...] = option((16, 32, 32), "Filters of the conv blocks.")
    kernel_size: int = option(5, "Conv kernel size.")
    embed_dim: int = option(128, "Embedding size.")
    dropout: float = option(0.5, "Dropout before the CNN's dense layer.")
    part: str = option("full", "Body part the model sees (the runner sets it per part model).",
                       cli=False, results=False)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not self.filters or any(int(f) <= 0 for f in self.filters):
            raise ValueError(f"--filters must be positive integers, got {self.filters!r}")
        if self.kernel_size < 1:
            raise ValueError(f"--kernel_size must be >= 1, got {self.kernel_size}")
        if self.embed_dim < 1:
            raise ValueError(f"--embed_dim must be >= 1, got {self.embed_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.part not in PARTS:
            raise ValueError(f"--part must be one of {', '.join(PARTS)}, got {self.part!r}")
        down = 2 ** len(self.filters)
        if self.input_height % down or FRAME_WIDTH % down:
            raise ValueError(f"--filters: {len(self.filters)} max-pooling stages need an input "
                             f"divisible by {down}; the {self.part} input is "
                             f"{self.input_height}x{FRAME_WIDTH}")

    @property
    def input_height(self) -> int:
        """Rows the CNN sees after the model's own crop to its body part."""
        return part_height(self.part)


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


@keras.saving.register_keras_serializable("keras_crf_reid")
class FrameEncoder(keras.layers.Layer):
    """Applies the per-frame CNN to (batch, T, H, W, C), giving f_t of shape (batch, T, D)."""

    def __init__(self, filters=(16, 32, 32), kernel_size=5, embed_dim=128, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.kernel_size = int(kernel_size)
        self.embed_dim = int(embed_dim)
        self.dropout_rate = float(dropout)
        # One attribute per conv (not a list): tf.train.Checkpoint only follows attributes.
        for i, f in enumerate(self.filters):
            setattr(self, f"conv{i + 1}",
                    keras.layers.Conv2D(f, self.kernel_size, padding="same", name=f"conv{i + 1}"))
        self.pool = keras.layers.MaxPooling2D(2)
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.dense = keras.layers.Dense(self.embed_dim, name="fc")

    @property
    def convs(self) -> list:
        return [getattr(self, f"conv{i + 1}") for i in range(len(self.filters))]

    def build(self, input_shape):
        _, _, h, w, c = input_shape
        shape = (None, h, w, c)
        for conv in self.convs:
            conv.build(shape)
            h, w = h // 2, w // 2
            shape = (None, h, w, conv.filters)
        self._flat_dim = h * w * self.filters[-1]
        self.dense.build((None, self._flat_dim))

    def call(self, x, training=None):
        shape = ops.shape(x)
        b, t = shape[0], shape[1]
        y = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        for conv in self.convs:
            y = ops.relu(self.pool(conv(y)))
        y = ops.reshape(y, (-1, self._flat_dim))
        y = self.dense(self.dropout(y, training=training))
        return ops.reshape(y, (b, t, self.embed_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.embed_dim)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "embed_dim": self.embed_dim, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable("keras_crf_reid")
class CRFRNNCell(keras.layers.Layer):
    """o_t = W_i f_t + W_s r_{t-1} + b, r_t = ReLU(o_t); emits o_t, carries r_t."""

    def __init__(self, units=128, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.state_size = self.units
        self.output_size = self.units

    def build(self, input_shape):
        self.w_i = self.add_weight(shape=(input_shape[-1], self.units), name="w_input",
                                   initializer="glorot_uniform")
        self.w_s = self.add_weight(shape=(self.units, self.units), name="w_state",
                                   initializer="orthogonal")
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros")

    def call(self, inputs, states, training=None):
        prev = states[0] if isinstance(states, (list, tuple)) else states
        o = ops.matmul(inputs, self.w_i) + ops.matmul(prev, self.w_s) + self.bias
        return o, [ops.relu(o)]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable("keras_crf_reid")
class TemporalMean(keras.layers.Layer):
    """Average over the time axis: (batch, T, D) -> (batch, D)."""

    def call(self, x):
        return ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def build_crf_model(config: ModelConfig = ModelConfig(), name: str = "crf") -> keras.Model:
    """Functional model: full frames (batch, T, 128, 64, 5) float32 -> `embedding` (batch, D).

    A part model crops its rows first (layer `crop_<part>`), then runs the same network.
    """
    frames = keras.Input((None, FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS), name="frames")
    x = frames
    if config.part != "full":
        x = CropRows(*part_rows(config.part), name=f"crop_{config.part}")(frames)
    f = FrameEncoder(config.filters, config.kernel_size, config.embed_dim, config.dropout,
                     name="frame_cnn")(x)
    parts = []
    if config.variant in ("cnn", "cnn_rnn"):
        parts.append(TemporalMean(name="x_c")(f))
    if config.variant in ("rnn", "cnn_rnn"):
        o = keras.layers.RNN(CRFRNNCell(config.embed_dim), return_sequences=True, name="rnn")(f)
        parts.append(TemporalMean(name="x_r")(o))
    x = parts[0] if len(parts) == 1 else keras.layers.Add(name="x_f")(parts)
    out = keras.layers.Activation("linear", dtype="float32", name="embedding")(x)
    return keras.Model(frames, out, name=name)
