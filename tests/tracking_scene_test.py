"""The tracker on a synthetic street (320x240 video, 60 frames), one assertion per behaviour:
a missed detection, an occlusion, a person leaving the frame (and another entering where they
left), two similarly dressed people crossing, a person whose colours drift, a false box, a
person seen for exactly n_init frames and low-score boxes. Each test names the mistake in the
tracker that makes it fail."""
import cv2
import numpy as np
import pytest

from keras_crf_reid.tracking import detections as mot
from keras_crf_reid.tracking.pipeline import track_video
from keras_crf_reid.configs.tracker import TrackerConfig
from keras_crf_reid.tracking.kalman import GATE_CHI2_4DOF
from keras_crf_reid.tracking.tracker import Track, Tracker, iou_matrix

W, H, BW, BH, FRAMES = 320, 240, 30, 60, 60
MISS = range(20, 26)        # person 1 undetected (6 frames) at centre x 249..254: > H, < W
OCCLUDED = range(15, 21)    # person 5 hidden (6 frames), standing still behind a pillar
# the scene's premises rest on these (not on the defaults, which are tuned on real video)
CONFIG = TrackerConfig(max_age=6, n_init=3, appearance_weight=0.9, high_score=0.5, iou_min=0.2,
                       max_cos=0.5, reacquire_cos=0.2, low_iou_min=0.3)
CLUTTER, LOW_CLUTTER = 101, 102  # false boxes: 2 frames; 6 frames of low score
SIMILAR_A, SIMILAR_B = (200, 60, 60), (200, 60, 110)  # cosine distance 0.09 once centred


def _crossing():
    """Persons 3 and 4: walk towards each other, meet (IoU 0.5) and turn back."""
    xa, xb, va, out = 40.0, 258.0, 8, {}
    for f in range(1, FRAMES + 1):
        out[f] = (xa, xb)
        if xb - xa <= 10:
            va = -8
        xa, xb = xa + va, xb - va
    return out


def scene():
    """[(frame, person, (x, y, w, h), RGB colour, detected, score)] of every person drawn."""
    rows, crossing = [], _crossing()
    for f in range(1, FRAMES + 1):
        t = (f - 1) / (FRAMES - 1)
        # 1: slow walker near the right edge, missed for 6 frames; colours drift green -> blue
        rows.append((f, 1, (215 + f - 1, 10), (60, round(160 - 100 * t), round(60 + 100 * t)),
                     f not in MISS, 1.0))
        # 2: leaves through the right edge (low-score boxes at frames 5-7); 2b enters there
        x2 = 270 + f - 1
        if x2 + BW / 2 <= W:
            rows.append((f, 2, (x2, 170), (220, 200, 40), True, 0.3 if f in (5, 6, 7) else 0.9))
        if f >= 39:
            rows.append((f, 22, (303 - (f - 39), 170), (220, 190, 40), True, 0.9))
        # 3 and 4: similarly dressed, cross and turn back
        xa, xb = crossing[f]
        if -BW / 2 < xa < W - BW / 2:
            rows.append((f, 3, (xa, 90), SIMILAR_A, True, 1.0))
        if -BW / 2 < xb < W - BW / 2:
            rows.append((f, 4, (xb, 90), SIMILAR_B, True, 1.0))
        # 5: walks right at 3 px a frame, steps back behind a pillar, comes out 24 px behind
        # the prediction (IoU 0.11), waits and walks on
        x5 = 10 + 3 * (f - 1) if f < 15 else 46 + 3 * max(f - 24, 0)
        if f not in OCCLUDED:
            rows.append((f, 5, (x5, 10), (40, 40, 200), True, 1.0))
        if f in (20, 21):
            rows.append((f, CLUTTER, (120, 170), (128, 128, 128), True, 0.9))
        if 40 <= f < 46:
            rows.append((f, LOW_CLUTTER, (60, 170), (128, 128, 128), True, 0.3))
        if f >= FRAMES - CONFIG.n_init + 1:  # 6: seen for exactly n_init frames
            rows.append((f, 6, (150, 170), (200, 40, 200), True, 1.0))
    return [(f, p, (float(x), float(y), float(BW), float(BH)), c, d, s)
            for f, p, (x, y), c, d, s in rows]


