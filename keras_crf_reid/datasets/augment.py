"""Crop, mirror and flow rescaling of frames: ONE implementation for training and test-time views.

A view of a frame is a box (y0, x0, y1, x1), relative to the frame (0..1, box corners on the
first and last pixel centres, as tf.image.crop_and_resize takes them), resampled bilinearly
back to the frame size, and optionally mirrored. Training draws one box and one mirror per
sequence (pipeline.PairSampler) and repeats them over its frames; test-time augmentation
(keras_crf_reid.models.tta) uses fixed ones. Both go through `crop_resize` and `rescale_flow`, so a
view of the same box gives the same pixels on either path (tests/augment_test.py).
"""
from __future__ import annotations

import tensorflow as tf


def crop_resize(images: tf.Tensor, boxes: tf.Tensor, flip: tf.Tensor, size) -> tf.Tensor:
    """images (M, H, W, C), boxes (M, 4) relative, flip (M,) bool -> float32 (M, *size, C).

    A mirrored crop is the crop of the same box with x0 and x1 swapped: one resampling pass.
    """
    sample = tf.where(flip[:, None], tf.gather(boxes, [0, 3, 2, 1], axis=1), boxes)
    return tf.image.crop_and_resize(images, sample, tf.range(tf.shape(images)[0]), size)


def rescale_flow(flow: tf.Tensor, boxes: tf.Tensor, flip: tf.Tensor,
                 scale: float = 1.0) -> tf.Tensor:
    """Flow (M, H, W, 2) resampled from `boxes` -> the flow of the zoomed view, in [-1, 1].

    Zooming into a crop of relative size (h, w) magnifies displacements by (1/w, 1/h);
    mirroring negates the horizontal one. `scale` converts stored flow (e.g. 1 / FLOW_LEVELS
    for int8 quantised flow) to the [-1, 1] model scale.
    """
    zoom = tf.stack([tf.where(flip, -1.0, 1.0) / (boxes[:, 3] - boxes[:, 1]),
                     1.0 / (boxes[:, 2] - boxes[:, 0])], -1) * scale
    return tf.clip_by_value(flow * zoom[:, None, None, :], -1.0, 1.0)


def per_frame(values: tf.Tensor, length) -> tf.Tensor:
    """Per-sequence values (N, ...) -> per-frame values (N * length, ...), sequence-major."""
    return tf.repeat(values, length, axis=0)
