"""The one runner: config -> data -> every split of every row -> report -> export.

`train.py` hands it the config built from flags; a plain run and the paper's ablation differ
only in their rows (runner.ablation). Every run writes `<output_dir>/<name>/`:

    settings.json     the result-changing settings (a resumed run must match them)
    splits.json       all splits of the dataset
    split_<k>/...     per-split checkpoints, metrics.json, distances.npz (runner.split)
    flags.json, per_split.json, results.json, results.md, cmc.png, ranked_*.png
    model.keras       the final model (fusion, else the full-body model) of the first split

and exports that model to `saved_models/<name>/<version>` with the evaluation group length.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import os
import sys
import time
from typing import Sequence

import numpy as np

from keras_crf_reid import cli
from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.configs.experiment import ExperimentConfig, replace
from keras_crf_reid.datasets import save_splits
from keras_crf_reid.models.factory import FUSION, restore_checkpoint
from keras_crf_reid.runlock import run_lock
from keras_crf_reid.runner.ablation import Row, split_jobs, table_rows
from keras_crf_reid.runner.data import RunData, prepare
from keras_crf_reid.runner.split import (BASELINE, DISTANCES_FILE, missing_entries, read_split,
                                         run_split, split_dir)

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"


def check_settings(cfg: ExperimentConfig) -> None:
    """Refuses to resume a run folder written with other result-changing settings."""
    path = os.path.join(cfg.run_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({e}); delete it or use another --name")
    new = cli.flag_dict(cfg, fixed_only=True)
    diff = sorted(k for k in new if k in old and old[k] != new[k])
    if diff:
        shown = ", ".join(f"--{k} (was {old.get(k)!r}, now {new.get(k)!r})" for k in diff)
        raise ValueError(f"{cfg.run_dir}: this run was started with other settings: {shown}; "
                         f"rerun with the original flags to resume, or choose another --name")


def set_threads(threads: int) -> None:
    """Limits TensorFlow's thread pools (only possible before TensorFlow has run an op)."""
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning("TensorFlow already initialised; keeping its thread pools (wanted %d)", threads)


def default_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def run_one_split(cfg: ExperimentConfig, data: RunData, split_id: int, strategy=None,
                  write: bool = True) -> None:
    """Every row's missing entries of one split."""
    for job_cfg, entries in split_jobs(table_rows(cfg)):
        run_split(job_cfg, data, split_id, entries, strategy, write)