def centred_colour(crops):
    """Stub appearance: the mean colour of the crop's centre minus mid-grey."""
    return crops[:, 40:88, 16:48].reshape(len(crops), -1, 3).mean(axis=1) - 128.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(video path, detection file path) of the scene."""
    root = tmp_path_factory.mktemp("street")
    path = str(root / "street.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    rows = scene()
    for f in range(1, FRAMES + 1):
        img = np.full((H, W, 3), 128, np.uint8)
        for _, _, (x, y, w, h), colour, _, _ in (r for r in rows if r[0] == f):
            img[int(y):int(y + h), max(int(x), 0):max(int(x + w), 0)] = colour
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    det = root / "det.txt"
    det.write_text("".join(f"{f},-1,{b[0]},{b[1]},{b[2]},{b[3]},{s}\n"
                           for f, _, b, _, d, s in rows if d))
    return path, str(det)


def people_of_tracks(tracks) -> dict[int, list[int]]:
    """Track id -> the scene's person of each of its boxes, in frame order."""
    rows = [r for r in scene() if r[4]]
    out: dict[int, list[int]] = {}
    for f, tid, box in zip(tracks.frame, tracks.id, tracks.boxes):
        here = [(p, b) for g, p, b, _, _, _ in rows if g == f]
        iou = iou_matrix(box[None], [b for _, b in here])[0]
        assert iou.max() >= 0.5, (f, box)  # tracks report Kalman boxes, near the detections
        out.setdefault(int(tid), []).append(here[int(iou.argmax())][0])
    return out


def tracks_of(people: dict[int, list[int]], person: int) -> set[int]:
    return {t for t, ps in people.items() if person in ps}


_runs: dict = {}


def run(files, appearance: bool, embed_mode: str = "ambiguous", **changes
        ) -> dict[int, list[int]]:
    """people_of_tracks of the scene tracked with CONFIG (plus changes), cached."""
    key = (appearance, embed_mode, tuple(sorted(changes.items())))
    if key not in _runs:
        path, det = files
        config = TrackerConfig(**{**CONFIG.__dict__, **changes})
        crops = []

        def appearance_fn(c):
            crops.append(len(c))
            return centred_colour(c)

        out = track_video(path, mot.read_mot(det), appearance_fn if appearance else None, config,
                          embed_mode=embed_mode)
        assert out["frames"] == FRAMES
        _runs[key] = people_of_tracks(out["tracks"])
        _runs[key, "crops"] = sum(crops)
    return _runs[key]


@pytest.mark.parametrize("appearance", [False, True])
def test_a_missed_detection_keeps_the_identity(files, appearance):
    """Fails when max_age is one too small, or a lost track is ended at the frame border with
    width and height swapped (person 1 is missed at centre x 249-254 of a 320x240 frame)."""
    people = run(files, appearance)
    (track,) = tracks_of(people, 1)
    assert set(people[track]) == {1} and len(people[track]) == FRAMES - len(MISS)


def test_a_track_ends_after_max_age_missed_frames(files):
    """Fails when a track survives max_age + 1 missed frames."""
    assert len(tracks_of(run(files, False, max_age=len(MISS) - 1), 1)) == 2


def test_no_match_without_overlap_in_iou_only_mode(files):
    """Fails without the IoU gate: a lost track would take any free box (here the false box
    at frames 20-21 and person 5 after the pillar)."""
    people = run(files, False)
    assert all(len(set(ps)) == 1 for ps in people.values() if not set(ps) <= {3, 4}), people


def test_an_occluded_person_is_refound_by_appearance(files):
    """Person 5 steps back behind a pillar and comes out behind the Kalman prediction (IoU 0.11):
    IoU only starts a new track; the motion gate plus appearance re-finds them."""
    assert len(tracks_of(run(files, False), 5)) == 2
    people = run(files, True)
    (track,) = tracks_of(people, 5)
    assert set(people[track]) == {5}


@pytest.mark.parametrize("appearance", [False, True])
def test_a_person_leaving_the_frame_ends_their_track(files, appearance):
    """Fails when a lost track predicted outside the frame lives on: person 2b, dressed like 2,
    enters where 2 left 3 frames earlier and would inherit their track."""
    people = run(files, appearance)
    assert tracks_of(people, 2).isdisjoint(tracks_of(people, 22)), people
    assert len(tracks_of(people, 2)) == 1 and len(tracks_of(people, 22)) == 1


