"""Figures of evaluation results: CMC curves of several runs, and ranked gallery examples.

`plot_cmc_curves` draws matching rate against rank as in the CRF paper's Fig. 4/5.
`plot_ranked_results` shows, per query, a few of its frames and its top-ranked gallery
tracklets, correct matches framed green and wrong ones red. The tiles and their borders are
composed pixel-exactly with numpy and placed unscaled into the figure; only the labels above
them are drawn by matplotlib. Both write the PNG atomically and return its path.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from keras_crf_reid.atomic import atomic_path  # noqa: E402
from keras_crf_reid.datasets.base import DatasetError, Tracklet  # noqa: E402
from keras_crf_reid.evaluation import metrics  # noqa: E402

DPI = 100
CMC_FIGSIZE = (6.4, 4.8)  # inches: 640 x 480 pixels at DPI
# Ranked-results layout, in pixels.
BORDER = 4  # coloured frame around each tile's image
SPACING = 4  # between tiles
GAP = 20  # between a query's frames and its gallery tiles
MARGIN = 8  # left, right and bottom
HEADER = 22  # label row at the top
MATCH_COLOR = (0, 200, 0)
MISMATCH_COLOR = (230, 0, 0)
QUERY_COLOR = (160, 160, 160)
BACKGROUND = (255, 255, 255)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _save(fig, out_png: str) -> str:
    """Saves a figure to PNG through a temporary file and os.replace, then closes it."""
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return out_png


def plot_cmc_curves(curves: Mapping[str, np.ndarray], out_png: str, title: str = "",
                    max_rank: int = 20) -> str:
    """CMC curves (fractions in [0, 1], as from `evaluate_rank`) of several runs on one figure.

    x: rank 1..max_rank, y: matching rate in percent; the legend gives each run's rank-1 rate.
    """
    if not curves:
        raise ValueError("no CMC curves to plot")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    fig = plt.figure(figsize=CMC_FIGSIZE, dpi=DPI)
    try:
        ax = fig.add_subplot(1, 1, 1)
        lowest = 100.0
        for i, (name, cmc) in enumerate(curves.items()):
            cmc = np.asarray(cmc, np.float64).ravel()[:max_rank]
            if cmc.size == 0 or not np.isfinite(cmc).all():
                raise ValueError(f"CMC curve {name!r} is empty or not finite")
            if cmc.min() < 0.0 or cmc.max() > 1.0 + 1e-9:
                raise ValueError(f"CMC curve {name!r} must hold fractions in [0, 1] "
                                 f"(divide percentages by 100)")
            pct = 100.0 * cmc
            lowest = min(lowest, float(pct.min()))
            ax.plot(np.arange(1, pct.size + 1), pct, marker=_MARKERS[i % len(_MARKERS)],
                    markersize=4, linewidth=1.5, label=f"{name} (rank-1 {pct[0]:.1f}%)")
        ax.set_xlim(0.5, max_rank + 0.5)
        ax.set_xticks(sorted({1, *range(5, max_rank + 1, 5)} & set(range(1, max_rank + 1))))
        ax.set_ylim(max(0.0, 10.0 * np.floor(lowest / 10.0) - 5.0), 101.0)
        ax.set_xlabel("Rank")
        ax.set_ylabel("Matching rate (%)")
        if title:
            ax.set_title(title)
        ax.grid(True, linestyle=":", linewidth=0.8)
        ax.legend(loc="lower right", fontsize=9)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, out_png)


def plot_learning_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], out_png: str,
                         metrics_shown: Sequence[str] = ("rank1", "mAP"),
                         baselines: Mapping[str, Mapping[str, float]] | None = None,
                         title: str = "") -> str:
    """Held-out metrics (percent) against training step, one panel per metric.

    `curves` maps a run name to {"step": [...], metric: [...]}; `baselines` maps a name to
    {metric: value}, drawn as horizontal dashed lines (e.g. the stripe HSV histogram).
    """
    if not curves:
        raise ValueError("no learning curves to plot")
    for name, c in curves.items():
        steps = np.asarray(c.get("step", ()), np.float64)
        if steps.size == 0:
            raise ValueError(f"learning curve {name!r} has no evaluated step")
        for m in metrics_shown:
            if m not in c or len(c[m]) != steps.size:
                raise ValueError(f"learning curve {name!r}: {m!r} needs one value per step "
                                 f"({steps.size})")
    fig = plt.figure(figsize=(CMC_FIGSIZE[0] * len(metrics_shown), CMC_FIGSIZE[1]), dpi=DPI)
    try:
        for k, m in enumerate(metrics_shown):
            ax = fig.add_subplot(1, len(metrics_shown), k + 1)
            for i, (name, c) in enumerate(curves.items()):
                ax.plot(c["step"], c[m], marker=_MARKERS[i % len(_MARKERS)], markersize=4,
                        linewidth=1.5, label=name)
            for j, (name, vals) in enumerate((baselines or {}).items()):
                if m in vals:
                    ax.axhline(vals[m], color="grey", linestyle=("--", ":", "-.")[j % 3],
                               linewidth=1.2, label=f"{name} ({vals[m]:.1f})")
            ax.set_xlabel("Training step")
            ax.set_ylabel(f"{m} (%)")
            ax.grid(True, linestyle=":", linewidth=0.8)
            ax.legend(loc="lower right", fontsize=8)
            if title:
                ax.set_title(f"{title}: {m}")
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, out_png)


def ranked_results_from_distmat(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids,
                                top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery indices per query under the evaluation protocol, and their match flags.

    Same-pid-same-camera and junk gallery items are skipped, ties are broken by gallery index
    (as a stable argsort). Returns int64 (Q, top_k) indices into the gallery, padded with -1
    when fewer items remain, and bool (Q, top_k) flags (True = same pid as the query).
    """
    distmat, q_pids, g_pids, q_camids, g_camids = metrics.check_eval_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    num_q = distmat.shape[0]
    indices = np.full((num_q, top_k), -1, np.int64)
    matches = np.zeros((num_q, top_k), bool)
    for i in range(num_q):
        cand = np.flatnonzero(metrics.kept_gallery(q_pids[i], q_camids[i], g_pids, g_camids))
        d = distmat[i, cand]
        if len(cand) > top_k:
            kth = np.partition(d, top_k - 1)[top_k - 1]
            close = d <= kth  # everything that can be in the top k, ties included
            cand, d = cand[close], d[close]
        top = cand[np.argsort(d, kind="stable")[:top_k]]
        indices[i, :len(top)] = top
        matches[i, :len(top)] = g_pids[top] == q_pids[i]
    return indices, matches


