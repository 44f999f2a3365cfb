"""tf.data pipelines: balanced sequence-pair batches for training, frame groups for evaluation.

Training batch b is drawn from a NumPy generator seeded with (seed, b), so the stream is
identical for any parallelism and can be resumed at any step. Half of each batch are positive
pairs (one identity, two different cameras), half negative pairs (two identities, random
cameras); each side is a window of `seq_len` consecutive frames at a random start (shorter
tracklets are looped, see preprocess.loop_indices). Augmentation is drawn per sequence and
applied identically to all its frames: a random crop (scale and translation) resized back to
the input size, and a horizontal mirror that also negates horizontal flow. Optional (off by
default): colour jitter (brightness, contrast, saturation, hue) and random erasing of one
rectangle, drawn from the same per-batch generator so the stream stays deterministic.


Every map runs with `num_parallel_calls` (PairConfig.num_parallel_calls; AUTOTUNE = -1 uses
the machine's cores) and deterministic ordering, so the batches are the same for any
parallelism; reading a window (JPEG decoding, see store.py) releases the GIL.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_crf_reid.datasets.flow import FLOW_LEVELS
from keras_crf_reid.options import option
from keras_crf_reid.geometry import DEFAULT_COLOUR_NORM, FRAME_HEIGHT, FRAME_WIDTH
from keras_crf_reid.datasets.preprocess import group_windows, loop_indices, to_model_input
from keras_crf_reid.datasets.store import TrackletStore


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """How training pairs are sampled and augmented."""

    seq_len: int = option(16, "Frames per training sequence (a random window of a tracklet).")
    batch_size: int = option(16, "Sequence pairs per batch (even: half positive, half negative).")
    augment: bool = option(True, "Random crop/translation and mirror per sequence.")
    min_crop_scale: float = option(0.8, "Smallest random crop, as a fraction of the frame side.")
    flip: bool = option(True, "Random horizontal mirror (negates horizontal flow) with --augment.")
    seed: int = option(0, "Seed of weight initialisation and pair sampling.")
    stream: int = option(0, "Input pipeline of a distributed run (0: the single stream).", cli=False,
                         results=False)
    color_jitter: float = option(0.0, "Colour jitter strength j per training sequence: "
                                 "brightness/contrast/saturation x U(1-j, 1+j), hue +-0.1j turn.")
    random_erase: float = option(0.0, "Probability of erasing one random rectangle (all "
                                 "channels 0) of each training sequence.")
    num_parallel_calls: int = option(-1, "Batches prepared concurrently by every pipeline map "
                                     "(-1: tf.data.AUTOTUNE, the machine's cores).", results=False)

    def __post_init__(self):
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"--batch_size must be an even number >= 2 (half positive, half "
                             f"negative pairs), got {self.batch_size}")
        if self.seq_len < 1:
            raise ValueError(f"--seq_len must be >= 1, got {self.seq_len}")
        if not 0.1 <= self.min_crop_scale <= 1.0:
            raise ValueError(f"--min_crop_scale must be in [0.1, 1], got {self.min_crop_scale}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"--color_jitter must be in [0, 1), got {self.color_jitter}")
        if not 0.0 <= self.random_erase <= 1.0:
            raise ValueError(f"--random_erase must be a probability in [0, 1], got {self.random_erase}")
        check_parallel_calls(self.num_parallel_calls)


def check_parallel_calls(n: int) -> int:
    """`n` if it is a valid num_parallel_calls (>= 1, or -1 for AUTOTUNE); ValueError otherwise."""
    if n != tf.data.AUTOTUNE and n < 1:
        raise ValueError(f"--num_parallel_calls must be >= 1 or -1 (AUTOTUNE), got {n}")
    return n


class PairSampler:
    """Draws balanced pair batches (indices, window starts, augmentation) from a training set."""

    def __init__(self, store: TrackletStore, train: Sequence[int], config: PairConfig):
        tracklets = store.dataset.tracklets
        self.config = config
        self.lengths = store.lengths()
        self.by_pid_cam: dict[int, dict[int, list[int]]] = {}
        for i in train:
            t = tracklets[i]
            self.by_pid_cam.setdefault(t.pid, {}).setdefault(t.camid, []).append(i)
        self.pid_of = [t.pid for t in tracklets]
        self.pids = sorted(self.by_pid_cam)
        self.label_of = {pid: k for k, pid in enumerate(self.pids)}
        self.multi_cam = [p for p in self.pids if len(self.by_pid_cam[p]) >= 2]
        if not self.multi_cam:
            raise ValueError(f"{store.dataset.root}: no training identity is seen by two cameras; "
                             "positive pairs cannot be formed")
        if len(self.pids) < 2:
            raise ValueError(f"{store.dataset.root}: negative pairs need at least 2 training identities")

    @property
    def num_classes(self) -> int:
        return len(self.pids)

    def _any(self, rng: np.random.Generator, pid: int) -> int:
        cams = self.by_pid_cam[pid]
        cam = list(cams)[rng.integers(len(cams))]
        return cams[cam][rng.integers(len(cams[cam]))]

    def _start(self, rng: np.random.Generator, i: int) -> int:
        n = int(self.lengths[i])
        return int(rng.integers(0, n - self.config.seq_len + 1)) if n > self.config.seq_len else 0

    def batch(self, b: int) -> dict[str, np.ndarray]:
        """Batch number b: tracklet indices (B, 2), starts (B, 2), labels, augmentation boxes/flips."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, b] + ([cfg.stream] if cfg.stream else []))
        half = cfg.batch_size // 2
        idx = np.zeros((cfg.batch_size, 2), np.int64)
        for k in range(half):
            pid = self.multi_cam[rng.integers(len(self.multi_cam))]
            cams = list(self.by_pid_cam[pid])
            ca, cb = rng.choice(len(cams), 2, replace=False)
            la, lb = self.by_pid_cam[pid][cams[ca]], self.by_pid_cam[pid][cams[cb]]
            idx[k] = la[rng.integers(len(la))], lb[rng.integers(len(lb))]
        for k in range(half, cfg.batch_size):
            pa, pb = rng.choice(len(self.pids), 2, replace=False)
            idx[k] = self._any(rng, self.pids[pa]), self._any(rng, self.pids[pb])
        order = rng.permutation(cfg.batch_size)
        idx = idx[order]
        label = (np.arange(cfg.batch_size) < half).astype(np.float32)[order]
        starts = np.array([[self._start(rng, i) for i in row] for row in idx], np.int64)
        classes = np.array([[self.label_of[self.pid_of[i]] for i in row] for row in idx], np.int64)
        n = cfg.batch_size * 2
        if cfg.augment:
            scale = rng.uniform(cfg.min_crop_scale, 1.0, n)
            aspect = rng.uniform(0.95, 1.05, n)
            h = np.clip(scale * aspect, 0.1, 1.0)
            w = np.clip(scale / aspect, 0.1, 1.0)
            y0 = rng.uniform(0, 1, n) * (1 - h)
            x0 = rng.uniform(0, 1, n) * (1 - w)
            flip = rng.random(n) < 0.5 if cfg.flip else np.zeros(n, bool)
        else:
            h = w = np.ones(n)
            y0 = x0 = np.zeros(n)
            flip = np.zeros(n, bool)
        boxes = np.stack([y0, x0, y0 + h, x0 + w], 1).astype(np.float32)
        out = {"index": idx, "start": starts, "label": label, "class": classes,
               "boxes": boxes.reshape(cfg.batch_size, 2, 4), "flip": flip.reshape(cfg.batch_size, 2)}
        # Drawn after everything above, and only when enabled, so the default stream is unchanged.
        if cfg.color_jitter > 0:
            out["jitter"] = _draw_jitter(rng, n, cfg.color_jitter).reshape(cfg.batch_size, 2, 4)
        if cfg.random_erase > 0:
            out["erase"] = _draw_erase(rng, n, cfg.random_erase).reshape(cfg.batch_size, 2, 4)
        return out


