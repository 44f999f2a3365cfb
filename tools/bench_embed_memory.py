"""Peak memory of `keras_crf_reid.load(model).embed(folder)` by folder length; prints one JSON line.

For each --lengths value N, a fresh subprocess loads --model and embeds one folder of N
synthetic 128x64 frames; its peak RSS (ru_maxrss: the process's whole life, TensorFlow and the
model included) is reported with the time the embed took and the growth over the shortest
folder's peak. `embed` streams one batch of groups at a time, so the growth should stay flat
however long the folder is (issue 29: within +300 MB of the one-frame peak).

    python tools/bench_embed_memory.py [--model=saved_models/crf_mars_sample --lengths=1,16,250,2000]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags
from bench_util import peak_rss_mb, write_frames

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "saved_models/crf_mars_sample", "Model to load: a SavedModel base path "
                    "or version folder, or a .keras file.")
flags.DEFINE_list("lengths", ["1", "16", "250", "2000"], "Folder lengths in frames, one subprocess each.")
flags.DEFINE_integer("call_frames", None, "Frames per model call of embed (default: load()'s).",
                     lower_bound=1)
flags.DEFINE_string("folder", None, "Internal: embed this folder in this process and print its figures.")
flags.DEFINE_float("max_growth_mb", 300.0, "Exit non-zero if a folder's peak exceeds the shortest "
                   "one's by more than this.")






def embed_once(model: str, folder: str) -> dict:
    """Loads the model and embeds the folder in this process: peak RSS and seconds."""
    import keras_crf_reid

    embedder = keras_crf_reid.load(model, call_frames=FLAGS.call_frames)
    loaded = peak_rss_mb()
    t0 = time.perf_counter()
    vector = embedder.embed(folder)
    return {"frames": len(os.listdir(folder)), "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb_loaded": loaded, "peak_rss_mb": peak_rss_mb(), "embed_dim": int(vector.shape[-1]),
            "group_len": embedder.group_len, "call_frames": embedder.call_frames,
            "groups_per_call": embedder.group_batch}


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    if FLAGS.folder:
        print(json.dumps(embed_once(FLAGS.model, FLAGS.folder)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-embed-memory-") as tmp:
        for n in sorted(int(v) for v in FLAGS.lengths):
            folder = write_frames(os.path.join(tmp, f"frames_{n}"), n)
            cmd = [sys.executable, os.path.abspath(__file__), f"--model={FLAGS.model}", f"--folder={folder}"]
            if FLAGS.call_frames is not None:
                cmd.append(f"--call_frames={FLAGS.call_frames}")
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"embedding {n} frames failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["growth_mb"] = round(row["peak_rss_mb"] - base, 1)
    worst = max(r["growth_mb"] for r in rows)
    print(json.dumps({"benchmark": "embed_memory", "model": FLAGS.model, "by_length": rows,
                      "max_growth_mb": worst, "bound_mb": FLAGS.max_growth_mb,
                      "loadavg_1m": round(os.getloadavg()[0], 2)}))
    if worst > FLAGS.max_growth_mb:
        raise SystemExit(f"peak RSS grew by {worst} MB over the shortest folder's > {FLAGS.max_growth_mb}")


if __name__ == "__main__":
    app.run(main)
