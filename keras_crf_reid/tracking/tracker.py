"""DeepSORT/ByteTrack-style association: a track is a Kalman state plus a small gallery of its
recent appearance embeddings; each frame two Hungarian assignments (scipy's
linear_sum_assignment): the confident detections first, then the low-score ones.

Stage 1, tracks x detections scored >= high_score, cost of track t and detection d:
  appearance off:  1 - IoU(predicted t, d), allowed when IoU >= iou_min.
  appearance on:   w * cos_dist(t, d) + (1 - w) * (1 - IoU), where cos_dist is the smallest
                   cosine distance between d's embedding and t's gallery; allowed when
                   IoU >= iou_min and cos_dist <= max_cos, the cos_dist limit waived where
                   no other track claims d (overlaps it by iou_min and is within max_cos of
                   it), and for a lost t refused where another track claiming d is within
                   reacquire_ratio x cos_dist of it (an overlap so refused stays a last
                   resort, costing just under the unmatched charge); or (re-acquisition)
                   when d is inside t's Kalman gate (chi-square 99.9%), no other track
                   claims it, cos_dist <= reacquire_cos and cos_dist <= reacquire_ratio x its
                   distance to every other lost track gating it.
  A pair not allowed costs as much as the costliest pair allowed (`unmatched_cost`): the
  assignment then minimises the total cost, as SORT maximises the total IoU, instead of first
  matching as many pairs as it can (which swaps two people to hand a third track a box).
  A box that two tracks overlap and that is merged_aspect x as wide (for its height) as its
  track's prediction holds two people: it extends the track without updating its Kalman state
  (one frame in a row at most), so the merged box does not pull the track onto its neighbour.
Stage 2 (ByteTrack), the tracks left x detections scored below high_score: 1 - IoU, allowed when
IoU >= low_iou_min; these boxes extend tracks (not their galleries) and never start one.
The gate lets a track re-find its person after a miss or an occlusion where IoU alone is zero;
appearance decides between people whose boxes meet.
"""
from __future__ import annotations

import collections
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from keras_crf_reid.configs.tracker import TrackerConfig
from keras_crf_reid.tracking.kalman import GATE_CHI2_4DOF, BoxKalman

INFEASIBLE = 1e5
# how far under the unmatched charge an overlap that appearance refuses costs
LAST_RESORT = 1e-6
# detection indices (K,) of the frame -> their embeddings (K, D): appearance computed on demand
LazyFeatures = Callable[[np.ndarray], np.ndarray]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of tlwh boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = np.prod(a[:, 2:], 1)[:, None] + np.prod(b[:, 2:], 1)[None] - inter
    return inter / np.maximum(union, 1e-9)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _sole(iou: np.ndarray) -> np.ndarray:
    """Mask of the (track, box) pairs that overlap only each other: nobody to confuse them
    with, so appearance cannot change their match (the boxes the lazy embedding skips)."""
    meet = iou > 0
    return meet & (meet.sum(axis=0) == 1)[None, :] & (meet.sum(axis=1) == 1)[:, None]


def _nearest_other(candidates: np.ndarray) -> np.ndarray:
    """Per (row, column): the smallest entry of the column over the other rows (inf if none; a
    tie with the smallest gives the tied value, so neither row is clearly nearer)."""
    nearest = np.sort(candidates, axis=0)
    second = nearest[1:2] if len(nearest) > 1 else np.full_like(nearest[:1], np.inf)
    return np.where(candidates <= nearest[:1], second, nearest[:1])


def _assign(cost: np.ndarray, unmatched: float | None = None) -> list[tuple[int, int]]:
    """Hungarian matches (row, column) of the allowed pairs (cost < INFEASIBLE); with
    `unmatched`, a pair not allowed costs that instead of INFEASIBLE, so that leaving a row and
    a column unmatched can beat two allowed but costly matches."""
    if not cost.size:
        return []
    allowed = cost < INFEASIBLE
    rows, cols = linear_sum_assignment(cost if unmatched is None
                                       else np.where(allowed, cost, unmatched))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