@pytest.mark.parametrize("embed_mode", ["all", "ambiguous"])
def test_similarly_dressed_people_crossing(files, embed_mode):
    """Persons 3 and 4 (cosine distance 0.09, inside every appearance threshold) meet and turn
    back: IoU and motion swap them; fails when appearance is left out of the cost."""
    assert any(set(ps) == {3, 4} for ps in run(files, False).values())
    people = run(files, True, embed_mode)
    assert [set(people[t]) for t in sorted(tracks_of(people, 3) | tracks_of(people, 4))] \
        == [{3}, {4}], people


@pytest.mark.parametrize("embed_mode", ["all", "ambiguous"])
def test_the_gallery_follows_a_drifting_appearance(files, embed_mode):
    """Person 1's colours drift (cosine distance 0.97 from first to last frame): fails when the
    track's gallery keeps only its first embeddings."""
    people = run(files, True, embed_mode)
    (track,) = tracks_of(people, 1)
    assert set(people[track]) == {1}


@pytest.mark.parametrize("appearance", [False, True])
def test_confirmation_after_exactly_n_init_matches(files, appearance):
    """A false box seen for n_init - 1 frames is never reported; person 6, seen for exactly
    n_init frames at the end, is reported with all of them: fails when n_init is off by one."""
    people = run(files, appearance)
    assert not tracks_of(people, CLUTTER)
    (track,) = tracks_of(people, 6)
    assert people[track] == [6] * CONFIG.n_init


@pytest.mark.parametrize("appearance", [False, True])
def test_low_score_boxes_extend_tracks_but_start_none(files, appearance):
    """Person 2's boxes at frames 5-7 score 0.3 (< high_score): kept in their track; a false
    box scored 0.3 for 6 frames starts no track."""
    people = run(files, appearance)
    (track,) = tracks_of(people, 2)
    assert people[track] == [2] * sum(1 for r in scene() if r[1] == 2)
    assert not tracks_of(people, LOW_CLUTTER)


def test_only_ambiguous_boxes_are_embedded(files):
    """embed_mode="ambiguous" embeds under half of the boxes (those near another track, new,
    re-found or due a refresh) and tracks the scene as "all" does."""
    assert run(files, True, "ambiguous") == run(files, True, "all")
    boxes = sum(1 for r in scene() if r[4])
    assert _runs[(True, "all", ()), "crops"] == boxes
    assert 0 < _runs[(True, "ambiguous", ()), "crops"] < boxes / 2


def test_tracker_rejects_appearance_without_features():
    with pytest.raises(ValueError, match="one feature per box"):
        Tracker(CONFIG, use_appearance=True).update(1, np.zeros((2, 4)) + 10, np.zeros((1, 3)))


def _lazy(features: dict[int, np.ndarray], asked: list[int]):
    """A LazyFeatures function over one frame's boxes, recording the indices asked for."""
    def embed(idx):
        asked.extend(int(i) for i in idx)
        return np.stack([features[int(i)] for i in idx]) if len(idx) else np.zeros((0, 2))
    return embed


def test_a_lone_track_is_re_embedded_every_embed_every_frames():
    """Fails when an unambiguous track's boxes are never embedded again (its gallery would keep
    only its first embedding)."""
    tracker = Tracker(TrackerConfig(embed_every=5), use_appearance=True)
    embedded = []
    for f in range(1, 21):
        asked: list[int] = []
        tracker.update(f, [[100 + f, 50, 30, 60]], _lazy({0: np.array([1.0, 0.0])}, asked))
        embedded += [f] * len(asked)
    assert embedded == [1, 6, 11, 16]
    assert len(tracker.tracks[0].gallery) == 4