def _split_worker(cfg: ExperimentConfig, split_id: int, threads: int, log_path: str) -> float:
    """Runs one split in a spawned process, its output going to `log_path`; returns seconds."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    logging.basicConfig(level=logging.INFO)
    set_threads(threads)
    t0 = time.time()
    run_one_split(cfg, prepare(cfg.data, progress=False), split_id)
    return time.time() - t0


def _pending(cfg: ExperimentConfig, data: RunData, split_ids: Sequence[int]) -> list[int]:
    jobs = split_jobs(table_rows(cfg))
    out = []
    for s in split_ids:
        if any(missing_entries(c, data, s, entries) for c, entries in jobs):
            out.append(s)
        else:
            log.info("split %d: finished earlier, skipped", s)
    return out


def run_splits(cfg: ExperimentConfig, data: RunData, split_ids: Sequence[int], strategy,
               chief: bool = True) -> None:
    """Computes every unfinished split, --workers at a time (spawned processes)."""
    pending = _pending(cfg, data, split_ids)
    workers, threads = cfg.run.workers, cfg.run.threads or default_threads(cfg.run.workers)
    if workers <= 1 or len(pending) <= 1:
        if pending and cfg.run.threads:
            set_threads(threads)
        for s in pending:
            run_one_split(cfg, data, s, strategy, write=chief)
        return
    # each process's pipelines use its share of the cores, not all of them (AUTOTUNE)
    parallel = cfg.pairs.num_parallel_calls if cfg.pairs.num_parallel_calls > 0 else threads
    wcfg = replace(cfg, run={"progress": False}, pairs={"num_parallel_calls": parallel})
    failed = {}
    ctx = multiprocessing.get_context("spawn")
    logs = {s: os.path.join(split_dir(cfg, s), "worker.log") for s in pending}
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(pending)), mp_context=ctx,
                                                max_tasks_per_child=1) as pool:
        futures = {pool.submit(_split_worker, wcfg, s, threads, logs[s]): s for s in pending}
        log.info("running splits %s in %d processes, %d thread(s) each; logs: "
                 "%s/split_<k>/worker.log", pending, min(workers, len(pending)), threads, cfg.run_dir)
        for fut in concurrent.futures.as_completed(futures):
            s = futures[fut]
            try:
                log.info("split %d: done in %.0f s", s, fut.result())
            except Exception as e:  # noqa: BLE001  (reported per split below)
                failed[s] = f"{type(e).__name__}: {e}"
                log.error("split %d: FAILED (%s); see %s", s, failed[s], logs[s])
    if failed:
        raise RuntimeError(f"splits {sorted(failed)} failed: {failed}; rerun the same command to "
                           f"resume them")


def fusion_weights_table(per_split: dict[int, dict]) -> str:
    """Markdown table of the learned W_u, W_l, W_g per split, mean ± std, and their shares.

    Only the ratios matter for ranking (a common factor scales all distances alike), so the
    last line gives each weight divided by the sum of the three, averaged over splits.
    """
    parts = ("upper", "lower", "full")
    lines = ["| Split | W_u (upper) | W_l (lower) | W_g (full) |", "|:---|---:|---:|---:|"]
    for s, w in per_split.items():
        lines.append(f"| {s} | " + " | ".join(f"{w[p]:.3f}" for p in parts) + " |")
    arr = np.array([[w[p] for p in parts] for w in per_split.values()])
    if len(per_split) > 1:
        lines.append("| mean ± std | " + " | ".join(
            f"{m:.3f} ± {sd:.3f}" for m, sd in zip(arr.mean(0), arr.std(0, ddof=1))) + " |")
    share = (arr / arr.sum(1, keepdims=True)).mean(0)
    lines.append("| share (W / sum W) | " + " | ".join(f"{v:.3f}" for v in share) + " |")
    return "\n".join(lines) + "\n"


def write_report(cfg: ExperimentConfig, data: RunData, split_ids: Sequence[int]) -> dict:
    """Tables, JSON, CMC curves and the ranked-results picture from the per-split files."""
    from keras_crf_reid.evaluation import plots, report
    rows = table_rows(cfg)
    configs = [c for c, _ in split_jobs(rows)]  # one per run folder
    results = {(c.run_dir, s): read_split(c, data, s) for c in configs for s in split_ids}
    per_split = {r.title: [results[r.config.run_dir, s]["entries"][r.entry] for s in split_ids]
                 for r in rows}
    fusion_rows = [r for r in rows if r.entry == FUSION]
    weights = {s: results[fusion_rows[0].config.run_dir, s]["fusion_weights"]
               for s in split_ids} if fusion_rows else {}
    extra = {
        "rows": [r.title for r in rows],
        "fusion_weights": [{"split": s, **w} for s, w in weights.items()],
        "train": [{"split": s, "run": os.path.relpath(c.run_dir, cfg.run_dir), **t}
                  for c in configs for s in split_ids
                  for t in results[c.run_dir, s]["train"]],
        "seconds_per_split": {s: sum(results[c.run_dir, s]["seconds"] for c in configs)
                              for s in split_ids},
    }
    if weights:
        arr = np.array([[w[p] for p in ("upper", "lower", "full")] for w in weights.values()])
        share = (arr / arr.sum(1, keepdims=True)).mean(0)
        extra["fusion_weights_mean"] = dict(zip(("upper", "lower", "full"), arr.mean(0).tolist()))
        extra["fusion_weights_share"] = dict(zip(("upper", "lower", "full"), share.tolist()))
    title = (f"Ablation on {data.dataset.name}: {len(split_ids)} split(s)" if cfg.run.rows
             else None)
    written = report.write_run_report(cfg.run_dir, cfg.flags(), os.path.join(cfg.run_dir, "splits.json"),
                                      per_split, extra, title=title)
    with open(written["markdown"]) as f:
        markdown = f.read()
    if weights:
        markdown += "\nLearned fusion weights:\n\n" + fusion_weights_table(weights)
        write_atomic(written["markdown"], markdown)
    curves = {title: np.mean([m["cmc"] for m in ms], 0) for title, ms in per_split.items()
              if "cmc" in ms[0]}
    written["cmc_png"] = plots.plot_cmc_curves(
        curves, os.path.join(cfg.run_dir, "cmc.png"),
        title=f"{data.dataset.name}: mean CMC over {len(split_ids)} split(s)")
    shown = ranked_row(rows, per_split)
    if shown is not None:
        s = 0 if 0 in split_ids else split_ids[0]
        with np.load(os.path.join(split_dir(shown.config, s), DISTANCES_FILE)) as d:
            dist = d[shown.entry]
        name = f"ranked_{shown.config.model.variant}_{shown.entry}_split{s}.png" if cfg.run.rows \
            else f"ranked_split{s}.png"
        written["ranked_png"] = plots.plot_ranked_split(
            dist, data.dataset, data.splits[s], os.path.join(cfg.run_dir, name),
            cfg.eval.ranked_queries, cfg.eval.ranked_top_k)
    return {"markdown_text": markdown, **written}


def ranked_row(rows: list[Row], per_split: dict[str, list[dict]]) -> Row | None:
    """The row pictured in the ranked results: the fusion, else the best mean rank-1 model."""
    models = [r for r in rows if r.entry != BASELINE]
    fusion = [r for r in models if r.entry == FUSION]
    if fusion:
        return fusion[0]
    return max(models, key=lambda r: np.mean([m["rank1"] for m in per_split[r.title]]),
               default=None)


def final_model_entry(cfg: ExperimentConfig) -> str | None:
    """What a plain run exports: the fusion, else the full-body model (None otherwise)."""
    if cfg.run.rows:
        return None
    return FUSION if cfg.fuses else ("full" if "full" in cfg.parts else None)


def export_final(cfg: ExperimentConfig, split_id: int) -> dict:
    """Saves the first split's final model as model.keras and exports it (unless --export=false)."""
    from keras_crf_reid.models.tta import scored_model
    from keras_crf_reid.serving.export import export_saved_model
    entry = final_model_entry(cfg)
    if entry is None:
        return {}
    model = scored_model(restore_checkpoint(
        os.path.join(split_dir(cfg, split_id), entry, "ckpt"), cfg.model, entry), cfg.eval.tta,
        cfg.model.colour_norm)
    out = {"keras_model": os.path.join(cfg.run_dir, "model.keras")}
    model.save(out["keras_model"])
    if cfg.run.export:
        base = cfg.run.model_base_path or os.path.join("saved_models", cfg.run.name)
        out["export"] = export_saved_model(model, base, group_len=cfg.eval.seq_len,
                                           colour_norm=cfg.model.colour_norm)
    return out


