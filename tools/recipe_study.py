"""A recipe study: named settings over the same runner, one results row each (issue 11).

    python tools/recipe_study.py --flagfile_base=pipelines/mars_sample_screen.flags \
        --settings=ref,flow_std,batch_norm --study=mars_screen

Each setting is `python -m keras_crf_reid.train --flagfile=BASE <setting flags>
--name=<study>_<setting>` (resumable: finished splits are skipped on a rerun), followed, for
settings with `eval_tta`, by an evaluation of the same checkpoints with --tta. The table
(mean ± std over the splits of rank-1/5/20 and mAP, the report's baseline row on the same
splits, wall time) is printed and written to runs/<study>.md and runs/<study>.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

SETTINGS: dict[str, list[str]] = {
    "ref": [],
    "flow_std": ["--flow_norm=frame_std"],
    "batch_norm": ["--batch_norm"],
    "adam_cosine": ["--learning_rate=1e-3", "--lr_schedule=cosine", "--warmup_steps=60"],
    "sgd_cosine": ["--optimizer=sgd", "--learning_rate=1e-2", "--momentum=0.9",
                   "--lr_schedule=cosine", "--warmup_steps=60"],
    "strong_aug": ["--random_erase=0.5", "--color_jitter=0.2", "--min_crop_scale=0.7"],
    "dropout_0.2": ["--dropout=0.2"],
    "pairs_32": ["--batch_size=32"],
    "steps_1200": ["--steps=1200"],
    "bn_flow_std": ["--batch_norm", "--flow_norm=frame_std"],
    "bn_flow_std_aug": ["--batch_norm", "--flow_norm=frame_std", "--random_erase=0.5",
                        "--min_crop_scale=0.7"],
}

flags.DEFINE_string("flagfile_base", "pipelines/mars_sample_screen.flags", "Flags every setting shares.")
flags.DEFINE_list("settings", ["ref"], f"Settings to run, of: {', '.join(SETTINGS)}.")
flags.DEFINE_list("tta_for", [], "Settings whose checkpoints are also evaluated with --tta.")
flags.DEFINE_string("study", "mars_screen", "Study name: runs/<study>_<setting>, runs/<study>.md.")
flags.DEFINE_list("extra", [], "Flags added to every setting (e.g. --parts=full,upper,lower).")
FLAGS = flags.FLAGS
METRICS = ("rank1", "rank5", "rank20", "mAP")


def _train(setting: str) -> tuple[dict, float]:
    name = f"{FLAGS.study}_{setting}"
    cmd = [sys.executable, "-m", "keras_crf_reid.train", f"--flagfile={FLAGS.flagfile_base}",
           *SETTINGS[setting], *FLAGS.extra, f"--name={name}"]
    t0 = time.time()
    log = os.path.join("runs", f"{name}.log")
    os.makedirs("runs", exist_ok=True)
    with open(log, "a") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{setting}: training failed ({done.returncode}); see {log}")
    with open(os.path.join("runs", name, "results.json")) as f:
        return json.load(f), time.time() - t0


def _tta(setting: str, splits: list[int]) -> dict:
    name = f"{FLAGS.study}_{setting}"
    per = []
    for s in splits:
        cmd = [sys.executable, "-m", "keras_crf_reid.evaluate", f"--flagfile={FLAGS.flagfile_base}",
               *SETTINGS[setting], *FLAGS.extra, "--tta", f"--splits={s}",
               f"--checkpoint=runs/{name}/split_{s}/full/ckpt"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{setting} --tta split {s}: {out.stderr[-1500:]}")
        per.append(json.loads(out.stdout[out.stdout.index("{"):]))
    return {m: {"mean": float(np.mean([p[m] for p in per])),
                "std": float(np.std([p[m] for p in per], ddof=1)) if len(per) > 1 else 0.0}
            for m in METRICS}


def _cell(r: dict) -> str:
    return f"{r['mean']:.1f} ± {r['std']:.1f}"


def main(argv) -> None:
    unknown = [s for s in FLAGS.settings + FLAGS.tta_for if s not in SETTINGS]
    if unknown:
        raise app.UsageError(f"--settings/--tta_for: unknown {unknown}; known: {', '.join(SETTINGS)}")
    rows, table = [], ["| Setting | flags | Rank-1 | Rank-5 | Rank-20 | mAP | baseline Rank-1 | "
                       "wall s |", "|:---|:---|---:|---:|---:|---:|---:|---:|"]
    for setting in FLAGS.settings:
        res, wall = _train(setting)
        crf = next(v for k, v in res["results"].items() if k.startswith("CRF"))
        hist = next((v for k, v in res["results"].items() if k.endswith(" baseline")),
                    {}).get("rank1")
        splits = [t["split"] for t in res["extra"]["train"]]
        row = {"setting": setting, "flags": SETTINGS[setting] + FLAGS.extra, "crf": crf,
               "hist_rank1": hist, "wall_s": wall, "splits": sorted(set(splits))}
        rows.append(row)
        table.append(f"| {setting} | {' '.join(row['flags']) or '(base)'} | "
                     + " | ".join(_cell(crf[m]) for m in METRICS)
                     + f" | {_cell(hist) if hist else '-'} | {wall:.0f} |")
        print(table[-1], flush=True)
        if setting in FLAGS.tta_for:
            tta = _tta(setting, row["splits"])
            rows.append({"setting": f"{setting}+tta", "crf": tta})
            table.append(f"| {setting} + TTA | {' '.join(row['flags'])} --tta | "
                         + " | ".join(_cell(tta[m]) for m in METRICS) + " | | |")
            print(table[-1], flush=True)
    text = "\n".join(table) + "\n"
    print(text)
    with open(os.path.join("runs", f"{FLAGS.study}.md"), "a") as f:
        f.write(text)
    with open(os.path.join("runs", f"{FLAGS.study}.json"), "a") as f:
        f.write(json.dumps(rows) + "\n")


if __name__ == "__main__":
    app.run(main)