def test_a_lost_track_refinds_its_person_where_another_track_is_predicted():
    """B stands hidden while A walks up to B's place; B shows again there while A is hidden.
    B's box overlaps A's prediction as well as B's: with lazy embedding it must be embedded
    and go to B's track, not to A's."""
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    tracker = Tracker(TrackerConfig(n_init=1, max_age=10, embed_every=100), use_appearance=True)
    for f in range(1, 6):  # both seen, standing
        tracker.update(f, [[100, 50, 30, 60], [200, 50, 30, 60]], _lazy({0: a, 1: b}, []))
    for f in range(6, 12):  # B hidden; A walks towards B's place
        tracker.update(f, [[100 + 16 * (f - 5), 50, 30, 60]], _lazy({0: a}, []))
    track_a, track_b = (t.id for t in sorted(tracker.tracks, key=lambda t: t.id))
    matched = tracker.update(12, [[200, 50, 30, 60]], _lazy({0: b}, []))
    assert matched == [(track_b, 0)], (matched, track_a, track_b)


def test_appearance_does_not_veto_a_box_that_overlaps_only_its_track():
    """A lone person's box whose embedding changes (an occluded, partial view) still extends
    the one track it overlaps, as IoU alone would: appearance decides between people whose boxes
    meet, it does not break a track nobody else competes for. Fails when the max_cos veto also
    applies to such sole overlaps."""
    config = TrackerConfig(n_init=1, max_cos=0.5)
    tracker = Tracker(config, use_appearance=True)
    for f in range(1, 6):
        tracker.update(f, [[100 + 2 * f, 50, 30, 60]], np.array([[1.0, 0.0]]))
    (track,) = tracker.tracks
    matched = tracker.update(6, [[112, 50, 30, 60]], np.array([[0.0, 1.0]]))  # cos distance 1
    assert matched == [(track.id, 0)] and len(tracker.tracks) == 1


def test_appearance_still_decides_between_two_tracks_a_box_overlaps():
    """The counterpart: a box meeting two tracks goes to the one it looks like, although its
    overlap with the other is larger."""
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    tracker = Tracker(TrackerConfig(n_init=1), use_appearance=True)
    tracker.update(1, [[100, 50, 30, 60], [120, 50, 30, 60]], np.stack([a, b]))
    track_a, track_b = (t.id for t in sorted(tracker.tracks, key=lambda t: t.id))
    matched = tracker.update(2, [[102, 50, 30, 60]], np.stack([b]))
    assert matched == [(track_b, 0)]


@pytest.mark.parametrize("blend", [0.0, 0.5, 1.0])
def test_reported_box_is_the_kalman_box_blended_towards_the_detection(blend):
    """box_blend 0 reports the track's Kalman box after the update, 1 the detection's box, and
    values between lie on the line from one to the other."""
    from keras_crf_reid.tracking.pipeline import track_features
    boxes = [[100 + 6 * f + (4 if f % 2 else -4), 50, 30, 60 + (6 if f % 3 else 0)]
             for f in range(12)]
    dets = mot.from_arrays(np.arange(1, 13), -np.ones(12), np.array(boxes, float))
    cfg = TrackerConfig(n_init=1)
    kalman = track_features(dets, None, (640, 480), TrackerConfig(n_init=1, box_blend=0.0))
    out = track_features(dets, None, (640, 480), TrackerConfig(n_init=1, box_blend=blend))
    assert cfg.box_blend == 0.5
    expected = (1 - blend) * kalman["tracks"].boxes + blend * np.array(boxes, float)
    np.testing.assert_allclose(out["tracks"].boxes, expected, atol=1e-9)
    assert not np.allclose(kalman["tracks"].boxes, boxes)  # the filter does smooth


