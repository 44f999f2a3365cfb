"""Held-out learning curves of training runs (`--eval_every`), as JSON and one PNG.

    PYTHONPATH=. python tools/learning_curves.py --runs=runs/a,runs/b --labels=pairs,pk \
        --out_png=docs/images/curves.png

Reads each run's `split_<k>/<part>/tb` TensorBoard scalars `eval/<metric>` (written every
--eval_every steps) and adds the final evaluation from `split_<k>/metrics.json` at the run's
last training step; the baseline entry of the last run that has one is drawn as a dashed line.
"""
from __future__ import annotations

import glob
import json
import os

from absl import app, flags

flags.DEFINE_list("runs", [], "Run folders (--output_dir/--name of each training run).")
flags.DEFINE_list("labels", [], "Legend label per run (default: the folder names).")
flags.DEFINE_integer("split", 0, "Split whose curves are read.")
flags.DEFINE_string("part", "full", "Part model whose curve is read (full, upper, lower).")
flags.DEFINE_string("out_png", "", "Write the figure here (empty: JSON only).")
flags.DEFINE_string("title", "", "Figure title.")
FLAGS = flags.FLAGS
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP")


def read_curve(run_dir: str, split: int = 0, part: str = "full") -> dict:
    """{"step": [...], metric: [...], "baseline": {...}} of one run, sorted by step."""
    import tensorflow as tf

    split_dir = os.path.join(run_dir, f"split_{split}")
    events = sorted(glob.glob(os.path.join(split_dir, part, "tb", "events.out.tfevents.*")))
    if not events:
        raise FileNotFoundError(f"{split_dir}/{part}/tb: no TensorBoard events (was the run "
                                f"trained with --eval_every?)")
    points: dict[int, dict[str, float]] = {}
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag.startswith("eval/") and v.tag[5:] in METRICS:
                    points.setdefault(int(event.step), {})[v.tag[5:]] = float(
                        tf.make_ndarray(v.tensor))
    out: dict = {"baseline": {}}
    metrics_path = os.path.join(split_dir, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            done = json.load(f)
        final = done.get("entries", {}).get(part)
        steps = [t.get("step") for t in done.get("train", []) if t.get("part") == part]
        if final and steps and steps[-1]:
            points[int(steps[-1])] = {m: float(final[m]) for m in METRICS if m in final}
        base = done.get("entries", {}).get("baseline")
        if base:
            out["baseline"] = {m: float(base[m]) for m in METRICS if m in base}
    steps = sorted(s for s, p in points.items() if all(m in p for m in METRICS))
    out["step"] = steps
    for m in METRICS:
        out[m] = [points[s][m] for s in steps]
    return out


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.runs:
        raise app.UsageError("--runs: give at least one run folder")
    labels = FLAGS.labels or [os.path.basename(os.path.normpath(r)) for r in FLAGS.runs]
    if len(labels) != len(FLAGS.runs):
        raise app.UsageError(f"--labels: {len(labels)} labels for {len(FLAGS.runs)} runs")
    curves = {label: read_curve(run, FLAGS.split, FLAGS.part)
              for label, run in zip(labels, FLAGS.runs)}
    if FLAGS.out_png:
        from keras_crf_reid.evaluation import plots

        # the newest run's baseline row (earlier runs may have scored an older baseline kind)
        baselines = next(({"baseline": c["baseline"]}
                          for c in reversed(list(curves.values())) if c["baseline"]), None)
        plots.plot_learning_curves(curves, FLAGS.out_png, baselines=baselines, title=FLAGS.title)
    print(json.dumps(curves))


if __name__ == "__main__":
    app.run(main)
