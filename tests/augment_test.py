"""One augmentation for training and test-time views: the same box gives the same pixels."""
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.augment import crop_resize, per_frame, rescale_flow
from keras_crf_reid.datasets.pipeline import _augment
from keras_crf_reid.datasets.preprocess import to_model_input
from keras_crf_reid.geometry import FLOW_X, FLOW_Y
from keras_crf_reid.models.tta import TTAViews, view_box


def _raw(n=2, t=3, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, t, 128, 64, 3), dtype=np.uint8)
    flow = rng.uniform(-0.3, 0.3, (n, t, 128, 64, 2)).astype(np.float32)
    return rgb, flow


@pytest.mark.parametrize("view", ["mirror", "crop_center", "crop_top_left",
                                  "mirror_crop_bottom_right", "mirror_crop_top_right"])
def test_training_and_tta_give_the_same_pixels_for_the_same_box(view):
    """The training pipeline's augmentation of raw frames with a view's box and mirror equals the
    TTA view of the prepared frames (colour re-standardised, flow zoomed and mirrored alike)."""
    rgb, flow = _raw()
    box, mirror = view_box(view, 0.8)
    trained = _augment(rgb, flow, tf.constant([box] * len(rgb), tf.float32),
                       tf.constant([mirror] * len(rgb))).numpy()
    viewed = TTAViews((view,), 0.8)(to_model_input(rgb, flow)).numpy()
    assert viewed.shape == trained.shape == (2, 3, 128, 64, 5)
    np.testing.assert_allclose(viewed, trained, atol=1e-4)
    other = TTAViews(("crop_center" if view != "crop_center" else "crop_top_left",), 0.8)(
        to_model_input(rgb, flow)).numpy()
    assert np.abs(other - trained).max() > 0.1  # a different box gives other pixels


def test_full_box_is_identity_and_flow_is_zoomed_mirrored_and_clipped():
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 8, 4, 2)), tf.float32)
    full = tf.constant([[0.0, 0.0, 1.0, 1.0]] * 2)
    np.testing.assert_array_equal(crop_resize(x, full, tf.constant([False, False]), (8, 4)), x)
    np.testing.assert_array_equal(crop_resize(x, full, tf.constant([True, False]), (8, 4))[0],
                                  x[0, :, ::-1])
    flow = tf.fill([2, 8, 4, 2], 0.2)
    half = tf.constant([[0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.1, 1.0]])
    out = rescale_flow(flow, half, tf.constant([True, False])).numpy()
    np.testing.assert_allclose(out[0, ..., FLOW_X - FLOW_X], -0.4)  # 1/w = 2, mirrored
    np.testing.assert_allclose(out[0, ..., FLOW_Y - FLOW_X], 0.2)
    np.testing.assert_allclose(out[1, ..., FLOW_Y - FLOW_X], 1.0)  # 10x zoom, clipped
    assert per_frame(tf.constant([1, 2]), 3).numpy().tolist() == [1, 1, 1, 2, 2, 2]