def test_a_lost_track_refinds_its_person_outside_its_predicted_box():
    """B, hidden for 6 frames, steps out 50 px from where they were last seen, in front of A
    (who is hidden by them): the frame's only box overlaps A's prediction alone (IoU 0.25) and
    not B's predicted box, but lies inside B's motion gate. With lazy embedding that box must
    still be embedded (a lost track's gate reaches it), and its appearance gives it to B (cost
    0.3 * 0 + 0.7 * 1 = 0.70 against A's 0.3 * 1 + 0.7 * 0.75 = 0.825: a sole overlap is not
    vetoed by appearance, only outweighed). Fails when lost tracks' gates are ignored: the box,
    not embedded, would go to A on IoU alone."""
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    config = TrackerConfig(n_init=1, max_age=10, embed_every=100, appearance_weight=0.3,
                           iou_min=0.2, reacquire_cos=0.2)
    tracker = Tracker(config, use_appearance=True)
    for f in range(1, 6):  # both seen, standing
        tracker.update(f, [[150, 50, 30, 60], [200, 50, 30, 60]], _lazy({0: a, 1: b}, []))
    for f in range(6, 12):  # B hidden; A stands
        tracker.update(f, [[150, 50, 30, 60]], _lazy({0: a}, []))
    track_a, track_b = sorted(tracker.tracks, key=lambda t: t.id)
    box = np.array([[168.0, 50, 30, 60]])
    iou = iou_matrix(np.stack([track_a.kalman.box(), track_b.kalman.box()]), box)[:, 0]
    assert 0.2 < iou[0] < 0.3 and iou[1] == 0, iou  # the premises (both stand still)
    asked: list[int] = []
    matched = tracker.update(12, box, _lazy({0: b}, asked))
    assert asked == [0]
    assert matched == [(track_b.id, 0)], (matched, track_a.id, track_b.id)


def test_a_box_nobody_else_claims_stays_with_its_track_however_it_looks():
    """A walks past B's standing place: A's box overlaps both tracks' predictions but looks like
    neither (an occluded, mixed crop). No other track claims it (B does not look like it), so
    A keeps it on IoU. Fails when max_cos vetoes every non-sole overlap (A would lose its box
    and a new track would start)."""
    a, b, mixed = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    tracker = Tracker(TrackerConfig(n_init=1, max_cos=0.5), use_appearance=True)
    # B's track comes first: were A's box refused to both (each a last resort, a tie), the
    # assignment would give it to B
    tracker.update(1, [[118, 50, 30, 60], [100, 50, 30, 60]], np.stack([b, a]))
    track_b, track_a = sorted(tracker.tracks, key=lambda t: t.id)
    matched = tracker.update(2, [[100, 50, 30, 60]], np.stack([mixed]))
    iou = iou_matrix(np.stack([track_a.kalman.box(), track_b.kalman.box()]), [[100, 50, 30, 60]])
    assert (iou[:, 0] > 0.2).all(), iou  # the premise: the box meets both tracks
    assert matched == [(track_a.id, 0)] and len(tracker.tracks) == 2


