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
With --sampler=pk, `pk_dataset` yields identity batches instead (P persons x K tracklets,
sampling.PKSampler) with the same windows and augmentation.

Every map runs with `num_parallel_calls` (PairConfig.num_parallel_calls; AUTOTUNE = -1 uses
the machine's cores) and deterministic ordering, so the batches are the same for any
parallelism; reading a window (JPEG decoding, see store.py) releases the GIL.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_crf_reid.datasets.flow import FLOW_LEVELS
from keras_crf_reid.configs.pairs import (SAMPLERS, PairConfig,  # noqa: F401  (re-exported)
                                          check_parallel_calls)
from keras_crf_reid.datasets.augment import crop_resize, per_frame, rescale_flow
from keras_crf_reid.geometry import (DEFAULT_COLOUR_NORM, FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS,
                                     NUM_COLOR_CHANNELS, NUM_FLOW_CHANNELS)
from keras_crf_reid.datasets.preprocess import group_windows, loop_indices, to_model_input
from keras_crf_reid.datasets.sampling import (IdentityIndex, PKSampler, batch_rng, draw_extras,
                                              draw_views)
from keras_crf_reid.datasets.store import TrackletStore


class PairSampler(IdentityIndex):
    """Draws balanced pair batches (indices, window starts, augmentation) from a training set."""

    def __init__(self, store: TrackletStore, train: Sequence[int], config: PairConfig):
        super().__init__(store, train, config)
        self.multi_cam = [p for p in self.pids if len(self.by_pid_cam[p]) >= 2]
        if not self.multi_cam:
            raise ValueError(f"{store.dataset.root}: no training identity is seen by two cameras; "
                             "positive pairs cannot be formed")
        if len(self.pids) < 2:
            raise ValueError(f"{store.dataset.root}: negative pairs need at least 2 training identities")

    def _any(self, rng: np.random.Generator, pid: int) -> int:
        cams = self.by_pid_cam[pid]
        cam = list(cams)[rng.integers(len(cams))]
        return cams[cam][rng.integers(len(cams[cam]))]

    def batch(self, b: int) -> dict[str, np.ndarray]:
        """Batch number b: tracklet indices (B, 2), starts (B, 2), labels, augmentation boxes/flips."""
        cfg = self.config
        rng = batch_rng(cfg, b)
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
        boxes, flip = draw_views(rng, n, cfg)
        out = {"index": idx, "start": starts, "label": label, "class": classes,
               "boxes": boxes.reshape(cfg.batch_size, 2, 4), "flip": flip.reshape(cfg.batch_size, 2)}
        out.update({k: v.reshape(cfg.batch_size, 2, 4) for k, v in draw_extras(rng, n, cfg).items()})
        return out


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

    Each sequence's crop box and mirror apply to all its frames (augment.crop_resize and
    augment.rescale_flow, shared with test-time augmentation). flow * flow_scale is the scaled
    flow (1 / FLOW_LEVELS for int8 quantised flow). Optional per-sequence jitter (N, 4) (see
    _color_jitter) and erase boxes (N, 4) are applied identically to every frame of a
    sequence; erasing zeroes all channels of the model input.
    """
    shape = tf.shape(rgb)
    n, length = shape[0], shape[1]
    size = [FRAME_HEIGHT, FRAME_WIDTH]
    frame_boxes, flip_f = per_frame(boxes, length), per_frame(flip, length)
    rgb_out = crop_resize(tf.reshape(rgb, [n * length, *size, NUM_COLOR_CHANNELS]), frame_boxes,
                          flip_f, size) / 255.0
    if jitter is not None:
        rgb_out = _color_jitter(rgb_out, per_frame(jitter, length))
    flow_out = crop_resize(tf.reshape(tf.cast(flow, tf.float32),
                                      [n * length, *size, NUM_FLOW_CHANNELS]),
                           frame_boxes, flip_f, size)
    x = to_model_input(rgb_out, rescale_flow(flow_out, frame_boxes, flip_f, flow_scale),
                       colour_norm)
    if erase is not None:
        x = _erase(x, per_frame(erase, length))
    return tf.reshape(x, [n, length, *size, NUM_CHANNELS])


def _read_windows(store: TrackletStore, lengths: np.ndarray, index: np.ndarray, start: np.ndarray,
                  seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """rgb uint8 (M, seq_len, H, W, 3) and int8 flow (M, seq_len, H, W, 2) of the windows of
    tracklets `index` (M,) from `start` (M,), looped where a tracklet is shorter."""
    rgb = np.empty((len(index), seq_len, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    flow = np.empty((len(index), seq_len, FRAME_HEIGHT, FRAME_WIDTH, 2), np.int8)
    for m, (i, s) in enumerate(zip(index.tolist(), start.tolist())):
        rgb[m], flow[m] = store.window_q(i, loop_indices(int(lengths[i]), seq_len, s))
    return rgb, flow


def _batches(to_batch, config: PairConfig, num_batches: int | None, start_batch: int,
             parallel_calls: int | None) -> tf.data.Dataset:
    """Batch numbers start_batch.. (num_batches of them, None: forever) mapped by to_batch."""
    stop = None if num_batches is None else start_batch + num_batches
    ds = tf.data.Dataset.range(start_batch, stop if stop is not None else np.iinfo(np.int64).max)
    opts = tf.data.Options()
    opts.deterministic = True
    calls = check_parallel_calls(config.num_parallel_calls if parallel_calls is None else parallel_calls)
    return ds.map(to_batch, num_parallel_calls=calls, deterministic=True).prefetch(2).with_options(opts)


def _extras(config: PairConfig) -> list[str]:
    """The optional augmentation draws a batch carries, in order."""
    return [k for k, on in (("jitter", config.color_jitter > 0), ("erase", config.random_erase > 0))
            if on]


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
    extras = _extras(cfg)

    def load(b):
        spec = sampler.batch(int(b))
        rgb, flow = _read_windows(store, sampler.lengths, spec["index"].reshape(-1),
                                  spec["start"].reshape(-1), cfg.seq_len)
        return (rgb, flow, spec["boxes"], spec["flip"], spec["label"],
                spec["class"][:, 0], spec["class"][:, 1]) + tuple(spec[k] for k in extras)

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

    return _batches(to_batch, cfg, num_batches, start_batch, parallel_calls), sampler


def pk_dataset(store: TrackletStore, train: Sequence[int], config: PairConfig,
               num_batches: int | None = None, start_batch: int = 0,
               parallel_calls: int | None = None,
               colour_norm: str = DEFAULT_COLOUR_NORM) -> tuple[tf.data.Dataset, PKSampler]:
    """Yields (seqs, {"class"}) P x K batches (sampling.PKSampler), plus the sampler.

    seqs: float32 (P*K, seq_len, 128, 64, 5), person-major (sequence j is person j // K);
    class: int64 (P*K,) identity classes. Same augmentation, resumability and parallelism
    as pair_dataset (`colour_norm` included).
    """
    sampler = PKSampler(store, train, config)
    cfg, n = config, sampler.batch_size
    extras = _extras(cfg)

    def load(b):
        spec = sampler.batch(int(b))
        rgb, flow = _read_windows(store, sampler.lengths, spec["index"], spec["start"], cfg.seq_len)
        return (rgb, flow, spec["boxes"], spec["flip"], spec["class"]) + tuple(spec[k] for k in extras)

    def to_batch(b):
        rgb, flow, boxes, flip, classes, *more = tf.numpy_function(
            load, [b], [tf.uint8, tf.int8, tf.float32, tf.bool, tf.int64] + [tf.float32] * len(extras),
            stateful=False)
        rgb = tf.reshape(rgb, [n, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 3])
        flow = tf.reshape(flow, [n, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 2])
        opt = {k: tf.reshape(v, [n, 4]) for k, v in zip(extras, more)}
        x = _augment(rgb, flow, tf.reshape(boxes, [n, 4]), tf.reshape(flip, [n]), 1.0 / FLOW_LEVELS,
                     colour_norm=colour_norm, **opt)
        return tf.ensure_shape(x, [n, cfg.seq_len, FRAME_HEIGHT, FRAME_WIDTH, 5]), \
            {"class": tf.reshape(classes, [n])}

    return _batches(to_batch, cfg, num_batches, start_batch, parallel_calls), sampler


def training_sampler(store: TrackletStore, train: Sequence[int],
                     config: PairConfig) -> PairSampler | PKSampler:
    """The sampler of config.sampler (for its num_classes and checks before training)."""
    return (PKSampler if config.sampler == "pk" else PairSampler)(store, train, config)


def replica_pairs(store: TrackletStore, train: Sequence[int], config: PairConfig, start_step: int,
                  ctx: tf.distribute.InputContext | None = None,
                  colour_norm: str = DEFAULT_COLOUR_NORM) -> tf.data.Dataset:
    """The training stream (pairs, or P x K with --sampler=pk) of one input pipeline of a
    tf.distribute run, resumable at a step; `colour_norm` is the model's.

    `config.batch_size` pairs (or `config.num_persons` persons) make the global batch. With
    several replicas each input pipeline (one per worker) yields per-replica batches, each
    balanced half positive / half negative (or P / replicas persons x K), from its own stream,
    so no worker builds batches it then drops.
    """
    make = pk_dataset if config.sampler == "pk" else pair_dataset
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return make(store, train, config, start_batch=start_step, colour_norm=colour_norm)[0]
    replicas = ctx.num_replicas_in_sync
    if config.sampler == "pk":
        if config.num_persons % replicas or config.num_persons // replicas < 2:
            raise ValueError(f"--num_persons={config.num_persons} over {replicas} replicas: each "
                             f"replica needs the same number of persons, >= 2 (give a multiple "
                             f"of {replicas}, at least {2 * replicas})")
        local = {"num_persons": config.num_persons // replicas}
    else:
        per_replica = ctx.get_per_replica_batch_size(config.batch_size)
        if per_replica % 2:
            raise ValueError(f"--batch_size={config.batch_size} gives {per_replica} pairs per "
                             f"replica over {replicas} replicas; it must be even")
        local = {"batch_size": per_replica}
    local_replicas = replicas // ctx.num_input_pipelines
    cfg = dataclasses.replace(config, stream=ctx.input_pipeline_id + 1, **local)
    return make(store, train, cfg, start_batch=start_step * local_replicas,
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
