"""The CRF network: a per-frame CNN and an RNN over its outputs, fused by summation.

For a sequence of frames I_1..I_T (T variable):
  f_t = CNN(I_t)                          three blocks Conv5x5 -> MaxPool2x2 -> ReLU, dropout, Dense
  o_t = W_i f_t + W_s r_{t-1} + b,  r_t = ReLU(o_t)
  x_C = mean_t f_t,  x_R = mean_t o_t,  x_F = x_C + x_R
Variants ("cnn", "rnn", "cnn_rnn") output x_C, x_R or x_F, for the paper's ablation.
Every model takes full 128x64 frames; a body-part model (upper or lower half, for the
local-global fusion) crops its rows inside, so callers never crop by hand.
Named options beyond the paper (off by default): `flow_norm="frame_std"` standardises the two
flow channels of every frame inside the model (FlowStandardize, the first layer), and
`batch_norm=True` adds BatchNormalization after each convolution, before pooling.

The CNN is applied to every frame by folding time into the batch axis with a reshape (not
Keras TimeDistributed, which is slow and wrong for a None time axis in graph mode on Keras 3.15).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_crf_reid.configs.model import (  # noqa: F401  (re-exported)
    BACKBONES, FLOW_NORMS, VARIANTS, ModelConfig)
from keras_crf_reid.geometry import (COLOR_SLICE, FLOW_SLICE, FRAME_HEIGHT, FRAME_WIDTH,
                                     NUM_CHANNELS, STD_EPS, YUV_FIXED_MEAN, YUV_FIXED_STD,
                                     part_rows)
from keras_crf_reid.models.mobilenet_v2 import IMAGENET_MEAN, IMAGENET_STD, MobileNetV2Trunk

# tf.image.yuv_to_rgb's matrix: rgb = yuv @ YUV_TO_RGB (rows Y, U, V; columns R, G, B).
YUV_TO_RGB = np.array([[1.0, 1.0, 1.0], [0.0, -0.394642334, 2.03206185],
                       [1.13988303, -0.58062185, 0.0]], np.float32)


def fixed_yuv_to_imagenet() -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with ImageNet-normalised RGB = x @ A + b for x the model's colour channels under
    colour_norm="fixed" ((yuv - YUV_FIXED_MEAN) / YUV_FIXED_STD): the map is affine and exact."""
    mean, std = np.array(YUV_FIXED_MEAN, np.float32), np.array(YUV_FIXED_STD, np.float32)
    im_mean, im_std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    a = (std[:, None] * YUV_TO_RGB) / im_std[None, :]
    b = (mean @ YUV_TO_RGB - im_mean) / im_std
    return a.astype(np.float32), b.astype(np.float32)


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


