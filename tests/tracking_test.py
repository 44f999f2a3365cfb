"""Tracking: MOT files, video errors, and two people who meet and turn back on a synthetic video,
where IoU + motion alone swaps them and an appearance embedding keeps them apart."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_crf_reid.tracking import detections as mot
from keras_crf_reid.tracking import video
from keras_crf_reid.tracking.pipeline import track_video
from keras_crf_reid.configs.tracker import TrackerConfig
from keras_crf_reid.tracking.tracker import iou_matrix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H, BOX_W, BOX_H, SPEED, FRAMES = 320, 240, 30, 60, 8, 30
COLOURS = {1: (220, 30, 30), 2: (30, 30, 220)}  # person 1 red, person 2 blue (RGB)


def _positions():
    """Left edges per frame: the two walk towards each other, meet (IoU 0.5) and turn back."""
    xa, xb, out, va = 40.0, 258.0, [], SPEED
    for _ in range(FRAMES):
        out.append((xa, xb))
        if xb - xa <= 10:
            va = -SPEED
        xa, xb = xa + va, xb - va
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Video (MJPG .avi) and ground-truth rows (frame, person, box) of the two people."""
    root = tmp_path_factory.mktemp("scene")
    path = str(root / "scene.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    rows = []
    for f, (xa, xb) in enumerate(_positions(), 1):
        img = np.full((H, W, 3), 128, np.uint8)
        for pid, x in ((1, xa), (2, xb)):
            img[90:90 + BOX_H, int(x):int(x) + BOX_W] = COLOURS[pid]
            rows.append((f, pid, (x, 90, BOX_W, BOX_H)))
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    det = root / "det.txt"
    det.write_text("".join(f"{f},-1,{b[0]},{b[1]},{b[2]},{b[3]},1\n" for f, _, b in rows))
    return path, str(det), rows


def mean_colour(crops):
    """Stub appearance: the mean colour of the crop's centre."""
    return crops[:, 40:88, 16:48].reshape(len(crops), -1, 3).mean(axis=1)


def _people_per_track(tracks, rows):
    """Track id -> the people its boxes overlap most (tracks report Kalman boxes)."""
    out = {}
    for f, tid, box in zip(tracks.frame, tracks.id, tracks.boxes):
        here = [(pid, b) for g, pid, b in rows if g == f]
        iou = iou_matrix(box[None], [b for _, b in here])[0]
        assert iou.max() >= 0.5, (f, box)
        out.setdefault(int(tid), set()).add(here[int(iou.argmax())][0])
    return out


def test_iou_only_swaps_the_two_people_where_they_turn_back(scene):
    path, det, rows = scene
    out = track_video(path, mot.read_mot(det))
    assert out["frames"] == FRAMES
    people = _people_per_track(out["tracks"], rows)
    assert any(len(p) == 2 for p in people.values()), people  # a track holds both people


def test_appearance_keeps_each_track_on_one_person(scene, tmp_path):
    path, det, rows = scene
    out = track_video(path, mot.read_mot(det), appearance=mean_colour, out_dir=str(tmp_path))
    people = _people_per_track(out["tracks"], rows)
    assert sorted(map(sorted, people.values())) == [[1], [2]], people
    assert len(out["tracks"]) >= 2 * FRAMES - 2  # first frames of a track included
    crops = sorted(os.listdir(tmp_path / "tracklets" / "1"))
    assert crops[0] == "0001.jpg" and len(crops) == (out["tracks"].id == 1).sum()
    assert cv2.imread(str(tmp_path / "tracklets" / "1" / crops[0])).shape == (128, 64, 3)


def test_tracks_file_is_motchallenge_format(scene, tmp_path):
    path, det, _ = scene
    track_video(path, mot.read_mot(det), out_dir=str(tmp_path))
    lines = (tmp_path / "tracks.txt").read_text().splitlines()
    assert len(lines) == 2 * FRAMES
    keys = []
    for line in lines:
        fields = line.split(",")
        assert len(fields) == 10 and fields[7:] == ["-1", "-1", "-1"]
        keys.append((int(fields[0]), int(fields[1])))
        assert float(fields[4]) == pytest.approx(BOX_W) and float(fields[5]) == pytest.approx(BOX_H)
    assert keys == sorted(keys)
    back = mot.read_mot(str(tmp_path / "tracks.txt"))
    assert len(back) == 2 * FRAMES and set(back.id) == set(int(k[1]) for k in keys)


@pytest.mark.parametrize("text,message", [
    ("1,-1,10,10,20\n", "at least 6"),
    ("1,-1,10,ten,20,40,1\n", "non-numeric"),
    ("0,-1,10,10,20,40,1\n", "frame must be an integer >= 1"),
    ("1,-1,10,10,0,40,1\n", "width and height must be > 0"),
    ("1,-1,10,10,20,-3,1\n", "width and height must be > 0"),
    ("1,-1,nan,10,20,40,1\n", "NaN or infinite"),
    ("1,-1,10,10,inf,40,1\n", "NaN or infinite"),
    ("\n", "no detections"),
])
def test_malformed_detection_files(tmp_path, text, message):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,1,1,5,5,1\n" + text if "no detections" not in message else text)
    with pytest.raises(mot.DetectionFileError, match=message) as e:
        mot.read_mot(str(path))
    assert str(path) in str(e.value)
    with pytest.raises(mot.DetectionFileError, match="does not exist"):
        mot.read_mot(str(tmp_path / "missing.txt"))


def test_unreadable_videos(tmp_path):
    with pytest.raises(video.VideoError, match="does not exist"):
        list(video.read_video(str(tmp_path / "missing.avi")))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(video.VideoError, match="junk.avi: not a video file.*text"):
        list(video.read_video(str(junk)))
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(1, 256, 5000, np.uint8).tobytes())
    with pytest.raises(video.VideoError, match="noise.mp4: not a video file.*data"):
        video.frame_count(str(noise))


