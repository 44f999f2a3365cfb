"""Training-batch samplers' shared parts and the identity-balanced P x K sampler.

A sampler turns batch number b into NumPy index arrays (tracklets, window starts, identity
classes, augmentation draws) from a generator seeded with (seed, b[, stream]), so a batch
depends only on its number: the stream is the same for any parallelism and resumes at any step.

- `PairSampler` (pipeline.py): the paper's balanced positive / negative pairs.
- `PKSampler` (here): P persons x K tracklets per person (Hermans, Beyer, Leibe 2017, "In
  defense of the triplet loss"), the K tracklets cycling through the person's cameras so they
  come from different cameras where the person has several; a person with fewer than K
  tracklets repeats some (sampling with replacement), each repeat with its own window and views.

Both draw the same augmentation per sequence (`draw_views`, then the optional colour jitter
and random erasing, in that order), applied by pipeline._augment.
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np

from keras_crf_reid.datasets.store import TrackletStore
from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH

ERASE_AREA = (0.02, 0.4)  # fraction of the frame erased (Zhong et al., random erasing)
ERASE_ASPECT = (0.3, 1 / 0.3)  # height / width of the rectangle in pixels


class SamplingSettings(Protocol):
    """The sampling settings read here; pipeline.PairConfig (their flags) provides them."""

    seq_len: int
    seed: int
    stream: int
    augment: bool
    min_crop_scale: float
    flip: bool
    color_jitter: float
    random_erase: float
    num_persons: int
    num_instances: int


def batch_rng(config: SamplingSettings, b: int) -> np.random.Generator:
    """The generator of batch b: seeded by (seed, b), plus the input pipeline's stream if any."""
    return np.random.default_rng([config.seed, b] + ([config.stream] if config.stream else []))


class IdentityIndex:
    """A training set's tracklets by identity and camera, their lengths and identity classes."""

    def __init__(self, store: TrackletStore, train: Sequence[int], config: SamplingSettings):
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

    @property
    def num_classes(self) -> int:
        return len(self.pids)

    def _start(self, rng: np.random.Generator, i: int) -> int:
        """A random start of a seq_len window of tracklet i (0 when it is not longer)."""
        n = int(self.lengths[i])
        return int(rng.integers(0, n - self.config.seq_len + 1)) if n > self.config.seq_len else 0


def draw_views(rng: np.random.Generator, n: int,
               config: SamplingSettings) -> tuple[np.ndarray, np.ndarray]:
    """Crop boxes (n, 4) float32 (y0, x0, y1, x1, relative) and mirror flags (n,) of n sequences.

    With --augment off: the whole frame, never mirrored (and nothing drawn).
    """
    if config.augment:
        scale = rng.uniform(config.min_crop_scale, 1.0, n)
        aspect = rng.uniform(0.95, 1.05, n)
        h = np.clip(scale * aspect, 0.1, 1.0)
        w = np.clip(scale / aspect, 0.1, 1.0)
        y0 = rng.uniform(0, 1, n) * (1 - h)
        x0 = rng.uniform(0, 1, n) * (1 - w)
        flip = rng.random(n) < 0.5 if config.flip else np.zeros(n, bool)
    else:
        h = w = np.ones(n)
        y0 = x0 = np.zeros(n)
        flip = np.zeros(n, bool)
    return np.stack([y0, x0, y0 + h, x0 + w], 1).astype(np.float32), flip


def draw_extras(rng: np.random.Generator, n: int, config: SamplingSettings) -> dict[str, np.ndarray]:
    """The optional per-sequence draws, (n, 4) each: "jitter" and "erase" when enabled.

    Drawn after everything else of a batch, and only when enabled, so the default stream is
    the same with or without these options in the code.
    """
    out = {}
    if config.color_jitter > 0:
        out["jitter"] = draw_jitter(rng, n, config.color_jitter)
    if config.random_erase > 0:
        out["erase"] = draw_erase(rng, n, config.random_erase)
    return out


def draw_jitter(rng: np.random.Generator, n: int, strength: float) -> np.ndarray:
    """(n, 4) float32: brightness, contrast and saturation factors, hue shift (turns)."""
    factors = rng.uniform(1.0 - strength, 1.0 + strength, (n, 3))
    hue = rng.uniform(-0.1 * strength, 0.1 * strength, (n, 1))
    return np.concatenate([factors, hue], 1).astype(np.float32)


def draw_erase(rng: np.random.Generator, n: int, prob: float) -> np.ndarray:
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


class PKSampler(IdentityIndex):
    """Identity-balanced batches: config.num_persons persons x config.num_instances tracklets.

    Sequence j of a batch belongs to person j // K; the K tracklets of a person take the
    person's cameras in turn (in a random order) and, within a camera, its tracklets in a
    random order without repeats until every tracklet of the person has been used once.
    """

    def __init__(self, store: TrackletStore, train: Sequence[int], config: SamplingSettings):
        super().__init__(store, train, config)
        if len(self.pids) < config.num_persons:
            raise ValueError(f"{store.dataset.root}: --num_persons={config.num_persons} persons "
                             f"per batch, but the training set has only {len(self.pids)}")

    @property
    def batch_size(self) -> int:
        """Sequences per batch, P * K."""
        return self.config.num_persons * self.config.num_instances

    def _tracklets(self, rng: np.random.Generator, pid: int, k: int) -> list[int]:
        """k tracklets of a person, cycling through its cameras (see the class docstring)."""
        cams = self.by_pid_cam[pid]
        order = [sorted(cams)[c] for c in rng.permutation(len(cams))]
        picks: list[int] = []
        pools: dict[int, list[int]] = {}
        while len(picks) < k:
            if not any(pools.values()):
                pools = {c: [cams[c][j] for j in rng.permutation(len(cams[c]))] for c in order}
            for c in order:
                if pools[c] and len(picks) < k:
                    picks.append(pools[c].pop())
        return picks

    def batch(self, b: int) -> dict[str, np.ndarray]:
        """Batch b: tracklet "index", window "start", identity "class" (N,) int64 and the
        augmentation ("boxes" (N, 4), "flip" (N,), optional "jitter"/"erase" (N, 4)), N = P*K."""
        cfg = self.config
        rng = batch_rng(cfg, b)
        persons = rng.choice(len(self.pids), cfg.num_persons, replace=False)
        idx = np.array([i for p in persons for i in self._tracklets(rng, self.pids[p],
                                                                      cfg.num_instances)], np.int64)
        starts = np.array([self._start(rng, int(i)) for i in idx], np.int64)
        classes = np.repeat(persons.astype(np.int64), cfg.num_instances)
        boxes, flip = draw_views(rng, len(idx), cfg)
        return {"index": idx, "start": starts, "class": classes, "boxes": boxes, "flip": flip,
                **draw_extras(rng, len(idx), cfg)}