ERASE_AREA = (0.02, 0.4)  # fraction of the frame erased (Zhong et al., random erasing)
ERASE_ASPECT = (0.3, 1 / 0.3)  # height / width of the rectangle in pixels


def _draw_jitter(rng: np.random.Generator, n: int, strength: float) -> np.ndarray:
    """(n, 4) float32: brightness, contrast and saturation factors, hue shift (turns)."""
    factors = rng.uniform(1.0 - strength, 1.0 + strength, (n, 3))
    hue = rng.uniform(-0.1 * strength, 0.1 * strength, (n, 1))
    return np.concatenate([factors, hue], 1).astype(np.float32)


def _draw_erase(rng: np.random.Generator, n: int, prob: float) -> np.ndarray:
    """(n, 4) float32 boxes (y0, x0, y1, x1) relative to the frame; empty where not erased."""
    area = rng.uniform(*ERASE_AREA, n)
    aspect = np.exp(rng.uniform(math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]), n))
    h = np.minimum(np.sqrt(area * aspect * FRAME_WIDTH / FRAME_HEIGHT), 1.0)
    w = np.minimum(area / h, 1.0)
    y0 = rng.uniform(0, 1, n) * (1 - h)
    x0 = rng.uniform(0, 1, n) * (1 - w)
    on = rng.random(n) < prob
    boxes = np.stack([y0, x0, y0 + h, x0 + w], 1) * on[:, None]
    return boxes.astype(np.float32)


