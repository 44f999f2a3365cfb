"""Find this person in this video: tracks the video (re-id appearance), embeds every track's
crops as a tracklet and ranks the tracks by distance to the query tracklet.

    python -m keras_crf_reid.find_person --query=QUERY_FOLDER --video=vtest.avi \
        --detections=det.txt --out=runs/find [--model=saved_models/crf_mars] [--top_k=5]
    python -m keras_crf_reid.find_person --query=QUERY_FOLDER --video=V --detector=hog \
        --out=runs/find

Writes OUT/tracks.txt and OUT/tracklets/ (as keras_crf_reid.track), OUT/find_person.json and
OUT/find_person.md (ranked tracks with distance and frame range) and OUT/find_person.png (the
query, then the best tracks' middle frames). With --truth=gt.txt --truth_id=N a track counts
as the person when most of its boxes overlap N's ground-truth boxes (IoU >= 0.5): green/red
borders in the picture, and `is_person` in the results.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
from absl import app, flags

from keras_crf_reid import cli
from keras_crf_reid.track import define_tracking_flags, run_tracking



def define_flags() -> None:
    """The tracking flags plus the query's (defined when run as a program, not on import)."""
    define_tracking_flags()
    flags.DEFINE_string("query", None, "Folder of the person's crops (one tracklet folder, or a "
                        "folder of tracklet folders: each is ranked).")
    flags.DEFINE_integer("top_k", 5, "Tracks reported and pictured.", lower_bound=1)
    flags.DEFINE_boolean("rerank", False, "k-reciprocal re-ranking of query-track distances.")
    flags.DEFINE_string("truth", None, "Optional ground-truth MOT file to mark the right tracks.")
    flags.DEFINE_integer("truth_id", None, "The query person's id in --truth.")
    flags.mark_flag_as_required("query")


FLAGS = flags.FLAGS


def _is_person(tracks, track_id: int, truth, truth_id: int) -> bool:
    from keras_crf_reid.tracking.tracker import iou_matrix
    mine = tracks.subset(np.flatnonzero(tracks.id == track_id))
    gt = truth.subset(np.flatnonzero(truth.id == truth_id))
    hits = 0
    for f, box in zip(mine.frame, mine.boxes):
        g = gt.boxes[gt.frame == f]
        hits += bool(len(g)) and bool(iou_matrix(box[None], g).max() >= 0.5)
    return bool(hits * 2 > len(mine))


def find_person(f=FLAGS) -> dict:
    """Tracks, ranks and writes the outputs; returns the JSON written."""
    import keras_crf_reid
    from keras_crf_reid.atomic import write_atomic
    from keras_crf_reid.datasets import list_images
    from keras_crf_reid.datasets.frames import read_frames
    from keras_crf_reid.evaluation import plots
    from keras_crf_reid.serving import search
    from keras_crf_reid.tracking.detections import read_mot
    from keras_crf_reid.tracking.pipeline import TRACKLETS_DIR

    if (f.truth is None) != (f.truth_id is None):
        raise ValueError("--truth and --truth_id go together")
    search.find_tracklets(f.query)  # a bad query folder fails before the long tracking
    embedder = keras_crf_reid.load(f.model)
    tracked = run_tracking(f, embedder)
    gallery = os.path.join(f.out, TRACKLETS_DIR)
    ranked = search.search(embedder, f.model, gallery, f.query, f.top_k, progress=True,
                           rerank=f.rerank)
    truth = read_mot(f.truth) if f.truth else None
    for r in ranked["results"]:
        for m in r["matches"]:
            tid = int(m["tracklet"])
            m["track"] = tid
            m["first_frame"], m["last_frame"] = tracked["frame_ranges"][tid]
            m["frames"] = int((tracked["tracks"].id == tid).sum())
            if truth is not None:
                m["is_person"] = _is_person(tracked["tracks"], tid, truth, f.truth_id)
    out = {"video": os.path.abspath(f.video), "query": os.path.abspath(f.query),
           "model": embedder.source, "num_tracks": tracked["num_tracks"], "rerank": f.rerank,
           "results": ranked["results"]}
    write_atomic(os.path.join(f.out, "find_person.json"), json.dumps(out, indent=1))
    lines = []
    for r in out["results"]:
        lines += [f"## query {r['query']}", "", "| rank | track | distance | frames | first | last |"
                  + (" person |" if truth is not None else ""),
                  "|---:|---:|---:|---:|---:|---:|" + ("---|" if truth is not None else "")]
        lines += [f"| {m['rank']} | {m['track']} | {m['distance']:.3f} | {m['frames']} | "
                  f"{m['first_frame']} | {m['last_frame']} |"
                  + (f" {'yes' if m['is_person'] else 'no'} |" if truth is not None else "")
                  for m in r["matches"]]
        lines.append("")
    write_atomic(os.path.join(f.out, "find_person.md"), "\n".join(lines))

    def frames(root: str, name: str) -> np.ndarray:
        return read_frames(list_images(root if name == "." else os.path.join(root, name)))[0]

    plots.plot_ranked_results(
        [frames(f.query, r["query"]) for r in out["results"]],
        [[frames(gallery, m["tracklet"]) for m in r["matches"]] for r in out["results"]],
        [[m.get("is_person") for m in r["matches"]] for r in out["results"]],
        os.path.join(f.out, "find_person.png"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        out = find_person(FLAGS)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    for r in out["results"]:
        print(f"query {r['query']}:")
        for m in r["matches"]:
            print(f"  {m['rank']}. track {m['track']}  distance {m['distance']:.3f}  frames "
                  f"{m['first_frame']}-{m['last_frame']} ({m['frames']})")
    print(f"written to {FLAGS.out}/find_person.json, .md and .png")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
