"""Test-time augmentation: one Keras model averaging the embeddings of fixed views of its input.

The paper applies "the same data augmentation on probe and gallery at test". `build_tta_model`
wraps any embedding model (a CRF part model or the fusion model) taking frames
(B, T, H, W, 5) into ONE model with the same input and output (`embedding`, the mean over the
views), so evaluation, `keras_crf_reid.load(...).embed`, `.keras` files and the exported
SavedModel (serving signature `frames -> embedding`) all compute the same thing.

Views act on model input (preprocess.to_model_input: YUV normalised per `colour_norm`, then flow x,
flow y in [-1, 1]; the layout is geometry's) and are made as training augmentation makes them
(datasets.augment: the same crop boxes, mirror and flow rescaling):
  identity             the frames as they are
  mirror               width flipped and horizontal flow negated (exact)
  crop_<where>         the crop box of `crop_scale` of the height and width at where = center,
                       top_left, top_right, bottom_left or bottom_right (`view_box`), resampled
                       back to H x W; the YUV channels are re-standardised per frame (colour_norm
                       frame_std; "fixed" is a constant affine map the resampling respects)
                       and flow is magnified by the zoom and clipped to [-1, 1]
  mirror_crop_<where>  that crop, mirrored
All views of a batch go through the wrapped model in a single forward pass.
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf
from keras import ops

from keras_crf_reid.configs.tta import (DEFAULT_CROP_SCALE, DEFAULT_VIEWS,  # noqa: F401
                                        VIEWS, TTAConfig, check_views)  # (VIEWS re-exported)
from keras_crf_reid.datasets.augment import crop_resize, rescale_flow
from keras_crf_reid.datasets.preprocess import standardize
from keras_crf_reid.geometry import COLOR_SLICE, DEFAULT_COLOUR_NORM, FLOW_SLICE, check_colour_norm



def view_box(view: str, crop_scale: float) -> tuple[tuple[float, float, float, float], bool]:
    """The relative crop box (y0, x0, y1, x1) of a view (the whole frame when uncropped) and
    whether it is mirrored: the box and mirror a training sequence would be augmented with."""
    if "crop_" not in view:
        return (0.0, 0.0, 1.0, 1.0), view == "mirror"
    where = view.split("crop_", 1)[1]
    rest = 1.0 - crop_scale
    y0 = {"top": 0.0, "bottom": rest}.get(where.split("_")[0], rest / 2)
    x0 = {"left": 0.0, "right": rest}.get(where.split("_")[-1], rest / 2)
    return (y0, x0, y0 + crop_scale, x0 + crop_scale), view.startswith("mirror")


@keras.saving.register_keras_serializable("keras_crf_reid")
class TTAViews(keras.layers.Layer):
    """(B, T, H, W, 5) -> (V * B, T, H, W, 5): the V views stacked view-major along the batch."""

    def __init__(self, views: Sequence[str] = DEFAULT_VIEWS, crop_scale: float = DEFAULT_CROP_SCALE,
                 colour_norm: str = DEFAULT_COLOUR_NORM, **kwargs):
        super().__init__(**kwargs)
        self.crop_scale = float(crop_scale)
        self.views = check_views(views, self.crop_scale)
        self.colour_norm = check_colour_norm(colour_norm)

    def _view(self, x, view: str):
        """One view of frames x (N, H, W, C): as training augments a sequence with that box and
        mirror (datasets.augment), colour re-standardised per frame after a crop."""
        box, mirror = view_box(view, self.crop_scale)
        if box == (0.0, 0.0, 1.0, 1.0) and not mirror:
            return x
        n = tf.shape(x)[0]
        boxes = tf.tile(tf.constant([box], tf.float32), [n, 1])
        flip = tf.fill([n], mirror)
        x = crop_resize(x, boxes, flip, x.shape[1:3])
        colour = x[..., COLOR_SLICE]
        if box != (0.0, 0.0, 1.0, 1.0) and self.colour_norm == "frame_std":
            colour = standardize(colour)
        flow = rescale_flow(x[..., FLOW_SLICE], boxes, flip)
        return tf.concat([colour, flow, x[..., FLOW_SLICE.stop:]], axis=-1)

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
    views = check_views(views, crop_scale)
    frames = keras.Input((None,) + shape[2:], name="frames")
    stacked = TTAViews(views, crop_scale, colour_norm, name="tta_views")(frames)
    embeddings = model(stacked, training=False)
    mean = ViewMean(len(views), name="tta_mean")(embeddings)
    out = keras.layers.Activation("linear", dtype="float32", name="embedding")(mean)
    return keras.Model(frames, out, name=name or f"{model.name}_tta")


def scored_model(model: keras.Model, config: TTAConfig,
                 colour_norm: str = DEFAULT_COLOUR_NORM) -> keras.Model:
    """The model that is evaluated and exported: `model`, wrapped in its TTA views with --tta
    (`colour_norm`: the model's input colour normalisation, ModelConfig.colour_norm)."""
    return build_tta_model(model, config.views, config.crop_scale, colour_norm=colour_norm) \
        if config.enabled else model
