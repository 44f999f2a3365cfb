"""The tracking command lines on a tiny MOT15-style sequence (30 frames, two people who meet and
turn back): the MOT15 benchmark (keras_crf_reid.tracking.evaluate) and the query cropper
(keras_crf_reid.tracking.crop_person)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_crf_reid.configs.tracker import TrackerConfig, TrackingEvalConfig
from keras_crf_reid.tracking import detections as mot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = "PETS09-S2L1"  # a known sequence name: its video is vtest.avi
W, H, BOX_W, BOX_H, SPEED, FRAMES = 320, 240, 30, 60, 8, 30
COLOURS = {1: (220, 30, 30), 2: (30, 30, 220)}  # RGB


def command(module, *args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})


@pytest.fixture(scope="module")
def mot_root(tmp_path_factory):
    """A MOT15 layout holding one sequence: video, seqinfo.ini, gt/gt.txt, det/det.txt (the
    ground-truth boxes)."""
    root = tmp_path_factory.mktemp("mot15")
    seq = root / SEQ
    (seq / "gt").mkdir(parents=True)
    (seq / "det").mkdir()
    writer = cv2.VideoWriter(str(seq / "vtest.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    xa, xb, va, gt, det = 40.0, 258.0, SPEED, [], []
    for f in range(1, FRAMES + 1):
        img = np.full((H, W, 3), 128, np.uint8)
        for pid, x in ((1, xa), (2, xb)):
            img[90:90 + BOX_H, int(x):int(x) + BOX_W] = COLOURS[pid]
            gt.append(f"{f},{pid},{x},90,{BOX_W},{BOX_H},1,1,1\n")
            det.append(f"{f},-1,{x},90,{BOX_W},{BOX_H},1\n")
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if xb - xa <= 10:
            va = -SPEED
        xa, xb = xa + va, xb - va
    writer.release()
    (seq / "gt" / "gt.txt").write_text("".join(gt))
    (seq / "det" / "det.txt").write_text("".join(det))
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={SEQ}\nimWidth={W}\nimHeight={H}\n")
    return str(root)


def mean_colour(crops):
    """Stub appearance: the mean colour of the crop's centre."""
    return crops[:, 40:88, 16:48].reshape(len(crops), -1, 3).mean(axis=1)


def test_benchmark_cli_scores_every_detection_set(mot_root, tmp_path):
    table, dets_out = tmp_path / "t" / "table.md", tmp_path / "dets"
    done = command("keras_crf_reid.tracking.evaluate", f"--mot_root={mot_root}",
                   f"--sequences={SEQ}", "--appearance=none",
                   "--detections=public,gt,degraded,crossings", "--max_age=7",
                   f"--table={table}", f"--detections_out={dets_out}", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["settings"]["tracker"] == {**TrackerConfig().__dict__, "max_age": 7}
    rows = {r["detections"]: r for r in out["rows"]}
    assert list(rows) == ["public", "gt boxes", "degraded", "crossings dropped"]
    assert all(r["sequence"] == SEQ and r["appearance"] == "none" for r in rows.values())
    # det.txt holds the ground-truth boxes: the same tracks; IoU alone swaps the two people
    assert rows["public"]["mota"] == rows["gt boxes"]["mota"]
    assert rows["gt boxes"]["recall"] == 1.0 and rows["gt boxes"]["num_switches"] > 0
    assert rows["crossings dropped"]["recall"] < 1.0 and rows["degraded"]["recall"] < 1.0
    text = table.read_text()
    assert f"| {SEQ} | public | SORT (issue 28) | 0.619 |" in text
    assert text.count(f"| {SEQ} |") == 6
    degraded = mot.read_mot(str(dets_out / f"{SEQ}_degraded.txt"))
    assert 0 < len(degraded) and (degraded.id == -1).all()


def test_benchmark_with_appearance_and_its_feature_cache(mot_root, tmp_path):
    from keras_crf_reid.tracking.evaluate import evaluate_tracking
    cfg = TrackingEvalConfig(mot_root=mot_root, sequences=(SEQ,), detections=("gt",),
                             features_dir=str(tmp_path / "features"))
    calls = []

    def embed(crops):
        calls.append(len(crops))
        return mean_colour(crops)

    first = evaluate_tracking(cfg, embed)
    assert os.listdir(tmp_path / "features") == [f"crf_mars_{SEQ}_gt.npy"]
    assert sum(calls) == 2 * FRAMES  # every detection embedded once
    again = evaluate_tracking(cfg, embed)
    assert sum(calls) == 2 * FRAMES  # read back from the cache
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(first["rows"]) == strip(again["rows"])
    by_mode = {r["appearance"]: r for r in first["rows"]}
    assert by_mode["none"]["num_switches"] > 0 and by_mode["reid"]["num_switches"] == 0
    assert by_mode["reid"]["idf1"] > 0.95 and by_mode["none"]["idf1"] < 0.6
    with pytest.raises(ValueError, match="appearance=reid"):
        evaluate_tracking(cfg)


def test_crop_person_writes_the_persons_frames(mot_root, tmp_path):
    seq = os.path.join(mot_root, SEQ)
    args = [f"--video={seq}/vtest.avi", f"--gt={seq}/gt/gt.txt", "--every=5", "--last_frame=20"]
    done = command("keras_crf_reid.tracking.crop_person", *args, "--id=2",
                   f"--out={tmp_path / 'q'}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["frames"] == [1, 6, 11, 16]
    names = sorted(os.listdir(tmp_path / "q"))
    assert names == ["0001.jpg", "0006.jpg", "0011.jpg", "0016.jpg"]
    crop = cv2.cvtColor(cv2.imread(str(tmp_path / "q" / names[0])), cv2.COLOR_BGR2RGB)
    assert crop.shape == (128, 64, 3)
    assert np.abs(crop[40:88, 16:48].mean(axis=(0, 1)) - COLOURS[2]).max() < 20  # person 2: blue
    missing = command("keras_crf_reid.tracking.crop_person", *args, "--id=9",
                      f"--out={tmp_path / 'none'}")
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert f"error: {seq}/gt/gt.txt: no box of id 9 in frames 1-20" in missing.stderr
    assert not (tmp_path / "none").exists()