def _frames_u8(x, what: str) -> np.ndarray:
    """A tracklet or single frame as uint8 (T, H, W, 3); floats are taken to be in [0, 1]."""
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[None]
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4) or 0 in a.shape:
        raise ValueError(f"{what}: expected frames (T, H, W, 3) or one frame (H, W, 3), "
                         f"got shape {np.asarray(x).shape}")
    if a.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255)
    a = a.astype(np.uint8, copy=False)[..., :3]
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def _resize_nearest(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    rows = np.arange(height) * frame.shape[0] // height
    cols = np.arange(width) * frame.shape[1] // width
    return frame[rows][:, cols]


def _sample(frames: np.ndarray, n: int) -> np.ndarray:
    """n frames evenly spread over the tracklet (all of them when it is shorter)."""
    if len(frames) <= n:
        return frames
    return frames[np.round(np.linspace(0, len(frames) - 1, n)).astype(int)]


def ranked_layout(num_rows: int, top_k: int, frames_per_tracklet: int, height: int,
                  width: int) -> dict:
    """Pixel geometry of `plot_ranked_results`: image size and the top-left of each tile's border.

    Returns {"size": (H, W), "query": [[(y, x)] * frames] * rows, "gallery": [[(y, x)] * k] * rows}.
    """
    tile_h, tile_w = height + 2 * BORDER, width + 2 * BORDER
    query_w = frames_per_tracklet * tile_w + (frames_per_tracklet - 1) * SPACING
    gallery_x0 = MARGIN + query_w + GAP
    total_w = gallery_x0 + top_k * tile_w + max(0, top_k - 1) * SPACING + MARGIN
    total_h = HEADER + num_rows * tile_h + (num_rows - 1) * SPACING + MARGIN
    ys = [HEADER + r * (tile_h + SPACING) for r in range(num_rows)]
    return {
        "size": (total_h, total_w),
        "query": [[(y, MARGIN + j * (tile_w + SPACING)) for j in range(frames_per_tracklet)]
                  for y in ys],
        "gallery": [[(y, gallery_x0 + j * (tile_w + SPACING)) for j in range(top_k)]
                    for y in ys],
    }


def _put_tile(canvas: np.ndarray, y: int, x: int, frame: np.ndarray, color) -> None:
    h, w = frame.shape[:2]
    canvas[y:y + h + 2 * BORDER, x:x + w + 2 * BORDER] = color
    canvas[y + BORDER:y + BORDER + h, x + BORDER:x + BORDER + w] = frame


def plot_ranked_results(query_frames: Sequence[np.ndarray],
                        gallery_frames: Sequence[Sequence[np.ndarray]],
                        matches: Sequence[Sequence[bool]], out_png: str,
                        frames_per_tracklet: int = 4) -> str:
    """One row per query: up to `frames_per_tracklet` of its frames, then its ranked gallery.

    query_frames[i]: the query's frames (T, H, W, 3); gallery_frames[i][r]: the rank-(r+1)
    gallery tracklet (its middle frame is shown) or a single frame; matches[i][r]: whether it
    is the query's identity (green border) or not (red), None when unknown (grey). Every frame is shown at the size of the
    first query frame. The image is `ranked_layout(...)["size"]` pixels.
    """
    if not query_frames:
        raise ValueError("no queries to plot")
    if len(gallery_frames) != len(query_frames) or len(matches) != len(query_frames):
        raise ValueError(f"{len(query_frames)} queries but {len(gallery_frames)} gallery rows "
                         f"and {len(matches)} match rows")
    if frames_per_tracklet < 1:
        raise ValueError(f"frames_per_tracklet must be >= 1, got {frames_per_tracklet}")
    for i, (g, m) in enumerate(zip(gallery_frames, matches)):
        if len(g) != len(m):
            raise ValueError(f"query {i}: {len(g)} gallery tracklets but {len(m)} match flags")
    queries = [_frames_u8(q, f"query {i}") for i, q in enumerate(query_frames)]
    height, width = queries[0].shape[1:3]
    top_k = max(len(g) for g in gallery_frames)
    layout = ranked_layout(len(queries), top_k, frames_per_tracklet, height, width)
    canvas = np.empty(layout["size"] + (3,), np.uint8)
    canvas[:] = BACKGROUND
    for i, q in enumerate(queries):
        for (y, x), frame in zip(layout["query"][i], _sample(q, frames_per_tracklet)):
            _put_tile(canvas, y, x, _resize_nearest(frame, height, width), QUERY_COLOR)
        for (y, x), g, ok in zip(layout["gallery"][i], gallery_frames[i], matches[i]):
            g = _frames_u8(g, f"query {i} gallery tracklet")
            color = QUERY_COLOR if ok is None else MATCH_COLOR if bool(ok) else MISMATCH_COLOR
            _put_tile(canvas, y, x, _resize_nearest(g[len(g) // 2], height, width), color)

    total_h, total_w = layout["size"]
    fig = plt.figure(figsize=(total_w / DPI, total_h / DPI), dpi=DPI)
    fig.figimage(canvas, xo=0, yo=0, origin="upper")
    label_y = 1.0 - (HEADER / 2.0) / total_h
    tile_w = width + 2 * BORDER
    query_w = layout["query"][0][-1][1] + tile_w - MARGIN
    fig.text((MARGIN + query_w / 2.0) / total_w, label_y, "Query", ha="center", va="center",
             fontsize=9)
    for r, (_, x) in enumerate(layout["gallery"][0]):
        fig.text((x + tile_w / 2.0) / total_w, label_y, f"Rank {r + 1}" if tile_w >= 60
                 else str(r + 1), ha="center", va="center", fontsize=8)
    return _save(fig, out_png)


def frames_for_ranked_results(query_tracklets: Sequence[Tracklet],
                              gallery_tracklets: Sequence[Tracklet], indices: np.ndarray,
                              frames_per_tracklet: int = 4
                              ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Reads the frames `plot_ranked_results` shows, and only those, from the tracklets' files.

    indices: (Q, k) gallery indices per query (from `ranked_results_from_distmat`; -1 ends a
    row). Undecodable frames are skipped; a tracklet with none left raises DatasetError.
    """
    from keras_crf_reid.datasets.frames import read_frames  # cv2 only when frames are actually read

    def load(paths: Sequence[str], what: str) -> np.ndarray:
        frames, _ = read_frames(paths) if len(paths) else (np.zeros((0,)), [])
        if len(frames) == 0:
            raise DatasetError(f"{what}: no readable frame")
        return frames

    query_frames, gallery_frames = [], []
    for t, row in zip(query_tracklets, np.asarray(indices)):
        picks = _sample(np.asarray(t.frames), frames_per_tracklet)
        query_frames.append(load(list(picks), f"query tracklet {t.key}"))
        row_frames = []
        for j in row:
            if j < 0:
                break
            g = gallery_tracklets[int(j)]
            middle = list(g.frames[len(g.frames) // 2:][:1])
            row_frames.append(load(middle, f"gallery tracklet {g.key}"))
        gallery_frames.append(row_frames)
    return query_frames, gallery_frames


def plot_ranked_split(dist: np.ndarray, dataset, split, out_png: str, num_queries: int = 5,
                      top_k: int = 5, frames_per_tracklet: int = 3) -> str:
    """Ranked-results picture of ~num_queries evenly spread queries of a split's distances."""
    tr = dataset.tracklets
    q, g = [tr[i] for i in split.query], [tr[i] for i in split.gallery]
    indices, matches = ranked_results_from_distmat(
        dist, [t.pid for t in q], [t.pid for t in g], [t.camid for t in q], [t.camid for t in g],
        top_k=min(top_k, len(g)))
    pick = np.unique(np.linspace(0, len(q) - 1, min(num_queries, len(q))).round().astype(int))
    qf, gf = frames_for_ranked_results([q[i] for i in pick], g, indices[pick],
                                       frames_per_tracklet=frames_per_tracklet)
    return plot_ranked_results(qf, gf, matches[pick], out_png, frames_per_tracklet=frames_per_tracklet)
