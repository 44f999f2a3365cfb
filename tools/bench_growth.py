"""How time and memory of the MARS path grow with the dataset; prints one JSON line.

For each --sizes (frames), generates a MARS-layout dataset (datasets/mars_synthetic.py), then
runs each stage in its own subprocess and records its wall time and peak RSS (ru_maxrss of that
child, from os.wait4), and its CPU seconds (less disturbed by other load than wall time):
  read      datasets.mars.load_mars (info .mat files, name lists, image listing)
  cache     TrackletStore.build on all cores (decode, DIS flow, JPEG + int8 flow entries)
  train     --steps training steps of a tiny model (filters 8,8,8, embedding 32, --seq_len
            frames, --batch_size pairs) fed by pipeline.replica_pairs: the steps are tiny on
            purpose, so the dataset-dependent costs (sampler, store opening, reads) show
  evaluate  the official query/gallery evaluation (evaluation.evaluate_split, 16-frame groups)
            of the trained tiny model on every test track
Then fits log(value) = a + b log(frames) per stage: b is the growth exponent (b <= 1: at most
linear), and the same for evaluation memory against the gallery size. Each stage's peak RSS
includes the Python + TensorFlow baseline (about 0.5 GB for the TF stages), so exponents of
small sizes understate the marginal growth; `rss_mb_per_1k_frames` is the slope of a linear fit.

    PYTHONPATH=. python tools/bench_growth.py --sizes=2000,10000
    PYTHONPATH=. nice -n 5 python tools/bench_growth.py --sizes=2000,10000,50000 --render=noise
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS

TINY = dict(filters=(8, 8, 8), embed_dim=32, dropout=0.0)


def _store(root: str, cache: str):
    from keras_crf_reid.datasets.mars import load_mars
    from keras_crf_reid.datasets.store import TrackletStore
    dataset = load_mars(root)
    return dataset, TrackletStore(dataset, cache)


def run_stage(stage: str, root: str, work: str, steps: int = 200, seq_len: int = 4,
              batch_size: int = 4) -> dict:
    """Runs one stage in this process; returns its figures (no timing: the caller times it)."""
    cache, model_dir = os.path.join(work, "cache"), os.path.join(work, "model")
    if stage == "read":
        from keras_crf_reid.datasets.mars import load_mars
        ds = load_mars(root)
        split = ds.fixed_splits[0]
        return {"tracklets": len(ds.tracklets), "frames": ds.stats()["frames"],
                "train": len(split.train), "query": len(split.query), "gallery": len(split.gallery)}
    dataset, store = _store(root, cache)
    if stage == "cache":
        store.build(progress=False)
        size = sum(os.path.getsize(os.path.join(store.dir, f)) for f in os.listdir(store.dir))
        return {"cache_bytes": size, "cache_bytes_per_frame": round(size / store.lengths().sum())}
    import tensorflow as tf
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    split = dataset.fixed_splits[0]
    model = build_crf_model(ModelConfig(**TINY))
    if stage == "train":
        from keras_crf_reid.datasets.pipeline import PairConfig, PairSampler, replica_pairs
        from keras_crf_reid.training.trainer import TrainConfig, Trainer
        shutil.rmtree(model_dir, ignore_errors=True)
        pairs = PairConfig(seq_len=seq_len, batch_size=batch_size, seed=0)
        sampler = PairSampler(store, split.train, pairs)
        trainer = Trainer(model, sampler.num_classes,
                          TrainConfig(steps=steps, ckpt_every=steps, log_every=steps), model_dir)
        stats = trainer.fit(lambda start, ctx: replica_pairs(store, split.train, pairs, start, ctx),
                            pairs.batch_size, progress=False)
        return {"steps": trainer.current_step, "loss": round(float(stats.get("total", np.nan)), 4)}
    if stage == "evaluate":
        from keras_crf_reid.evaluation.protocol import compiled_embedder, evaluate_split
        tf.train.Checkpoint(model=model).restore(
            tf.train.latest_checkpoint(os.path.join(model_dir, "ckpt"))).expect_partial()
        metrics = evaluate_split(compiled_embedder(model), store, split)
        return {"rank1": round(metrics["rank1"], 4), "mAP": round(metrics["mAP"], 4),
                "query": len(split.query), "gallery": len(split.gallery)}
    raise ValueError(f"--stage: unknown stage {stage!r}")


def _timed_child(argv: list[str]) -> dict:
    """Runs argv; returns its last JSON line plus wall_s, cpu_s and peak_rss_mb (os.wait4 rusage).

    CPU seconds (user + system) are what load on a shared machine disturbs least.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(argv[1:4])} failed:\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    return {**result, "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _fit(xs, ys) -> float | None:
    """Exponent b of y = a x^b (least squares in log-log)."""
    if len(xs) < 2:
        return None
    return round(float(np.polyfit(np.log(xs), np.log(ys), 1)[0]), 2)


def main(argv):
    del argv
    if FLAGS.stage:
        print(json.dumps(run_stage(FLAGS.stage, FLAGS.root, FLAGS.work_dir, FLAGS.steps,
                                   FLAGS.seq_len, FLAGS.batch_size)))
        return
    from keras_crf_reid.datasets.mars_synthetic import generate_mars_synthetic
    sizes = sorted(int(s) for s in FLAGS.sizes)
    base = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_growth_")
    out: dict = {"benchmark": "growth", "render": FLAGS.render, "steps": FLAGS.steps,
                 "train_batch": f"{FLAGS.batch_size} pairs x {FLAGS.seq_len} frames, tiny model",
                 "cpus": len(os.sched_getaffinity(0)), "loadavg_1m_start": round(os.getloadavg()[0], 2),
                 "sizes": {}}
    try:
        for size in sizes:
            work = os.path.join(base, f"mars_{size}_{FLAGS.render}")
            t0 = time.perf_counter()
            root = generate_mars_synthetic(work, size, render=FLAGS.render)
            row = {"generate_s": round(time.perf_counter() - t0, 1)}
            shutil.rmtree(os.path.join(work, "cache"), ignore_errors=True)
            for stage in FLAGS.stages:
                row[stage] = _timed_child([
                    sys.executable, os.path.abspath(__file__), f"--stage={stage}", f"--root={root}",
                    f"--work_dir={work}", f"--steps={FLAGS.steps}", f"--seq_len={FLAGS.seq_len}",
                    f"--batch_size={FLAGS.batch_size}"])
                print(json.dumps({"size": size, "stage": stage, **row[stage]}), file=sys.stderr)
            out["sizes"][str(size)] = row
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(base, ignore_errors=True)
    rows = list(out["sizes"].values())
    frames = [r["read"]["frames"] for r in rows if "read" in r]
    if len(frames) == len(rows):
        growth = {}
        for stage in FLAGS.stages:
            t = [r[stage]["wall_s"] for r in rows]
            c = [r[stage]["cpu_s"] for r in rows]
            m = [r[stage]["peak_rss_mb"] for r in rows]
            growth[stage] = {"time_exponent": _fit(frames, t), "cpu_exponent": _fit(frames, c),
                             "rss_exponent": _fit(frames, m)}
            if len(rows) > 1:
                growth[stage]["rss_mb_per_1k_frames"] = round(
                    float(np.polyfit(np.asarray(frames) / 1000, m, 1)[0]), 2)
        if "evaluate" in FLAGS.stages:
            gallery = [r["evaluate"]["gallery"] for r in rows]
            growth["evaluate"]["rss_exponent_in_gallery"] = _fit(
                gallery, [r["evaluate"]["peak_rss_mb"] for r in rows])
        out["growth"] = growth
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def _define_flags() -> None:
    # Defined only when run as a program, so tests can import run_stage without global flags.
    flags.DEFINE_list("sizes", ["2000", "10000"], "Dataset sizes in frames.")
    flags.DEFINE_list("stages", ["read", "cache", "train", "evaluate"], "Stages to run, in order.")
    flags.DEFINE_integer("steps", 200, "Training steps of the train stage.")
    flags.DEFINE_integer("seq_len", 4, "Frames per training sequence.")
    flags.DEFINE_integer("batch_size", 4, "Pairs per training batch.")
    flags.DEFINE_enum("render", "person", ["person", "noise"], "Frames of the generated dataset.")
    flags.DEFINE_string("work_dir", "", "Keep datasets and caches here (default: a temp folder).")
    flags.DEFINE_string("stage", "", "Internal: run this one stage in this process.")
    flags.DEFINE_string("root", "", "Internal: MARS folder of the stage.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