class Track:
    """One target: Kalman state, recent embeddings and its matched (frame, detection row)s."""

    def __init__(self, track_id: int, box: np.ndarray, feature: np.ndarray | None,
                 gallery_size: int, frame: int = 0):
        self.id = track_id
        self.kalman = BoxKalman(box)
        self.gallery: collections.deque = collections.deque(maxlen=gallery_size)
        self.embedded_at = frame  # frame of the gallery's latest embedding
        if feature is not None:
            self.gallery.append(_unit(feature))
        self.hits = 1
        self.misses = 0
        self.confirmed = False
        self.held = False  # its last match was a merged box: the Kalman state was not updated

    def appearance_distance(self, features: np.ndarray) -> np.ndarray:
        """Smallest cosine distance (N,) of unit features (N, D) to the gallery."""
        if not self.gallery:
            return np.ones(len(features))
        return 1.0 - (features @ np.stack(self.gallery).T).max(axis=1)


class Tracker:
    """Feeds one frame's detections at a time; `update` returns (track id, detection index)
    pairs of the confirmed tracks matched in that frame (tentative tracks report once confirmed
    through `confirmed_history`)."""

    def __init__(self, config: TrackerConfig = TrackerConfig(), use_appearance: bool = False,
                 frame_size: tuple[int, int] | None = None):
        self.config = config
        self.use_appearance = use_appearance
        self.frame_size = frame_size  # (width, height): a lost track predicted outside ends
        self.tracks: list[Track] = []
        self.next_id = 1
        self.history: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
        # track id -> its Kalman box (tlwh) after each match, parallel to history
        self.filtered: dict[int, list[np.ndarray]] = collections.defaultdict(list)
        self.ever_confirmed: set[int] = set()

    def _cost(self, iou: np.ndarray, boxes: np.ndarray, features: np.ndarray | None,
              unmatched: float) -> np.ndarray:
        """Stage-1 cost (tracks, boxes); features rows of NaN (not embedded: the box overlaps
        one track only, and that track no other box) are matched on IoU alone; `unmatched` is
        the frame's unmatched_cost, under which a refused overlap is a last resort."""
        c = self.config
        if not self.use_appearance:
            return np.where(iou >= c.iou_min, 1.0 - iou, INFEASIBLE)
        known = ~np.isnan(features).any(axis=1)
        app = np.zeros_like(iou)
        gate = np.zeros(iou.shape, bool)
        if known.any():
            app[:, known] = np.stack([t.appearance_distance(features[known]) for t in self.tracks])
            gate[:, known] = np.stack([t.kalman.gating_distance(boxes[known]) <= GATE_CHI2_4DOF
                                       for t in self.tracks])
        cost = c.appearance_weight * app + (1 - c.appearance_weight) * (1.0 - iou)
        overlap = iou >= c.iou_min
        alike = overlap & (app <= c.max_cos)
        # a box is claimed by the tracks that overlap it and look like it; appearance vetoes an
        # overlap match only where another track claims the box (one nobody else claims stays
        # with its track however its crop looks: an occluded or partial view)
        claimed = (alike.sum(axis=0)[None, :] - alike) > 0
        lost = np.array([t.misses > 0 for t in self.tracks])[:, None]
        # a lost track's overlap gives way to another track claiming the box that looks clearly
        # more like it (the ratio test of re-acquisition): a track lost beside a group must not
        # take the box of a person another track is following
        outlooked = lost & (_nearest_other(np.where(alike, app, np.inf)) <= c.reacquire_ratio * app)
        ok = ((alike | (overlap & ~claimed)) & ~outlooked) | self._reacquire(app, gate, claimed,
                                                                              lost)
        # an overlap appearance refuses is a last resort, not forbidden: it costs just under
        # leaving both unmatched, so it is matched only where it displaces no other match (a
        # hidden person's box whose crop shows the person in front, who has their own box)
        last_resort = np.where(overlap, unmatched - LAST_RESORT, INFEASIBLE)
        return np.where(ok, cost, last_resort)

    def unmatched_cost(self) -> float:
        """What a pair the gates refuse costs in the stage-1 assignment: the costliest pair they
        allow (IoU-only: 1 - iou_min; with appearance: a claimed overlap at max_cos and iou_min,
        or a re-acquisition at reacquire_cos and no overlap; only an unclaimed overlap, whose
        appearance is not limited, can cost more)."""
        c = self.config
        if not self.use_appearance:
            return 1.0 - c.iou_min
        w = c.appearance_weight
        return max(w * c.max_cos + (1 - w) * (1 - c.iou_min), w * c.reacquire_cos + (1 - w))

    def _reacquire(self, app: np.ndarray, gate: np.ndarray, claimed: np.ndarray,
                   lost: np.ndarray) -> np.ndarray:
        """Mask (tracks, boxes) of the matches the motion gate allows without an overlap: a box
        no other track claims (those tracks have it first, as in DeepSORT's cascade), near
        enough in appearance, and clearly nearer than to any other lost track whose gate holds
        it (Lowe's ratio test): where appearance cannot tell two lost people apart, a new
        track is safer than a guess."""
        c = self.config
        # per (track, box): the box's distance to the nearest lost track gating it other than
        # this one (a tie leaves both out: neither is clearly nearer)
        other = _nearest_other(np.where(gate & lost, app, np.inf))
        return (gate & ~claimed & (app <= c.reacquire_cos)
                & (app <= c.reacquire_ratio * other))

    def _merged(self, iou: np.ndarray, predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Mask (tracks, boxes): the box overlaps two tracks or more (IoU >= iou_min) and is
        merged_aspect x as wide for its height as the track's prediction: two people in one
        box, whose centre lies between them."""
        c = self.config
        shared = (iou >= c.iou_min).sum(axis=0) >= 2
        aspect = boxes[:, 2] / boxes[:, 3]
        # a lost track's prediction can shrink to a degenerate box: never called merged against
        proper = (predicted[:, 2] > 0) & (predicted[:, 3] > 0)
        predicted_aspect = np.full(len(predicted), np.inf)
        predicted_aspect[proper] = predicted[proper, 2] / predicted[proper, 3]
        return shared[None, :] & (aspect[None, :] >= c.merged_aspect * predicted_aspect[:, None])

    def _to_embed(self, frame: int, iou: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Mask of the boxes whose association appearance can change: meeting no track or
        several, meeting a track that meets other boxes too, without an IoU >= iou_min match,
        inside a lost track's gate, or meeting a track not embedded for embed_every frames."""
        c = self.config
        if not self.tracks:
            return np.ones(len(boxes), bool)
        meet = iou > 0
        need = ~_sole(iou).any(axis=0)
        need |= ~(iou >= c.iou_min).any(axis=0)  # may start a track or be re-found
        stale = np.array([frame - t.embedded_at >= c.embed_every for t in self.tracks])
        need |= (meet & stale[:, None]).any(axis=0)
        for t in self.tracks:
            if t.misses and not need.all():
                need |= t.kalman.gating_distance(boxes) <= GATE_CHI2_4DOF
        return need

    def _features(self, frame: int, iou: np.ndarray, boxes: np.ndarray, high: np.ndarray,
                  features, n: int) -> np.ndarray:
        """Unit features (len(high), D) of the high-score boxes (NaN rows: not embedded)."""
        if features is not None and not callable(features) and len(features) == n:
            return _unit(np.asarray(features)[high]) if len(high) else np.zeros((0, 1))
        if not callable(features):
            raise ValueError(f"frame {frame}: appearance tracking needs one feature per box "
                             f"({n} boxes)")
        need = self._to_embed(frame, iou, boxes) if len(high) else np.zeros(0, bool)
        got = np.asarray(features(high[need])) if need.any() else np.zeros((0, 1))
        if len(got) != need.sum():
            raise ValueError(f"frame {frame}: the appearance function returned {len(got)} "
                             f"features for {need.sum()} boxes")
        out = np.full((len(high), got.shape[1]), np.nan)
        out[need] = _unit(got)
        return out

    def _inside(self, track: Track) -> bool:
        if self.frame_size is None:
            return True
        x, y, w, h = track.kalman.box()
        return 0 <= x + w / 2 <= self.frame_size[0] and 0 <= y + h / 2 <= self.frame_size[1]

    def update(self, frame: int, boxes: np.ndarray,
               features: np.ndarray | LazyFeatures | None = None,
               scores: np.ndarray | None = None) -> list[tuple[int, int]]:
        """One frame: boxes (N, 4) tlwh, scores (N,) (default 1), and with appearance either
        features (N, D) or a function embedding the detection indices it is given: it is asked
        only for the boxes scored >= high_score whose association appearance can change
        (`_to_embed`)."""
        c = self.config
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64)
        high = np.flatnonzero(scores >= c.high_score)
        low = np.flatnonzero(scores < c.high_score)
        for t in self.tracks:
            t.kalman.predict()
        predicted = np.stack([t.kalman.box() for t in self.tracks]) if self.tracks \
            else np.zeros((0, 4))
        iou = iou_matrix(predicted, boxes[high])
        feats = None
        if self.use_appearance:
            feats = self._features(frame, iou, boxes[high], high, features, len(boxes))
        matches: list[tuple[int, int, bool]] = []  # (track index, detection index, high score)
        if self.tracks and len(high):
            unmatched = self.unmatched_cost()
            matches += [(r, int(high[j]), True) for r, j in
                        _assign(self._cost(iou, boxes[high], feats, unmatched), unmatched)]
        left = [r for r in range(len(self.tracks)) if r not in {m[0] for m in matches}]
        if left and len(low):
            low_iou = iou_matrix(predicted[left], boxes[low])
            matches += [(left[i], int(low[j]), False) for i, j in
                        _assign(np.where(low_iou >= c.low_iou_min, 1.0 - low_iou, INFEASIBLE))]
        pos = {int(d): j for j, d in enumerate(high)}
        merged = self._merged(iou, predicted, boxes[high])
        for r, d, is_high in matches:
            t = self.tracks[r]
            t.held = is_high and bool(merged[r, pos[d]]) and not t.held
            if not t.held:
                t.kalman.update(boxes[d])
            if self.use_appearance and is_high and not np.isnan(feats[pos[d], 0]):
                t.gallery.append(feats[pos[d]])
                t.embedded_at = frame
            t.hits += 1
            t.misses = 0
            t.confirmed = t.confirmed or t.hits >= c.n_init
            self.history[t.id].append((frame, d))
            self.filtered[t.id].append(t.kalman.box())
        matched_tracks = {m[0] for m in matches}
        matched_dets = {m[1] for m in matches}
        for r, t in enumerate(self.tracks):
            if r not in matched_tracks:
                t.misses += 1
        self.tracks = [t for r, t in enumerate(self.tracks)
                       if r in matched_tracks or (t.confirmed and t.misses <= c.max_age
                                                  and self._inside(t))]
        for d in high:
            if d not in matched_dets:
                t = Track(self.next_id, boxes[d], feats[pos[d]] if self.use_appearance else None,
                          c.gallery_size, frame)
                t.confirmed = c.n_init <= 1
                self.next_id += 1
                self.tracks.append(t)
                self.history[t.id].append((frame, int(d)))
                self.filtered[t.id].append(boxes[d].copy())
        self.ever_confirmed.update(t.id for t in self.tracks if t.confirmed)
        return [(t.id, d) for t in self.tracks if t.confirmed
                for f, d in self.history[t.id][-1:] if f == frame]

    def confirmed_history(self) -> dict[int, list[tuple[int, int]]]:
        """Track id -> [(frame, detection index in that frame)] for every track ever confirmed,
        including the matches before its confirmation."""
        return {i: h for i, h in self.history.items() if i in self.ever_confirmed}
