"""Optical flow has the right sign and size under a known translation."""
import numpy as np
import pytest

from keras_crf_reid.datasets.flow import FLOW_CLIP, compute_flow


def _moving_square(dx, dy, t=4):
    rng = np.random.default_rng(0)
    bg = (rng.random((128, 64, 3)) * 50).astype(np.uint8)
    frames = []
    for k in range(t):
        f = bg.copy()
        y, x = 40 + dy * k, 16 + dx * k
        f[y:y + 24, x:x + 16] = 230
        f[y + 8:y + 16, x + 4:x + 12] = 120
        frames.append(f)
    return np.stack(frames)


@pytest.mark.parametrize("dx,dy", [(2, 0), (-2, 0), (0, 3), (0, -3)])
def test_flow_sign_and_magnitude(dx, dy):
    flow = compute_flow(_moving_square(dx, dy)).astype(np.float32) * FLOW_CLIP
    y, x = 40 + dy * 2, 16 + dx * 2  # square position in frame 2
    region = flow[2, y + 4:y + 20, x + 2:x + 14]
    assert flow.dtype == np.float32 and flow.shape == (4, 128, 64, 2)
    assert abs(region[..., 0].mean() - dx) < 0.8
    assert abs(region[..., 1].mean() - dy) < 0.8


def test_first_frame_copies_second_and_single_frame_is_zero():
    flow = compute_flow(_moving_square(2, 0))
    np.testing.assert_array_equal(flow[0], flow[1])
    assert np.all(compute_flow(_moving_square(2, 0, t=1)) == 0)


def test_flow_range_and_bad_input():
    flow = compute_flow(_moving_square(20, 0))
    assert flow.min() >= -1 and flow.max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(np.zeros((3, 128, 64), np.uint8))