def _unit_at(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _a_and_b_then_b_hidden(config: TrackerConfig, b_left: float, a: np.ndarray, b: np.ndarray,
                     hidden: int) -> tuple[Tracker, Track, Track]:
    """A stands at x=100 and B at x=b_left for 3 frames, then B is hidden for `hidden` frames
    while A stands: the tracker and A's and B's tracks."""
    tracker = Tracker(config, use_appearance=True)
    for f in range(1, 4):
        tracker.update(f, [[100, 50, 30, 60], [b_left, 50, 30, 60]], np.stack([a, b]))
    for f in range(4, 4 + hidden):
        tracker.update(f, [[100, 50, 30, 60]], np.stack([a]))
    track_a, track_b = sorted(tracker.tracks, key=lambda t: t.id)
    return tracker, track_a, track_b


def test_a_lost_track_does_not_take_a_box_another_track_claims():
    """B is lost; a box appears inside B's motion gate, looking like B, but overlapping and
    looking like A, who was seen last frame: A has it first (DeepSORT's cascade), and B stays
    lost. Fails when a lost track may re-acquire a claimed box: B's cost 0.9 * 0.008 + 0.1 * 1
    = 0.107 is below A's 0.9 * 0.1 + 0.1 * (1 - 0.43) = 0.147."""
    box_feature = _unit_at(0.45)  # cosine distance 0.1 to A's, 0.008 to B's (0.05 apart)
    config = TrackerConfig(n_init=1, max_age=10, appearance_weight=0.9, reacquire_cos=0.2,
                           reacquire_ratio=1.0)
    tracker, track_a, track_b = _a_and_b_then_b_hidden(config, 160, _unit_at(0.0), _unit_at(0.32), 3)
    box = [[112, 50, 30, 60]]
    assert track_b.kalman.gating_distance(np.array(box, float))[0] <= GATE_CHI2_4DOF  # premise
    matched = tracker.update(7, box, np.stack([box_feature]))
    assert matched == [(track_a.id, 0)], (matched, track_a.id, track_b.id)


def test_re_acquisition_needs_a_clear_margin_over_the_other_lost_tracks():
    """Two people are lost; a box appears in both their motion gates, overlapping neither
    prediction. At cosine distance 0.005 from one and 0.30 from the other, the nearer one
    re-acquires it; at 0.09 from one and 0.11 from the other (ratio 0.84 > reacquire_ratio 0.7)
    it starts a new track instead of a guess. Fails without the ratio test."""
    box = np.array([[135.0, 50, 30, 60]])

    def run(angle):
        tracker = Tracker(TrackerConfig(n_init=1, max_age=10, reacquire_cos=0.2,
                                        reacquire_ratio=0.7), use_appearance=True)
        for f in range(1, 4):
            tracker.update(f, [[100, 50, 30, 60], [170, 50, 30, 60]],
                           np.stack([_unit_at(0.0), _unit_at(0.9)]))
        for f in range(4, 7):
            tracker.update(f, np.zeros((0, 4)), np.zeros((0, 2)))
        first, second = sorted(tracker.tracks, key=lambda t: t.id)
        for t in (first, second):  # the premises: in the gate, no overlap
            assert t.kalman.gating_distance(box)[0] <= GATE_CHI2_4DOF
            assert iou_matrix(t.kalman.box()[None], box)[0, 0] < 0.2
        dist = [t.appearance_distance(_unit_at(angle)[None])[0] for t in (first, second)]
        return (first.id, second.id), dist, tracker.update(7, box, _unit_at(angle)[None])

    ids, dist, matched = run(0.1)
    assert dist[0] / dist[1] < 0.7 and matched == [(ids[0], 0)], (dist, matched)
    ids, dist, matched = run(0.43)
    assert dist[0] <= 0.2 and 0.7 < dist[0] / dist[1] < 1, dist
    assert len(matched) == 1 and matched[0][0] not in ids, (ids, matched)  # a new track


def test_a_swap_to_hand_a_lost_track_a_box_costs_more_than_leaving_it_lost():
    """A stands with B, lost, predicted 15 px to A's right; a newcomer steps in 15 px to A's
    left. Matching as many pairs as possible would give A the newcomer (IoU 0.33) and B A's box
    (IoU 0.33): 1.33 in all, against 0 + unmatched_cost (1 - iou_min = 0.8) for A keeping its box
    and B staying lost. Fails when a pair the gate refuses costs INFEASIBLE (max cardinality
    first) instead of unmatched_cost."""
    tracker = Tracker(TrackerConfig(n_init=1, max_age=10, iou_min=0.2))
    for f in range(1, 4):
        tracker.update(f, [[100, 50, 30, 60], [115, 50, 30, 60]])
    for f in range(4, 6):  # B hidden
        tracker.update(f, [[100, 50, 30, 60]])
    track_a, track_b = sorted(tracker.tracks, key=lambda t: t.id)
    assert track_b.misses == 2 and tracker.unmatched_cost() == pytest.approx(0.8)
    boxes = [[100, 50, 30, 60], [85, 50, 30, 60]]
    iou = iou_matrix(np.stack([track_a.kalman.box(), track_b.kalman.box()]), boxes)
    assert iou[0, 1] > 0.2 and iou[1, 0] > 0.2 and iou[1, 1] == 0, iou  # the premises
    matched = dict(tracker.update(6, boxes))
    assert matched.get(track_a.id) == 0 and track_b.id not in matched, (matched, track_a.id)
    assert track_b.misses == 3 and len(tracker.tracks) == 3  # B still lost, the newcomer's track


def test_a_lost_track_gives_way_where_another_track_looks_clearly_more_like_the_box():
    """A and B stand 4 px apart; B is hidden for two frames while A steps onto B's place. The
    box overlaps B's prediction better (IoU 1 against 0.79) and looks enough like B to be
    claimed by it (cosine distance 0.3 <= max_cos), but six times more like A (0.05): B, lost,
    gives way (0.05 <= reacquire_ratio 0.7 x 0.3). Fails without that ratio test on a lost
    track's overlap: B's cost 0.3 * 0.3 + 0.7 * 0 = 0.09 is below A's 0.3 * 0.05 + 0.7 * 0.21."""
    box_feature = _unit_at(0.32)  # cosine distance 0.05 to A's, 0.3 to B's
    config = TrackerConfig(n_init=1, max_age=10, appearance_weight=0.3, max_cos=0.5,
                           reacquire_ratio=0.7)
    tracker, track_a, track_b = _a_and_b_then_b_hidden(config, 104, _unit_at(0.0), _unit_at(1.115), 2)
    box = [[104, 50, 30, 60]]
    dist = [t.appearance_distance(box_feature[None])[0] for t in (track_a, track_b)]
    iou = iou_matrix(np.stack([track_a.kalman.box(), track_b.kalman.box()]), box)[:, 0]
    assert dist[0] < 0.06 and 0.28 < dist[1] < 0.5 and iou[1] > iou[0] > 0.2, (dist, iou)
    matched = tracker.update(6, box, np.stack([box_feature]))
    assert matched == [(track_a.id, 0)], (matched, track_a.id, track_b.id)


def test_a_merged_box_of_two_people_does_not_move_the_track():
    """Two people walk side by side (25 px apart, 4 px a frame); for one frame the detector
    gives a single box around both, 1.8x as wide. The track it is matched to stays alive and
    matched, but its motion is not updated by the merged box: its state stays on its person's
    path instead of being pulled halfway to the neighbour. A second merged frame in a row does
    update it (a box that stays wide is the person's own shape). Fails when merged boxes update
    the Kalman state (merged_aspect ignored)."""
    tracker = Tracker(TrackerConfig(n_init=1, iou_min=0.2, merged_aspect=1.3))
    for f in range(1, 8):
        x = 100 + 4 * f
        tracker.update(f, [[x, 50, 30, 60], [x + 25, 50, 30, 60]])
    track_p, track_q = sorted(tracker.tracks, key=lambda t: t.id)
    x = 100 + 4 * 8
    merged = [[x, 50, 55, 60]]
    matched = tracker.update(8, merged)
    (tid, _), = matched
    held = track_p if tid == track_p.id else track_q
    own_centre = x + 15 + (25 if held is track_q else 0)
    assert held.misses == 0 and held.held
    assert abs(held.kalman.box()[0] + held.kalman.box()[2] / 2 - own_centre) < 2
    assert held.kalman.box()[2] == pytest.approx(30, abs=1)  # its width is not the merged one
    tracker.update(9, [[x + 4, 50, 55, 60]])  # still merged: this time it updates
    assert not held.held
    assert held.kalman.box()[0] + held.kalman.box()[2] / 2 < own_centre + 4 - 5  # pulled


def test_a_degenerate_prediction_never_calls_a_box_merged():
    """A lost track's Kalman box can shrink through zero (negative width and height, so a
    positive aspect w / h): such a prediction must not make a box look 'merged' against it."""
    tracker = Tracker(TrackerConfig(iou_min=0.2, merged_aspect=1.3))
    predicted = np.array([[0, 0, 30, 60], [0, 0, -3, -60], [0, 0, -3, -11]], float)
    merged = tracker._merged(np.full((3, 1), 0.5), predicted, np.array([[0, 0, 55, 60]], float))
    assert merged[:, 0].tolist() == [True, False, False]


def test_an_overlap_appearance_refuses_is_a_last_resort_not_forbidden():
    """B stands half hidden behind A. B's box overlaps both tracks, and its crop shows A (cosine
    distance 1 to B's gallery, 0 to A's): A claims it, so appearance refuses it to B. A has its
    own box, though, so B's is taken by nobody else: B keeps it, at a cost just under leaving
    both unmatched. Fails when such an overlap is forbidden (B would miss the frame and its box
    would start a new track)."""
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    tracker, track_a, track_b = _a_and_b_then_b_hidden(TrackerConfig(n_init=1, max_cos=0.5), 112, a, b,
                                                  0)
    boxes = [[100, 50, 30, 60], [112, 50, 30, 60]]
    iou = iou_matrix(np.stack([track_a.kalman.box(), track_b.kalman.box()]), boxes)
    assert (iou >= 0.2).all(), iou  # the premise: both boxes overlap both tracks
    matched = dict(tracker.update(4, boxes, np.stack([a, a])))
    assert matched == {track_a.id: 0, track_b.id: 1} and len(tracker.tracks) == 2, matched