def test_text_passed_as_video_is_refused_by_its_codec(tmp_path, monkeypatch):
    """FFmpeg opens text as terminal art ('ansi' codec, 50 frames): refused past the container
    check too."""
    text = tmp_path / "notes.txt"
    text.write_text("frame, id, x, y\n" * 200)
    monkeypatch.setattr(video, "check_container", lambda path: "AVI")
    with pytest.raises(video.VideoError, match="notes.txt: not a video.*'ansi'"):
        list(video.read_video(str(text)))


def test_boxes_outside_the_frame_are_warned_by_file_line(tmp_path, caplog):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,10,20,40,1\n# comment\n1,-1,400,10,20,40,1\n2,-1,-50,10,20,40,1\n"
                    "2,-1,-5,10,20,40,1\n")
    with caplog.at_level("WARNING"):
        kept = mot.drop_outside(mot.read_mot(str(path)), (320, 240))
    assert kept.line.tolist() == [1, 5]
    assert f"{path}:3: box (400, 10, 20, 40) lies entirely outside the 320x240 frame" in caplog.text
    assert f"{path}:4:" in caplog.text and f"{path}:5:" not in caplog.text


def test_crop_pads_boxes_leaving_the_frame():
    frame = np.zeros((50, 50, 3), np.uint8)
    frame[:, :25] = 200
    c = video.crop(frame, (-10, 10, 20, 30))
    assert c.shape == (128, 64, 3) and (c == 200).all()
    assert iou_matrix([[0, 0, 10, 10]], [[5, 0, 10, 10], [20, 20, 5, 5]]).round(3).tolist() == [[0.333, 0.0]]


def test_track_cli_writes_tracks_and_reports_bad_input(scene, tmp_path):
    path, det, _ = scene
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "keras_crf_reid.track", f"--video={path}", "--appearance=none",
           f"--out={tmp_path / 'out'}"]
    ok = subprocess.run(cmd + [f"--detections={det}"], capture_output=True, text=True, env=env,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "tracks.txt").read_text().count("\n") == 2 * FRAMES
    bad = tmp_path / "bad.txt"
    bad.write_text("1,-1,10,10\n")
    fail = subprocess.run(cmd + [f"--detections={bad}"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert fail.returncode == 2 and f"{bad}:1: expected at least 6" in fail.stderr, fail.stderr


@pytest.mark.parametrize("field", ["appearance_weight", "reacquire_ratio"])
def test_tracker_config_rejects_bad_values(field):
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: 2.0})
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: -0.1})


def test_merged_aspect_below_one_is_refused():
    with pytest.raises(ValueError, match="merged_aspect must be >= 1"):
        TrackerConfig(merged_aspect=0.9)


def test_mot_metrics_count_an_identity_swap():
    pytest.importorskip("motmetrics")
    from keras_crf_reid.tracking.metrics import mot_metrics
    frames = np.repeat(np.arange(1, 11), 2)
    boxes = np.tile([[0, 0, 10, 20], [50, 0, 10, 20]], (10, 1))
    gt = mot.from_arrays(frames, np.tile([1, 2], 10), boxes)
    assert mot_metrics(gt, gt)["idf1"] == 1.0
    swapped = mot.from_arrays(frames, [1, 2] * 5 + [2, 1] * 5, boxes)
    m = mot_metrics(gt, swapped)
    assert m["num_switches"] == 2 and m["mota"] == pytest.approx(0.9) and m["idf1"] == 0.5


def test_find_person_ranks_the_query_track_first(scene, tmp_path):
    import types

    import keras
    from keras_crf_reid.find_person import find_person
    from keras_crf_reid.models.network import ModelConfig, build_crf_model

    path, det, rows = scene
    keras.utils.set_random_seed(0)
    model = str(tmp_path / "tiny.keras")
    build_crf_model(ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)).save(model)
    truth = tmp_path / "gt.txt"
    truth.write_text("".join(f"{f},{pid},{b[0]},{b[1]},{b[2]},{b[3]},1\n" for f, pid, b in rows))
    query = tmp_path / "query"
    query.mkdir()
    for f, rgb in video.read_video(path):  # the red person's first frames, cropped as a user would
        if f <= 5:
            box = next(b for g, pid, b in rows if g == f and pid == 1)
            cv2.imwrite(str(query / f"{f:04d}.jpg"),
                        cv2.cvtColor(video.crop(rgb, np.array(box, float)), cv2.COLOR_RGB2BGR))
    flags_like = types.SimpleNamespace(
        query=str(query), video=path, detections=det, detector=None, out=str(tmp_path / "out"), model=model,
        min_score=float("-inf"), top_k=3, rerank=False, truth=str(truth), truth_id=1,
        appearance_weight=0.3, max_cos=0.6, reacquire_cos=0.3, iou_min=0.3, max_age=30, n_init=3,
        high_score=0.95, low_iou_min=0.3, box_blend=0.5)
    out = find_person(flags_like)
    matches = out["results"][0]["matches"]
    assert 1 <= len(matches) <= 3 and [m["rank"] for m in matches] == list(range(1, len(matches) + 1))
    assert all(1 <= m["first_frame"] <= m["last_frame"] <= FRAMES for m in matches)
    assert matches[0]["is_person"] and not matches[-1]["is_person"]
    for name in ("find_person.json", "find_person.md", "find_person.png", "tracks.txt"):
        assert (tmp_path / "out" / name).is_file()
    assert "| rank | track |" in (tmp_path / "out" / "find_person.md").read_text()