class _FrameEncoderBase(keras.layers.Layer):
    """What both frame encoders share: time folded into the batch by a reshape (no
    TimeDistributed), each frame's features (`_features`, from the subclass), dropout and a
    dense layer to `embed_dim`, unfolded to (batch, T, embed_dim)."""

    def call(self, x, training=None):
        shape = ops.shape(x)
        frames = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        y = self.dense(self.dropout(self._features(frames, training), training=training))
        return ops.reshape(y, (shape[0], shape[1], self.embed_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.embed_dim)


@keras.saving.register_keras_serializable("keras_crf_reid")
class FrameEncoder(_FrameEncoderBase):
    """Applies the per-frame CNN to (batch, T, H, W, C), giving f_t of shape (batch, T, D)."""

    def __init__(self, filters=(16, 32, 32), kernel_size=5, embed_dim=128, dropout=0.5,
                 batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.kernel_size = int(kernel_size)
        self.embed_dim = int(embed_dim)
        self.dropout_rate = float(dropout)
        self.batch_norm = bool(batch_norm)
        # One attribute per conv (not a list): tf.train.Checkpoint only follows attributes.
        for i, f in enumerate(self.filters):
            setattr(self, f"conv{i + 1}",
                    keras.layers.Conv2D(f, self.kernel_size, padding="same", name=f"conv{i + 1}"))
            if self.batch_norm:
                setattr(self, f"bn{i + 1}", keras.layers.BatchNormalization(name=f"bn{i + 1}"))
        self.pool = keras.layers.MaxPooling2D(2)
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.dense = keras.layers.Dense(self.embed_dim, name="fc")

    @property
    def convs(self) -> list:
        return [getattr(self, f"conv{i + 1}") for i in range(len(self.filters))]

    def build(self, input_shape):
        _, _, h, w, c = input_shape
        shape = (None, h, w, c)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            if self.batch_norm:
                getattr(self, f"bn{i + 1}").build(shape[:3] + (conv.filters,))
            h, w = h // 2, w // 2
            shape = (None, h, w, conv.filters)
        self._flat_dim = h * w * self.filters[-1]
        self.dense.build((None, self._flat_dim))

    def _features(self, y, training):
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if self.batch_norm:
                y = getattr(self, f"bn{i + 1}")(y, training=training)
            y = ops.relu(self.pool(y))
        return ops.reshape(y, (-1, self._flat_dim))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "embed_dim": self.embed_dim, "dropout": self.dropout_rate,
                "batch_norm": self.batch_norm}


@keras.saving.register_keras_serializable("keras_crf_reid")
class PretrainedFrameEncoder(_FrameEncoderBase):
    """The ImageNet MobileNetV2 as the per-frame CNN: (batch, T, H, W, C) -> f_t (batch, T, D).

    Its input is the model's usual 5 channels with colour_norm="fixed"; the colour channels are
    mapped exactly back to ImageNet-normalised RGB (fixed_yuv_to_imagenet) and the optical-flow
    channels are not used (a flow-free encoder: one still frame embeds as well as a sequence).
    Features are average-pooled over space, then dropout and a dense layer to `embed_dim`.
    `pretrained` loads the ImageNet weights when the layer is first built (not when it is
    restored from a checkpoint or a .keras file, whose own weights then replace them).
    """

    def __init__(self, embed_dim=128, dropout=0.0, trainable_from=0, freeze_bn=False,
                 pretrained=True, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.dropout_rate = float(dropout)
        self.trainable_from = int(trainable_from)
        self.freeze_bn = bool(freeze_bn)
        self.pretrained = bool(pretrained)
        a, b = fixed_yuv_to_imagenet()
        self._colour_a, self._colour_b = a, b
        self.trunk = MobileNetV2Trunk(trainable_from, freeze_bn, name="mobilenet_v2")
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.dense = keras.layers.Dense(self.embed_dim, name="fc")

    def build(self, input_shape):
        _, _, h, w, _ = input_shape
        self.trunk.build((None, h, w, 3))
        if self.pretrained:
            self.trunk.load_imagenet()
        self.dense.build((None, self.trunk.compute_output_shape((None, h, w, 3))[-1]))

    def _features(self, frames, training):
        y = ops.matmul(frames[..., COLOR_SLICE], ops.convert_to_tensor(self._colour_a))
        return ops.mean(self.trunk(y + self._colour_b, training=training), axis=(1, 2))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "dropout": self.dropout_rate,
                "trainable_from": self.trainable_from, "freeze_bn": self.freeze_bn,
                "pretrained": False}


@keras.saving.register_keras_serializable("keras_crf_reid")
class FlowStandardize(keras.layers.Layer):
    """Standardises the flow channels of every frame of (batch, T, H, W, 5) frames.

    Each flow channel of each frame gets zero mean and unit standard deviation over its pixels
    (as McLaughlin et al. do), so motion is on the scale of the already standardised YUV
    channels instead of a fixed +-8 px range; the colour channels pass through unchanged. It is
    a layer of the model, so training, evaluation, export and serving all apply it.
    """

    def call(self, x):
        flow = x[..., FLOW_SLICE]
        mean = ops.mean(flow, axis=(-3, -2), keepdims=True)
        std = ops.std(flow, axis=(-3, -2), keepdims=True)
        flow = (flow - mean) / ops.maximum(std, STD_EPS)
        return ops.concatenate([x[..., :FLOW_SLICE.start], flow, x[..., FLOW_SLICE.stop:]],
                               axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


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


def frame_encoder(config: ModelConfig) -> keras.layers.Layer:
    """The per-frame CNN of `config.backbone`: the paper's, or the ImageNet MobileNetV2."""
    if config.backbone == "mobilenet_v2":
        return PretrainedFrameEncoder(config.embed_dim, config.dropout, config.trainable_from,
                                      config.freeze_bn, config.pretrained, name="frame_cnn")
    return FrameEncoder(config.filters, config.kernel_size, config.embed_dim, config.dropout,
                        batch_norm=config.batch_norm, name="frame_cnn")


def build_crf_model(config: ModelConfig = ModelConfig(), name: str = "crf") -> keras.Model:
    """Functional model: full frames (batch, T, 128, 64, 5) float32 -> `embedding` (batch, D).

    A part model crops its rows first (layer `crop_<part>`), then runs the same network.
    """
    frames = keras.Input((None, FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS), name="frames")
    x = frames
    if config.part != "full":
        x = CropRows(*part_rows(config.part), name=f"crop_{config.part}")(x)
    if config.flow_norm == "frame_std":
        x = FlowStandardize(name="flow_norm")(x)
    f = frame_encoder(config)(x)
    parts = []
    if config.variant in ("cnn", "cnn_rnn"):
        parts.append(TemporalMean(name="x_c")(f))
    if config.variant in ("rnn", "cnn_rnn"):
        o = keras.layers.RNN(CRFRNNCell(config.embed_dim), return_sequences=True, name="rnn")(f)
        parts.append(TemporalMean(name="x_r")(o))
    x = parts[0] if len(parts) == 1 else keras.layers.Add(name="x_f")(parts)
    out = keras.layers.Activation("linear", dtype="float32", name="embedding")(x)
    return keras.Model(frames, out, name=name)