def run(cfg: ExperimentConfig) -> dict:
    """Runs (or resumes) the experiment; returns the report's paths and the markdown text.

    Holds the run folder's lock (runlock) throughout, so a second run with the same --name and
    --output_dir is refused naming this one's pid; the processes of a multi-worker cluster and
    --worker_mode runs share the folder by design and take no lock.
    """
    if cfg.run.worker_mode or cfg.run.strategy == "multi_worker":
        return _run(cfg)
    check_settings(cfg)  # a refused resume is reported before the lock question
    with run_lock(cfg.run_dir):
        return _run(cfg)


def _run(cfg: ExperimentConfig) -> dict:
    import keras

    from keras_crf_reid.training.distribute import is_chief, make_strategy
    t0 = time.time()
    if cfg.train.mixed_precision:
        # Keras reads the policy when layers are built; float32 weights, float16 compute.
        keras.mixed_precision.set_global_policy("mixed_float16")
    check_settings(cfg)  # before any data is read: a refused resume costs nothing
    strategy = make_strategy(cfg.run.strategy)
    data = prepare(cfg.data, cfg.run.progress)
    print(json.dumps(data.dataset.stats()), flush=True)
    if data.eval_dataset is not None:
        print(json.dumps({"evaluation": data.eval_dataset.stats()}), flush=True)
    split_ids = data.split_ids(cfg.data)
    chief = is_chief(strategy)  # in a cluster, only the chief writes the run's files
    if chief:
        write_atomic(os.path.join(cfg.run_dir, SETTINGS_FILE),
                     json.dumps(cfg.results_key(), indent=1) + "\n")
        splits_path = os.path.join(cfg.run_dir, "splits.json")
        if not (cfg.run.worker_mode and os.path.exists(splits_path)):
            save_splits(data.splits, splits_path, {"dataset": data.dataset.name,
                                                   "seed": cfg.data.split_seed,
                                                   "root": data.dataset.root})
    run_splits(cfg, data, split_ids, strategy, chief)
    if cfg.run.worker_mode or not chief:
        return {"run_dir": cfg.run_dir, "splits": list(split_ids), "seconds": time.time() - t0,
                "chief": chief}
    out = write_report(cfg, data, split_ids)
    out.update(export_final(cfg, split_ids[0]))
    return {"run_dir": cfg.run_dir, "seconds": time.time() - t0, **out}

