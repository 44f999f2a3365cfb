"""Checks that the tracking tests catch deliberate bugs: copies keras_crf_reid/ and tests/ to a
temporary folder, runs the tests there unchanged (they must pass: else every bug would read as
caught), then puts one bug at a time into the copy's tracker or pipeline, runs the tests again
and prints a markdown row per bug (caught or not, and by which tests). The worktree is never
changed. The copy comes first on PYTHONPATH, before whatever PYTHONPATH already holds (a side
folder with another OpenCV, say).

    .venv/bin/python tools/tracking_mutants.py [--tests=tests/tracking_scene_test.py,...]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = "keras_crf_reid/tracking/tracker.py"
P = "keras_crf_reid/tracking/pipeline.py"
# (bug, file, text, replacement)
BUGS = [
    ("appearance term removed from the cost", T,
     "cost = c.appearance_weight * app + (1 - c.appearance_weight) * (1.0 - iou)",
     "cost = (1 - c.appearance_weight) * (1.0 - iou)"),
    ("n_init + 1 (hits > n_init)", T, "t.hits >= c.n_init", "t.hits > c.n_init"),
    ("n_init - 1 (hits >= n_init - 1)", T, "t.hits >= c.n_init", "t.hits >= c.n_init - 1"),
    ("max_age - 1 (misses < max_age)", T, "t.misses <= c.max_age", "t.misses < c.max_age"),
    ("max_age + 1 (misses <= max_age + 1)", T, "t.misses <= c.max_age", "t.misses <= c.max_age + 1"),
    ("end at the frame border dropped", T, "and self._inside(t))", ")"),
    ("frame border: w and h swapped (tracker)", T,
     "x + w / 2 <= self.frame_size[0] and 0 <= y + h / 2 <= self.frame_size[1]",
     "x + w / 2 <= self.frame_size[1] and 0 <= y + h / 2 <= self.frame_size[0]"),
    ("frame border: w and h swapped (pipeline)", P,
     "tracker.frame_size = (rgb.shape[1], rgb.shape[0])",
     "tracker.frame_size = (rgb.shape[0], rgb.shape[1])"),
    ("IoU gate of IoU-only mode removed", T,
     "return np.where(iou >= c.iou_min, 1.0 - iou, INFEASIBLE)", "return 1.0 - iou"),
    ("embedding gallery never updated", T, "t.gallery.append(feats[pos[d]])", "pass"),
    ("lazy embedding: a stale track's box never embedded", T,
     "need |= (meet & stale[:, None]).any(axis=0)", "pass"),
    ("lazy embedding: lost tracks' gates ignored", T, "if t.misses and not need.all():",
     "if False:"),
    ("second (low-score) association removed", T, "if left and len(low):", "if False:"),
    ("low-score boxes start tracks", T, "for d in high:\n            if d not in matched_dets:",
     "for d in range(len(boxes)):\n            if d not in matched_dets:"),
    ("appearance vetoes every overlap that is not sole", T,
     "(alike | (overlap & ~claimed))", "(alike | (overlap & _sole(iou)))"),
    ("a lost track re-acquires a box another track claims", T,
     "return (gate & ~claimed & (app <= c.reacquire_cos)", "return (gate & (app <= c.reacquire_cos)"),
    ("re-acquisition ratio test removed", T, "& (app <= c.reacquire_ratio * other))", ")"),
    ("a lost track's overlap needs no ratio test", T, "& ~outlooked)", ")"),
    ("an overlap appearance refuses is forbidden (not a last resort)", T,
     "return np.where(ok, cost, last_resort)", "return np.where(ok, cost, INFEASIBLE)"),
    ("refused pairs cost INFEASIBLE (most matches first)", T,
     "_assign(self._cost(iou, boxes[high], feats, unmatched), unmatched)",
     "_assign(self._cost(iou, boxes[high], feats, unmatched))"),
    ("merged boxes update the Kalman state", T,
     "t.held = is_high and bool(merged[r, pos[d]]) and not t.held", "t.held = False"),
    ("a merged box held however many frames in a row", T,
     "bool(merged[r, pos[d]]) and not t.held", "bool(merged[r, pos[d]])"),
]
flags.DEFINE_list("tests", ["tests/tracking_test.py", "tests/tracking_scene_test.py",
                            "tests/tracking_detector_test.py"], "Test files run.")
flags.DEFINE_string("select", "not cli and not find_person", "pytest -k expression ('' : all; "
                    "the default leaves out the slow subprocess and model tests).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("keras_crf_reid", "tests"):
            shutil.copytree(os.path.join(ROOT, name), os.path.join(tmp, name),
                            ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pytest.ini", "setup.py"):
            shutil.copy(os.path.join(ROOT, name), tmp)
        path = [tmp] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FLAGS.tests]
        cmd += ["-k", FLAGS.select] if FLAGS.select else []
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"the tests fail without any bug; fix them first:\n{r.stdout[-3000:]}")
        print(f"unchanged code: {r.stdout.strip().splitlines()[-1]}\n", flush=True)
        print("| deliberate bug | caught | failing tests |\n|:---|:---|:---|")
        for bug, path, old, new in BUGS:
            file = os.path.join(tmp, path)
            text = open(file).read()
            if old not in text:
                raise SystemExit(f"{path}: the text of bug {bug!r} is gone; update BUGS")
            open(file, "w").write(text.replace(old, new, 1))
            try:
                r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            finally:
                open(file, "w").write(text)
            failed = sorted({line.split("::")[1].split(" ")[0].split("[")[0]
                             for line in r.stdout.splitlines() if line.startswith("FAILED")})
            print(f"| {bug} | {'yes' if r.returncode else '**no**'} | {', '.join(failed)} |",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
