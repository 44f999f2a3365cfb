"""Synthetic two-camera pedestrian sequences in the PRID-2011 folder layout.

Each identity is a cartoon walker with a fixed appearance (clothing colours from a small shared
palette, a clothing texture, body shape, hair, bag, shoes) and a fixed gait (stride frequency,
leg and arm swing). Colours come from so few palette entries that many identities wear the same
colours in a different arrangement, and both cameras apply strong, partly random illumination
and colour changes, so global colour statistics are a weak cue: recognising a person needs the
spatial layout of colours, textures, shape and motion, which is what the CRF network learns.

The cameras also differ in background (a fixed textured scene per camera, of similar neutral
materials, seen through a different window by each sequence), scale, vertical placement, walking
direction (cam_b is mirrored), blur, noise and occlusion (poles, boxes). Everything is drawn
with NumPy and OpenCV from generators seeded by (seed, person, stream), so a dataset is
byte-identical for a given set of parameters.

Difficulty is calibrated against `keras_crf_reid.evaluation.baseline`: on 100 identities (50 tested)
a nearest-neighbour match of colour-standardised histograms or pixels reaches about 20% rank-1
(chance 2%), raw colour histograms stay at chance, while a small CRF network trained for a minute on
CPU clearly beats both. The camera backdrops share neutral materials so that colour histograms stay
a weak but real cue rather than one defeated by disjoint background colours.

Layout written: out_root/cam_{a,b}/person_XXXX/NNNN.png (1-based, 4 digits) and
out_root/manifest.json holding the generation parameters.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import sys
import uuid

import cv2
from absl import app, flags
from tqdm import tqdm

from keras_crf_reid import cli
from keras_crf_reid.configs.synthetic import SyntheticConfig
from keras_crf_reid.datasets.base import DatasetError
from keras_crf_reid.datasets.synthetic_render import CAMERAS, render_sequence  # noqa: F401 (re-exported)
from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH

GENERATOR_NAME = "keras_crf_reid.datasets.synthetic"
# Bumped whenever the drawing changes, so an old dataset is not silently taken for a new one.
GENERATOR_VERSION = 2
MANIFEST = "manifest.json"


def _write_person(args: tuple[str, int, int, int, int]) -> int:
    tmp_root, seed, pid, min_len, max_len = args
    for cam in CAMERAS:
        folder = os.path.join(tmp_root, cam, f"person_{pid:04d}")
        os.makedirs(folder, exist_ok=True)
        for i, frame in enumerate(render_sequence(seed, pid, cam, min_len, max_len), start=1):
            ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"{folder}: PNG encoding failed")
            with open(os.path.join(folder, f"{i:04d}.png"), "wb") as f:
                f.write(buf.tobytes())
    return pid


def _manifest_params(num_ids: int, seed: int, min_len: int, max_len: int) -> dict:
    return {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "num_ids": num_ids,
            "seed": seed, "min_len": min_len, "max_len": max_len,
            "height": FRAME_HEIGHT, "width": FRAME_WIDTH}


def _read_manifest(out_root: str) -> dict | None:
    path = os.path.join(out_root, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable synthetic-dataset manifest ({e})") from e


def _check_existing(out_root: str, params: dict) -> bool:
    """True if out_root already holds this exact dataset; raises if it holds anything else."""
    if not os.path.exists(out_root):
        return False
    if not os.path.isdir(out_root):
        raise DatasetError(f"{out_root}: exists and is not a directory")
    found = _read_manifest(out_root)
    if found is None:
        if os.listdir(out_root):
            raise DatasetError(f"{out_root}: folder exists, is not empty and has no {MANIFEST}; "
                               "refusing to write a synthetic dataset into it")
        return False
    if found.get("generator") == GENERATOR_NAME and found.get("version") != GENERATOR_VERSION:
        raise DatasetError(f"{out_root}: holds a synthetic dataset made by generator version "
                           f"{found.get('version')}, this is version {GENERATOR_VERSION}; delete "
                           "the folder to regenerate it, or choose another folder")
    if found != params:
        diff = {k: (found.get(k), v) for k, v in params.items() if found.get(k) != v}
        raise DatasetError(f"{out_root}: holds a synthetic dataset generated with different "
                           f"parameters (existing, requested): {diff}; choose another folder "
                           "or delete this one")
    return True


def generate_synthetic(out_root: str, num_ids: int = 100, seed: int = 0, min_len: int = 8,
                       max_len: int = 48, workers: int = 1, progress: bool = True) -> str:
    """Writes a synthetic two-camera dataset to out_root (PRID-2011 layout); returns out_root.

    Idempotent: returns at once if out_root already holds a dataset with these parameters, and
    raises DatasetError if it holds one with other parameters. Frames are written into a
    temporary sibling folder that is renamed into place when complete, so a partially written
    dataset is never visible under out_root.
    """
    if not 1 <= num_ids <= 9999:
        raise ValueError(f"num_ids must be in [1, 9999], got {num_ids}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not 1 <= min_len <= max_len <= 9999:
        raise ValueError(f"need 1 <= min_len <= max_len <= 9999, got min_len={min_len}, "
                         f"max_len={max_len}")
    out_root = os.path.abspath(out_root)
    params = _manifest_params(int(num_ids), int(seed), int(min_len), int(max_len))
    if _check_existing(out_root, params):
        return out_root
    parent = os.path.dirname(out_root)
    os.makedirs(parent, exist_ok=True)
    tmp_root = os.path.join(parent, f".{os.path.basename(out_root)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        jobs = [(tmp_root, params["seed"], pid, params["min_len"], params["max_len"])
                for pid in range(1, num_ids + 1)]
        bar = _progress_bar(num_ids, out_root) if progress else None
        if workers > 1:
            with concurrent.futures.ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_person, jobs, chunksize=4):
                    if bar is not None:
                        bar.update(1)
        else:
            for job in jobs:
                _write_person(job)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        with open(os.path.join(tmp_root, MANIFEST), "w") as f:
            json.dump(params, f, indent=1, sort_keys=True)
        if os.path.isdir(out_root) and not os.listdir(out_root):
            os.rmdir(out_root)
        try:
            os.rename(tmp_root, out_root)
        except OSError:
            # Another process finished the same dataset first: accept it if it matches.
            if not _check_existing(out_root, params):
                raise
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return out_root


def _progress_bar(total: int, out_root: str) -> tqdm:
    return tqdm(total=total, desc=f"synthetic -> {out_root}", unit="id", file=sys.stderr)


def main(argv: list[str]) -> int:
    """`python -m keras_crf_reid.datasets.synthetic`: writes a dataset, prints its folder."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        cfg = cli.from_flags(SyntheticConfig, flags.FLAGS)
        out = generate_synthetic(cfg.out, num_ids=cfg.num_ids, seed=cfg.seed, min_len=cfg.min_len,
                                 max_len=cfg.max_len, workers=cfg.workers, progress=True)
    except (ValueError, OSError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    print(out)
    return 0


if __name__ == "__main__":
    cli.define_flags(SyntheticConfig)  # only as a program: importing adds no global flags
    cli.run(main)
