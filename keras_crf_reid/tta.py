"""Test-time augmentation: one Keras model averaging the embeddings of fixed views of its input.

The paper applies "the same data augmentation on probe and gallery at test". `build_tta_model`
wraps any embedding model (a CRF part model or the fusion model) taking frames
(B, T, H, W, 5) into ONE model with the same input and output (`embedding`, the mean over the
views), so evaluation, `keras_crf_reid.load(...).embed`, `.keras` files and the exported
SavedModel (serving signature `frames -> embedding`) all compute the same thing.

Views act on model input (preprocess.to_model_input: YUV normalised per `colour_norm`, channel 3
horizontal flow, channel 4 vertical flow, both stored as pixels / FLOW_CLIP, symmetric about 0):
  identity             the frames as they are
  mirror               width flipped and horizontal flow negated (exact: flow scaling is symmetric)
  crop_<where>         a fixed crop of `crop_scale` of the height and width, where = center,
                       top_left, top_right, bottom_left or bottom_right, resized back to H x W;
                       as in training augmentation, the YUV channels are re-standardised per
                       frame (colour_norm "frame_std"; "fixed" is a constant affine map, which
                       the resize already respects) and flow is magnified by the zoom and
                       clipped to [-1, 1]
  mirror_crop_<where>  that crop, mirrored
All views of a batch go through the wrapped model in a single forward pass.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from keras_crf_reid.datasets.preprocess import _EPS, check_colour_norm
from keras_crf_reid.geometry import DEFAULT_COLOUR_NORM

CROPS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
VIEWS = ("identity", "mirror") + tuple(f"{m}crop_{c}" for m in ("", "mirror_") for c in CROPS)
DEFAULT_VIEWS = ("identity", "mirror", "crop_center", "mirror_crop_center")
DEFAULT_CROP_SCALE = 0.9
COLOUR_CHANNELS = 3
FLOW_X, FLOW_Y = 3, 4


def _check_views(views: Sequence[str], crop_scale: float) -> tuple[str, ...]:
    views = tuple(views)
    bad = [v for v in views if v not in VIEWS]
    if not views or bad:
        raise ValueError(f"TTA views must be a non-empty subset of {VIEWS}, got {bad or views}")
    if len(set(views)) != len(views):
        raise ValueError(f"TTA views must not repeat, got {views}")
    if not 0.1 <= crop_scale <= 1.0:
        raise ValueError(f"TTA crop_scale must be in [0.1, 1], got {crop_scale}")
    return views


def crop_window(view: str, height: int, width: int, crop_scale: float) -> tuple[int, int, int, int]:
    """(row0, col0, rows, cols) in pixels of the crop of a view (the whole frame when uncropped)."""
    if "crop_" not in view:
        return 0, 0, height, width
    where = view.split("crop_", 1)[1]
    rows, cols = max(1, round(crop_scale * height)), max(1, round(crop_scale * width))
    row0 = {"top": 0, "bottom": height - rows}.get(where.split("_")[0], (height - rows) // 2)
    col0 = {"left": 0, "right": width - cols}.get(where.split("_")[-1], (width - cols) // 2)
    return row0, col0, rows, cols


@keras.saving.register_keras_serializable("keras_crf_reid")
class TTAViews(keras.layers.Layer):
    """(B, T, H, W, 5) -> (V * B, T, H, W, 5): the V views stacked view-major along the batch."""

    def __init__(self, views: Sequence[str] = DEFAULT_VIEWS, crop_scale: float = DEFAULT_CROP_SCALE,
                 colour_norm: str = DEFAULT_COLOUR_NORM, **kwargs):
        super().__init__(**kwargs)
        self.crop_scale = float(crop_scale)
        self.views = _check_views(views, self.crop_scale)
        self.colour_norm = check_colour_norm(colour_norm)

    def _view(self, x, view: str):
        """One view of frames x (N, H, W, C)."""
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        row0, col0, rows, cols = crop_window(view, height, width, self.crop_scale)
        if (rows, cols) != (height, width):
            x = ops.image.resize(x[:, row0:row0 + rows, col0:col0 + cols], (height, width),
                                 interpolation="bilinear")
            colour = x[..., :COLOUR_CHANNELS]
            if self.colour_norm == "frame_std":
                mean = ops.mean(colour, axis=(1, 2), keepdims=True)
                std = ops.std(colour, axis=(1, 2), keepdims=True)
                colour = (colour - mean) / ops.maximum(std, _EPS)
            zoom = ops.convert_to_tensor([width / cols, height / rows], x.dtype)
            flow = ops.clip(x[..., FLOW_X:FLOW_Y + 1] * zoom, -1.0, 1.0)
            x = ops.concatenate([colour, flow, x[..., FLOW_Y + 1:]], axis=-1)
        if view.startswith("mirror"):
            sign = [-1.0 if c == FLOW_X else 1.0 for c in range(channels)]
            x = ops.flip(x, axis=2) * ops.convert_to_tensor(sign, x.dtype)
        return x

    def call(self, x):
        shape = ops.shape(x)
        frame = tuple(x.shape[2:])
        flat = ops.reshape(x, (-1,) + frame)
        views = ops.concatenate([self._view(flat, v) for v in self.views], axis=0)
        return ops.reshape(views, (-1, shape[1]) + frame)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * len(self.views)
        return (batch,) + tuple(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "views": list(self.views), "crop_scale": self.crop_scale,
                "colour_norm": self.colour_norm}


@keras.saving.register_keras_serializable("keras_crf_reid")
class ViewMean(keras.layers.Layer):
    """(V * B, D) view-major embeddings -> (B, D), their mean over the V views."""

    def __init__(self, num_views: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.num_views = int(num_views)

    def call(self, x):
        return ops.mean(ops.reshape(x, (self.num_views, -1, x.shape[-1])), axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.num_views
        return (batch, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_views": self.num_views}


def build_tta_model(model: keras.Model, views: Sequence[str] = DEFAULT_VIEWS,
                    crop_scale: float = DEFAULT_CROP_SCALE, name: str | None = None,
                    colour_norm: str = DEFAULT_COLOUR_NORM) -> keras.Model:
    """frames (B, T, H, W, C) -> `embedding` (B, D): the mean of `model`'s embeddings of the views.

    `model` takes frames (B, T, H, W, C) with fixed H, W, C (a CRF or fusion model); it is
    called in inference mode and not modified. `colour_norm`: how its input's colour was
    normalised (ModelConfig.colour_norm), which the cropped views must reproduce.
    """
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else ()
    if len(shape) != 5 or any(d is None for d in shape[2:]):
        raise ValueError(f"build_tta_model: model {model.name!r} must take frames (batch, T, H, W, C) "
                         f"with fixed H, W, C; its input shape is {model.input_shape}")
    views = _check_views(views, crop_scale)
    frames = keras.Input((None,) + shape[2:], name="frames")
    stacked = TTAViews(views, crop_scale, colour_norm, name="tta_views")(frames)
    embeddings = model(stacked, training=False)
    mean = ViewMean(len(views), name="tta_mean")(embeddings)
    out = keras.layers.Activation("linear", dtype="float32", name="embedding")(mean)
    return keras.Model(frames, out, name=name or f"{model.name}_tta")
