"""CMC-curve and ranked-results figures: files, pixel sizes, border colours, ranking helper."""
import os

import cv2
import matplotlib.image as mpimg
import numpy as np
import pytest

from keras_crf_reid.datasets.base import Tracklet
from keras_crf_reid.evaluation import metrics, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png_u8(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    img = mpimg.imread(path)
    return np.round(img[..., :3] * 255).astype(np.uint8)


def test_plot_cmc_curves(tmp_path):
    rng = np.random.default_rng(0)
    curves = {"CRF": np.sort(rng.random(20)), "CNN": np.sort(rng.random(20)) * 0.9,
              "short": np.array([0.2, 0.4, 0.5])}
    out = plots.plot_cmc_curves(curves, str(tmp_path / "sub" / "cmc.png"), title="MARS")
    assert out == str(tmp_path / "sub" / "cmc.png")
    img = read_png_u8(out)
    want_h, want_w = (round(s * plots.DPI) for s in plots.CMC_FIGSIZE[::-1])
    assert img.shape == (want_h, want_w, 3)
    assert img.min() < 100 and img.max() == 255  # something is drawn on a white page
    assert os.listdir(tmp_path / "sub") == ["cmc.png"]


@pytest.mark.parametrize("curves, message", [
    ({}, "no CMC curves"),
    ({"pct": np.array([50.0, 80.0])}, "fractions"),
    ({"nan": np.array([np.nan])}, "not finite"),
])
def test_plot_cmc_curves_rejects_bad_curves(tmp_path, curves, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_cmc_curves(curves, str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def solid(color, frames=3, height=32, width=16):
    return np.broadcast_to(np.array(color, np.uint8), (frames, height, width, 3)).copy()


def test_plot_ranked_results_pixels(tmp_path):
    # Query 0 with 6 frames (4 shown) and 3 gallery tracklets; query 1 with 2 frames and 2.
    q0 = solid((10, 20, 30), frames=6)
    q0[:, 0, 0] = np.arange(6)[:, None] * 40  # marks which frames were sampled
    q1 = solid((40, 50, 60), frames=2)
    gallery = [[solid((100, 0, 0)), solid((0, 100, 0)), solid((0, 0, 100))[1]],
               [solid((1, 2, 3), height=64, width=32), solid((7, 8, 9), frames=1)]]
    matches = [[True, False, True], [False, True]]
    out = plots.plot_ranked_results([q0, q1], gallery, matches, str(tmp_path / "r.png"),
                                    frames_per_tracklet=4)
    img = read_png_u8(out)
    layout = plots.ranked_layout(2, 3, 4, 32, 16)
    assert img.shape == layout["size"] + (3,)
    b = plots.BORDER
    for row, flags, colors in [(0, matches[0], [(100, 0, 0), (0, 100, 0), (0, 0, 100)]),
                               (1, matches[1], [(1, 2, 3), (7, 8, 9)])]:
        for (y, x), ok, color in zip(layout["gallery"][row], flags, colors):
            border = plots.MATCH_COLOR if ok else plots.MISMATCH_COLOR
            for dy, dx in [(0, 0), (b - 1, b - 1), (b + 32, b + 16), (b + 16, 0)]:
                assert tuple(img[y + dy, x + dx]) == border, (row, y + dy, x + dx)
            assert tuple(img[y + b + 5, x + b + 5]) == color  # the frame itself, unscaled
    # Query tiles: grey border, the 4 evenly sampled frames 0, 2, 3, 5 of query 0.
    for (y, x), t in zip(layout["query"][0], [0, 2, 3, 5]):
        assert tuple(img[y, x]) == plots.QUERY_COLOR
        assert tuple(img[y + b, x + b]) == (t * 40,) * 3
    # Query 1 has 2 frames and 2 gallery items: the remaining slots stay background.
    for y, x in layout["query"][1][2:] + layout["gallery"][1][2:]:
        assert tuple(img[y + b + 5, x + b + 5]) == plots.BACKGROUND


def test_plot_ranked_results_converts_gray_and_float_frames(tmp_path):
    gray = np.full((2, 20, 10), 200, np.uint8)
    as_float = np.full((20, 10, 3), 0.5, np.float32)
    out = plots.plot_ranked_results([gray], [[as_float]], [[False]], str(tmp_path / "g.png"),
                                    frames_per_tracklet=1)
    img = read_png_u8(out)
    layout = plots.ranked_layout(1, 1, 1, 20, 10)
    assert img.shape == layout["size"] + (3,)
    (qy, qx), (gy, gx) = layout["query"][0][0], layout["gallery"][0][0]
    b = plots.BORDER
    assert tuple(img[qy + b + 3, qx + b + 3]) == (200, 200, 200)
    assert tuple(img[gy + b + 3, gx + b + 3]) == (128, 128, 128)
    assert tuple(img[gy, gx]) == plots.MISMATCH_COLOR


def test_plot_ranked_results_validates(tmp_path):
    q = [solid((0, 0, 0))]
    with pytest.raises(ValueError, match="gallery rows"):
        plots.plot_ranked_results(q, [], [], str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="match flags"):
        plots.plot_ranked_results(q, [[solid((0, 0, 0))]], [[True, False]],
                                  str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="expected frames"):
        plots.plot_ranked_results([np.zeros((0, 8, 8, 3))], [[]], [[]], str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="no queries"):
        plots.plot_ranked_results([], [], [], str(tmp_path / "a.png"))


def test_ranked_results_from_distmat_small_case():
    # Query 0 (pid 1, cam 0): g1 is same pid + camera (removed), g4 is junk (removed).
    # Remaining by distance: g3 (.1, pid 1), g0 (.2, pid 2), g2 (.3, pid 1), g5 (.9).
    # Query 1 (pid 2, cam 1): all tie at 1.0 except g5; g0 is pid 2 cam 0 (kept), stable
    # order g0, g1, g2, g3 (g4 junk removed).
    distmat = np.array([[0.2, 0.05, 0.3, 0.1, 0.0, 0.9],
                        [1.0, 1.0, 1.0, 1.0, 1.0, 2.0]])
    g_pids, g_cams = [2, 1, 1, 1, -1, 3], [0, 0, 1, 1, 1, 1]
    idx, ok = plots.ranked_results_from_distmat(distmat, [1, 2], g_pids, [0, 1], g_cams, top_k=3)
    np.testing.assert_array_equal(idx, [[3, 0, 2], [0, 1, 2]])
    np.testing.assert_array_equal(ok, [[True, False, True], [True, False, False]])
    idx, ok = plots.ranked_results_from_distmat(distmat, [1, 2], g_pids, [0, 1], g_cams, top_k=6)
    np.testing.assert_array_equal(idx, [[3, 0, 2, 5, -1, -1], [0, 1, 2, 3, 5, -1]])
    assert not ok[:, 4:].any()
    with pytest.raises(ValueError, match="top_k"):
        plots.ranked_results_from_distmat(distmat, [1, 2], g_pids, [0, 1], g_cams, top_k=0)


def test_ranked_results_agree_with_stable_argsort():
    rng = np.random.default_rng(3)
    distmat = rng.integers(0, 5, (20, 40)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 5, 20), rng.integers(-1, 5, 40)
    q_cams, g_cams = rng.integers(0, 2, 20), rng.integers(0, 2, 40)
    idx, ok = plots.ranked_results_from_distmat(distmat, q_pids, g_pids, q_cams, g_cams, 7)
    for i in range(20):
        order = np.argsort(distmat[i], kind="stable")
        order = order[metrics.kept_gallery(q_pids[i], q_cams[i], g_pids, g_cams)[order]][:7]
        np.testing.assert_array_equal(idx[i, :len(order)], order)
        np.testing.assert_array_equal(ok[i, :len(order)], g_pids[order] == q_pids[i])


def test_frames_for_ranked_results_reads_sampled_frames(tmp_path):
    def tracklet(pid, value, n):
        paths = []
        for t in range(n):
            p = str(tmp_path / f"p{pid}_{value}_{t}.png")
            cv2.imwrite(p, np.full((128, 64, 3), value + t, np.uint8))
            paths.append(p)
        return Tracklet(pid, 0, tuple(paths))

    queries = [tracklet(1, 10, 7)]
    gallery = [tracklet(2, 100, 3), tracklet(1, 200, 5)]
    q_frames, g_frames = plots.frames_for_ranked_results(queries, gallery, np.array([[1, 0, -1]]),
                                                         frames_per_tracklet=3)
    assert q_frames[0].shape == (3, 128, 64, 3)
    np.testing.assert_array_equal(q_frames[0][:, 0, 0, 0], [10, 13, 16])
    assert [g[0, 0, 0, 0] for g in g_frames[0]] == [202, 101]
    out = plots.plot_ranked_results(q_frames, g_frames, [[True, False]], str(tmp_path / "t.png"),
                                    frames_per_tracklet=3)
    assert read_png_u8(out).shape == plots.ranked_layout(1, 2, 3, 128, 64)["size"] + (3,)


def test_plot_learning_curves(tmp_path):
    curves = {"pairs": {"step": [400, 800], "rank1": [20.0, 30.0], "mAP": [16.0, 22.0]},
              "pk": {"step": [400, 800, 1200], "rank1": [22.0, 33.0, 35.0], "mAP": [17, 24, 26]}}
    out = plots.plot_learning_curves(curves, str(tmp_path / "lc.png"),
                                     baselines={"stripe HSV": {"rank1": 22.3, "mAP": 14.0}})
    img = read_png_u8(out)
    assert img.shape == (round(plots.CMC_FIGSIZE[1] * plots.DPI),
                         round(2 * plots.CMC_FIGSIZE[0] * plots.DPI), 3)
    assert (img < 200).any()


def test_plot_learning_curves_rejects_ragged(tmp_path):
    with pytest.raises(ValueError, match="one value per step"):
        plots.plot_learning_curves({"x": {"step": [1, 2], "rank1": [1.0], "mAP": [1, 2]}},
                                   str(tmp_path / "lc.png"))
    with pytest.raises(ValueError, match="no evaluated step"):
        plots.plot_learning_curves({"x": {"step": [], "rank1": [], "mAP": []}},
                                   str(tmp_path / "lc.png"))