def _color_jitter(rgb: tf.Tensor, jitter: tf.Tensor) -> tf.Tensor:
    """rgb (M, H, W, 3) in [0, 1], jitter (M, 4) -> jittered rgb in [0, 1].

    Brightness scales, contrast scales around the frame's mean grey level, saturation scales
    HSV saturation, hue rotates it. Note that to_model_input standardises each YUV channel per
    frame, which cancels pure brightness/contrast/saturation scaling except where it clips;
    the hue rotation mixes U and V and survives it.
    """
    b, c, s, h = (jitter[:, k, None, None, None] for k in range(4))
    rgb = tf.clip_by_value(rgb * b, 0.0, 1.0)
    grey = tf.reduce_mean(tf.image.rgb_to_grayscale(rgb), axis=[1, 2, 3], keepdims=True)
    rgb = tf.clip_by_value((rgb - grey) * c + grey, 0.0, 1.0)
    hsv = tf.image.rgb_to_hsv(rgb)
    hue = tf.math.floormod(hsv[..., :1] + h, 1.0)
    sat = tf.clip_by_value(hsv[..., 1:2] * s, 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, sat, hsv[..., 2:]], -1))


def _erase(x: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """Zeroes, in x (M, H, W, C), the pixels whose centres lie inside each frame's box (M, 4)."""
    height, width = x.shape[1], x.shape[2]
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / height
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / width
    in_y = (ys[None] >= boxes[:, 0:1]) & (ys[None] < boxes[:, 2:3])
    in_x = (xs[None] >= boxes[:, 1:2]) & (xs[None] < boxes[:, 3:4])
    inside = in_y[:, :, None] & in_x[:, None, :]
    return tf.where(inside[..., None], tf.zeros_like(x), x)


def _augment(rgb: tf.Tensor, flow: tf.Tensor, boxes: tf.Tensor, flip: tf.Tensor,
             flow_scale: float = 1.0, jitter: tf.Tensor | None = None,
             erase: tf.Tensor | None = None, colour_norm: str = DEFAULT_COLOUR_NORM) -> tf.Tensor:
    """rgb (N, L, H, W, 3) uint8, flow (N, L, H, W, 2), boxes (N, 4), flip (N,) -> (N, L, H, W, 5).

    flow * flow_scale is the scaled flow (1 / FLOW_LEVELS for int8 quantised flow). Optional
    per-sequence jitter (N, 4) (see _color_jitter) and erase boxes (N, 4), applied
    identically to every frame of a
    sequence; erasing zeroes all channels of the model input.
    """
    shape = tf.shape(rgb)
    n, length = shape[0], shape[1]
    size = [FRAME_HEIGHT, FRAME_WIDTH]
    frame_boxes = tf.repeat(boxes, length, axis=0)
    flip_f = tf.repeat(flip, length, axis=0)
    # A mirrored crop is the crop of the same box with x1 and x2 swapped: one resampling pass.
    sample = tf.where(flip_f[:, None], tf.gather(frame_boxes, [0, 3, 2, 1], axis=1), frame_boxes)
    ind = tf.range(n * length)
    rgb_out = tf.image.crop_and_resize(tf.reshape(rgb, [n * length, *size, 3]), sample, ind, size) / 255.0
    if jitter is not None:
        rgb_out = _color_jitter(rgb_out, tf.repeat(jitter, length, axis=0))
    flow_out = tf.image.crop_and_resize(
        tf.reshape(tf.cast(flow, tf.float32), [n * length, *size, 2]), sample, ind, size)
    # Zooming into a crop of relative size (h, w) magnifies displacements by (1/h, 1/w);
    # mirroring negates the horizontal one.
    zoom = tf.stack([tf.where(flip_f, -1.0, 1.0) / (frame_boxes[:, 3] - frame_boxes[:, 1]),
                     1.0 / (frame_boxes[:, 2] - frame_boxes[:, 0])], -1) * flow_scale
    flow_out = tf.clip_by_value(flow_out * zoom[:, None, None, :], -1.0, 1.0)
    x = to_model_input(rgb_out, flow_out, colour_norm)
    if erase is not None:
        x = _erase(x, tf.repeat(erase, length, axis=0))
    return tf.reshape(x, [n, length, *size, 5])


def pair_dataset(store: TrackletStore, train: Sequence[int], config: PairConfig,
                 num_batches: int | None = None, start_batch: int = 0,
                 parallel_calls: int | None = None,
                 colour_norm: str = DEFAULT_COLOUR_NORM) -> tuple[tf.data.Dataset, PairSampler]:
    """Yields ((seq_a, seq_b), {"label", "class_a", "class_b"}) batches, plus the sampler.

    seq_a/seq_b: float32 (B, seq_len, 128, 64, 5); label 1.0 for positive pairs. Batches
    continue from `start_batch` (to resume training at a step) for `num_batches` (None: forever).
    `parallel_calls` overrides config.num_parallel_calls; the stream does not depend on it.
    `colour_norm`: the model's (ModelConfig.colour_norm), see preprocess.to_model_input.
    """
    sampler = PairSampler(store, train, config)
    cfg = config

    def load(b):
        spec = sampler.batch(int(b))
        rgb = np.empty((cfg.batch_size, 2, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        flow = np.empty((cfg.batch_size, 2, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 2), np.int8)
        for k in range(cfg.batch_size):
            for s in range(2):
                i = int(spec["index"][k, s])
                idx = loop_indices(int(sampler.lengths[i]), cfg.seq_len, int(spec["start"][k, s]))
                rgb[k, s], flow[k, s] = store.window_q(i, idx)
        return (rgb, flow, spec["boxes"], spec["flip"], spec["label"],
                spec["class"][:, 0], spec["class"][:, 1]) + tuple(spec[k] for k in extras)

    extras = [k for k, on in (("jitter", cfg.color_jitter > 0), ("erase", cfg.random_erase > 0)) if on]

    def to_batch(b):
        rgb, flow, boxes, flip, label, ca, cb, *more = tf.numpy_function(
            load, [b], [tf.uint8, tf.int8, tf.float32, tf.bool, tf.float32, tf.int64, tf.int64]
            + [tf.float32] * len(extras), stateful=False)
        bs, n = cfg.batch_size, cfg.batch_size * 2
        rgb = tf.reshape(rgb, [n, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 3])
        flow = tf.reshape(flow, [n, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 2])
        opt = {k: tf.reshape(v, [n, 4]) for k, v in zip(extras, more)}
        x = _augment(rgb, flow, tf.reshape(boxes, [n, 4]), tf.reshape(flip, [n]), 1.0 / FLOW_LEVELS,
                     colour_norm=colour_norm, **opt)
        x = tf.reshape(x, [bs, 2, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 5])
        targets = {"label": tf.reshape(label, [bs]), "class_a": tf.reshape(ca, [bs]),
                   "class_b": tf.reshape(cb, [bs])}
        return (x[:, 0], x[:, 1]), targets

    stop = None if num_batches is None else start_batch + num_batches
    ds = tf.data.Dataset.range(start_batch, stop if stop is not None else np.iinfo(np.int64).max)
    opts = tf.data.Options()
    opts.deterministic = True
    calls = check_parallel_calls(cfg.num_parallel_calls if parallel_calls is None else parallel_calls)
    ds = ds.map(to_batch, num_parallel_calls=calls, deterministic=True).prefetch(2).with_options(opts)
    return ds, sampler


def replica_pairs(store: TrackletStore, train: Sequence[int], config: PairConfig, start_step: int,
                  ctx: tf.distribute.InputContext | None = None,
                  colour_norm: str = DEFAULT_COLOUR_NORM) -> tf.data.Dataset:
    """The pair stream of one input pipeline of a tf.distribute run, resumable at a step.

    `config.batch_size` is the global batch. With several replicas each input pipeline (one
    per worker) yields per-replica batches, each balanced half positive / half negative, from
    its own stream, so no worker builds batches it then drops.
    """
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return pair_dataset(store, train, config, start_batch=start_step,
                            colour_norm=colour_norm)[0]
    per_replica = ctx.get_per_replica_batch_size(config.batch_size)
    if per_replica % 2:
        raise ValueError(f"--batch_size={config.batch_size} gives {per_replica} pairs per replica "
                         f"over {ctx.num_replicas_in_sync} replicas; it must be even")
    local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
    cfg = dataclasses.replace(config, batch_size=per_replica, stream=ctx.input_pipeline_id + 1)
    return pair_dataset(store, train, cfg, start_batch=start_step * local_replicas,
                        colour_norm=colour_norm)[0]


def group_dataset(store: TrackletStore, indices: Sequence[int], seq_len: int = 16,
                  batch_size: int = 32, num_parallel_calls: int = -1,
                  colour_norm: str = DEFAULT_COLOUR_NORM) -> tuple[tf.data.Dataset, np.ndarray]:
    """Every frame of each tracklet cut into seq_len-frame groups (preprocess.group_windows).

    Returns the dataset of batches (groups float32 (G, seq_len, 128, 64, 5), owner (G,) int64:
    position in `indices`) and the number of groups per tracklet. Batches are read and
    prepared `num_parallel_calls` at a time (-1: AUTOTUNE), in order.
    """
    lengths = store.lengths()
    owner, track, windows = [], [], []
    for pos, i in enumerate(indices):
        w = group_windows(int(lengths[i]), seq_len)
        owner += [pos] * len(w)
        track += [int(i)] * len(w)
        windows.append(w)
    owner_a = np.asarray(owner, np.int64)
    windows_a = np.concatenate(windows) if windows else np.zeros((0, seq_len), np.int64)
    counts = np.bincount(owner_a, minlength=len(indices))
    num_batches = -(-len(owner_a) // batch_size)

    def load(b):
        sel = range(int(b) * batch_size, min(len(owner_a), (int(b) + 1) * batch_size))
        rgb = np.empty((len(sel), seq_len, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        flow = np.empty((len(sel), seq_len, FRAME_HEIGHT, FRAME_WIDTH, 2), np.int8)
        for n, g in enumerate(sel):
            rgb[n], flow[n] = store.window_q(track[g], windows_a[g])
        return rgb, flow, owner_a[sel.start:sel.stop]

    def to_batch(b):
        rgb, q, pos = tf.numpy_function(load, [b], [tf.uint8, tf.int8, tf.int64], stateful=False)
        rgb = tf.ensure_shape(rgb, (None, seq_len, FRAME_HEIGHT, FRAME_WIDTH, 3))
        q = tf.ensure_shape(q, (None, seq_len, FRAME_HEIGHT, FRAME_WIDTH, 2))
        flow = tf.cast(q, tf.float32) * (1.0 / FLOW_LEVELS)
        return to_model_input(rgb, flow, colour_norm), tf.ensure_shape(pos, (None,))

    calls = check_parallel_calls(num_parallel_calls)
    ds = tf.data.Dataset.range(num_batches).map(to_batch, num_parallel_calls=calls,
                                                deterministic=True).prefetch(2)
    return ds, counts
