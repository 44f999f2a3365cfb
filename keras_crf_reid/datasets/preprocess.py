"""The model's input tensor: YUV colour, normalised (per frame by default), plus two flow channels.

Every consumer (training pipeline, evaluation, gRPC client, gallery search) goes through
`to_model_input` so the network always sees identically prepared frames.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_crf_reid.geometry import (DEFAULT_COLOUR_NORM, STD_EPS, YUV_FIXED_MEAN, YUV_FIXED_STD,
                                     check_colour_norm)


def normalise_yuv(yuv: tf.Tensor, colour_norm: str = DEFAULT_COLOUR_NORM) -> tf.Tensor:
    """YUV (..., H, W, 3) -> the model's colour channels (see `to_model_input`)."""
    if check_colour_norm(colour_norm) == "fixed":
        return (yuv - tf.constant(YUV_FIXED_MEAN, yuv.dtype)) / tf.constant(YUV_FIXED_STD, yuv.dtype)
    return standardize(yuv)


def to_model_input(rgb, flow, colour_norm: str = DEFAULT_COLOUR_NORM) -> tf.Tensor:
    """RGB uint8 (..., H, W, 3) and flow (..., H, W, 2) in [-1, 1] -> float32 (..., H, W, 5).

    Colour is converted to YUV and normalised per `colour_norm` (geometry.COLOUR_NORMS):
    "frame_std" (the paper's) standardises each YUV channel of each frame to zero mean and unit
    variance (removes global illumination and colour cast differences between cameras, and each
    frame's mean colour with them); "fixed" subtracts and divides by the constant
    geometry.YUV_FIXED_MEAN / YUV_FIXED_STD (keeps mean colour). Flow is passed through as
    stored (already scaled to [-1, 1]).
    """
    if isinstance(flow, np.ndarray) and flow.dtype != np.float32:
        flow = flow.astype(np.float32)  # compute_flow returns float16; cast here, not in the graph
    rgb = tf.convert_to_tensor(rgb)
    if rgb.dtype == tf.uint8:
        rgb = tf.cast(rgb, tf.float32) / 255.0
    yuv = normalise_yuv(tf.image.rgb_to_yuv(tf.cast(rgb, tf.float32)), colour_norm)
    return tf.concat([yuv, tf.cast(flow, tf.float32)], axis=-1)


def standardize(x: tf.Tensor) -> tf.Tensor:
    """Each channel of each frame (..., H, W, C) to zero mean and unit variance over its pixels
    (the deviation floored at geometry.STD_EPS, so a flat frame stays finite)."""
    mean = tf.reduce_mean(x, axis=[-3, -2], keepdims=True)
    std = tf.math.reduce_std(x, axis=[-3, -2], keepdims=True)
    return (x - mean) / tf.maximum(std, STD_EPS)


def loop_indices(num_frames: int, length: int, start: int = 0) -> np.ndarray:
    """`length` frame indices starting at `start`, looping back to frame 0 past the end.

    Tracklets shorter than the window are repeated cyclically (0, 1, .., n-1, 0, 1, ..) rather
    than zero-padded, so every input frame is a real frame with real motion.
    """
    if num_frames <= 0:
        raise ValueError("a tracklet needs at least one frame")
    return (start + np.arange(length)) % num_frames


def group_windows(num_frames: int, length: int = 16) -> np.ndarray:
    """Frame indices (G, length) covering every frame of a tracklet, for evaluation.

    The tracklet is cut into consecutive groups of `length`; a remainder is covered by one more
    group made of the last `length` frames (overlapping the previous group); a tracklet shorter
    than `length` gives one looped group.
    """
    if num_frames < length:
        return loop_indices(num_frames, length)[None, :]
    starts = list(range(0, num_frames - length + 1, length))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return np.asarray(starts)[:, None] + np.arange(length)[None, :]
