"""The paper's ablation (Table 3): CNN, RNN, CNN+RNN and Fusion rows trained on the same splits.

`python -m keras_crf_reid.experiments --flagfile=pipelines/ablation_synthetic.flags
[--rows=cnn,rnn,cnn_rnn,fusion] [--num_splits=K] [--workers=N]`

For every split k, each row is trained and evaluated on the same identities:
  cnn, rnn, cnn_rnn  one full-body model of that variant: <run>/<variant>/split_k/full
  fusion             cnn_rnn models on full, upper and lower (the full one is row cnn_rnn's)
                     plus the learned W_u, W_l, W_g: <run>/cnn_rnn/split_k/{upper,lower,fusion}
where <run> is --output_dir/--name. A finished split writes <run>/split_k/distances.npz (query x
gallery distances per row) and then, atomically, <run>/split_k/metrics.json; a rerun skips the
splits whose metrics.json holds every requested row, and the report (results.md/.json, CMC
curves, ranked results) is always rebuilt from all per-split files. Inside a split the Trainer
resumes from checkpoints. --workers=N runs the pending splits in N spawned processes with
cores // N TensorFlow threads each; --worker_mode only computes the --splits' files (to spread
splits over machines sharing the output folder), a plain run afterwards aggregates them.
The shared flags apply to every row, except --variant and --parts (the rows choose them) and
--export (nothing is exported).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from typing import Any, Sequence

from absl import app, flags

from keras_crf_reid import flags as crf_flags  # noqa: F401  (defines the shared flags)

ROWS = ("cnn", "rnn", "cnn_rnn", "fusion")
ROW_TITLES = {"cnn": "CNN", "rnn": "RNN", "cnn_rnn": "CNN+RNN",
              "fusion": "Fusion (upper+lower+full)", "baseline": "Colour histogram baseline"}
PART_TITLES = {"upper": "CNN+RNN, upper half only", "lower": "CNN+RNN, lower half only"}
METRICS_FILE = "metrics.json"
DISTANCES_FILE = "distances.npz"
# Config fields that do not change a split's results: a resumed split may differ in these.
_NOT_RESULTS = ("name", "output_dir", "data_dir", "cache_dir", "progress", "export",
                "model_base_path", "strategy", "num_splits", "splits", "baseline", "parts")
_NOT_RESULTS_TRAIN = ("ckpt_every", "max_to_keep", "log_every", "eval_every")

FLAGS = flags.FLAGS
if "rows" not in FLAGS:  # the module may be imported twice (as __main__ and by name)
    flags.DEFINE_list("rows", list(ROWS), "Ablation rows: any of cnn,rnn,cnn_rnn,fusion.")
    flags.DEFINE_integer("workers", 1, "Splits trained in parallel processes.")
    flags.DEFINE_integer("threads", 0, "TensorFlow intra/inter-op threads per worker "
                         "(0: CPU cores // --workers).")
    flags.DEFINE_bool("worker_mode", False, "Only compute the per-split files of --splits; no "
                      "report (a later plain run aggregates them).")
    flags.DEFINE_integer("ranked_queries", 5, "Queries shown in the ranked-results figure.")
    flags.DEFINE_integer("ranked_top_k", 5, "Gallery ranks shown per query in that figure.")

log = logging.getLogger(__name__)


def parse_rows(values: Sequence[str]) -> tuple[str, ...]:
    """Validates --rows; returns them in table order, without duplicates."""
    values = [v.strip() for v in values if v.strip()]
    bad = [v for v in values if v not in ROWS]
    if bad or not values:
        raise ValueError(f"--rows: unknown or missing row(s) {bad or values}; choose a non-empty "
                         f"subset of {','.join(ROWS)}")
    return tuple(r for r in ROWS if r in values)


def split_dir(cfg, split_id: int) -> str:
    return os.path.join(cfg.run_dir, f"split_{split_id}")


def variant_config(cfg, variant: str):
    """The config of one variant's models: run dir <run>/<variant>, model variant set."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, variant=variant),
                               output_dir=cfg.run_dir, name=variant, parts=("full",),
                               export=False, baseline=False)


def results_config(cfg) -> dict:
    """The part of the config a split's results depend on (checked when resuming)."""
    d = json.loads(json.dumps(cfg.to_dict(), default=str))
    for k in _NOT_RESULTS:
        d.pop(k, None)
    d["model"].pop("variant", None)
    for k in _NOT_RESULTS_TRAIN:
        d["train"].pop(k, None)
    return d


def _to_json(obj: Any) -> str:
    def default(o):
        return o.item() if hasattr(o, "item") else o.tolist() if hasattr(o, "tolist") else str(o)
    return json.dumps(obj, indent=1, default=default) + "\n"


@dataclasses.dataclass
class Data:
    """A run's dataset, its flow-cached store, all its splits and a fingerprint of its files."""

    dataset: Any
    store: Any
    splits: list
    fingerprint: str

    def split_key(self, cfg, split_id: int) -> dict:
        """What a split's results depend on: settings, data files and the split's identities."""
        split = json.dumps(self.splits[split_id].to_dict(), sort_keys=True).encode()
        return {"config": results_config(cfg), "data": self.fingerprint,
                "split": hashlib.sha1(split).hexdigest()}


def data_fingerprint(dataset) -> str:
    """Hash of ids, cameras, lengths, frame names and first/last frame sizes of every tracklet.

    Regenerated or replaced frames change the sizes; moving the dataset folder does not matter.
    """
    h = hashlib.sha1()
    for t in dataset.tracklets:
        ends = (t.frames[0], t.frames[-1]) if t.frames else ()
        names = [os.path.join(*os.path.normpath(p).split(os.sep)[-3:]) for p in ends]
        sizes = [os.path.getsize(p) if os.path.exists(p) else -1 for p in ends]
        h.update(f"{t.pid}|{t.camid}|{len(t.frames)}|{names}|{sizes}\n".encode())
    return h.hexdigest()[:16]


def read_split(cfg, data: Data, split_id: int) -> dict | None:
    """The split's metrics.json, or None; ValueError when it was run on other settings or data."""
    path = os.path.join(split_dir(cfg, split_id), METRICS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            done = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable per-split results ({e}); delete it to rerun "
                         f"the split")
    old, new = done.get("key") or {}, data.split_key(cfg, split_id)
    if old != new:
        diff = [k for k in new if old.get(k) != new[k]]
        if old.get("config") != new["config"]:
            o, n = old.get("config") or {}, new["config"]
            diff += [f"--{k}" if k not in ("model", "pairs", "train") else f"{k} settings"
                     for k in sorted(set(o) | set(n)) if o.get(k) != n.get(k)]
        raise ValueError(f"{path}: written with different settings or data (differing: "
                         f"{', '.join(diff)}); use another --name or --output_dir, or delete "
                         f"{split_dir(cfg, split_id)}")
    return done


def missing_rows(cfg, data: Data, rows: Sequence[str], split_id: int) -> list[str]:
    """Rows (and the baseline, with --baseline) the split has no results for yet."""
    done = read_split(cfg, data, split_id)
    want = list(rows) + (["baseline"] if cfg.baseline else [])
    return [r for r in want if done is None or r not in done["rows"]]


def prepare(cfg) -> Data:
    """Dataset, flow-cached store, all splits and data fingerprint of the config."""
    from keras_crf_reid import datasets
    from keras_crf_reid.experiment import load_data
    from keras_crf_reid.store import TrackletStore
    dataset = load_data(cfg)
    store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image).build(
        progress=cfg.progress)
    splits = datasets.get_splits(dataset, cfg.num_splits, cfg.split_seed)
    return Data(dataset, store, splits, data_fingerprint(dataset))


def split_ids_of(cfg, num_available: int) -> tuple[int, ...]:
    ids = cfg.splits or tuple(range(min(cfg.num_splits, num_available)))
    for s in ids:
        if not 0 <= s < num_available:
            raise ValueError(f"--splits: index {s} out of range (dataset has {num_available} "
                             f"splits)")
    return ids


def _write_npz(path: str, arrays: dict) -> None:
    import numpy as np
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def run_split(cfg, rows: Sequence[str], split_id: int, data: Data | None = None) -> dict:
    """Trains and evaluates the rows missing from split `split_id`; returns its metrics.json."""
    import keras
    import numpy as np
    from keras_crf_reid import report
    from keras_crf_reid.evaluation import compiled_embedder, evaluate_split
    from keras_crf_reid.experiment import make_strategy, train_fusion, train_part
    from keras_crf_reid.fusion import fusion_weights

    t0 = time.time()
    data = data or prepare(cfg)
    todo = missing_rows(cfg, data, rows, split_id)
    done = read_split(cfg, data, split_id) or {
        "split": split_id, "key": data.split_key(cfg, split_id), "rows": {}, "parts": {},
        "train": [], "seconds": 0.0}
    if not todo:
        return done
    dataset, store, split = data.dataset, data.store, data.splits[split_id]
    out_dir = split_dir(cfg, split_id)
    npz = os.path.join(out_dir, DISTANCES_FILE)
    distances = dict(np.load(npz)) if os.path.exists(npz) else {}
    strategy = make_strategy(cfg.strategy)
    full_models = {}

    def train(variant: str, part: str):
        model, stats = train_part(variant_config(cfg, variant), store, split, split_id, part,
                                  strategy)
        done["train"].append({"variant": variant, "part": part, **stats})
        return model

    for row in todo:
        print(f"split {split_id}: row {row}", flush=True)
        if row == "baseline":
            from keras_crf_reid.baseline import evaluate_baseline
            done["rows"][row] = evaluate_baseline(dataset, split, kind="hist")
            continue
        variant = "cnn_rnn" if row == "fusion" else row
        if variant not in full_models:
            full_models[variant] = train(variant, "full")
        if row != "fusion":
            embed = compiled_embedder(full_models[variant], "full")
        else:
            models = {"full": full_models[variant]}
            for part in ("upper", "lower"):
                models[part] = train(variant, part)
                done["parts"][part] = evaluate_split(compiled_embedder(models[part], part), store,
                                                     split, cfg.eval_seq_len)
            fusion = train_fusion(variant_config(cfg, variant), store, split, split_id, models,
                                  strategy)
            done["fusion_weights"] = fusion_weights(fusion)
            print(f"split {split_id}: fusion weights {done['fusion_weights']}", flush=True)
            embed = compiled_embedder(fusion, "full")
        done["rows"][row], distances[row] = evaluate_split(embed, store, split, cfg.eval_seq_len,
                                                           with_distances=True)
    done["seconds"] = float(done.get("seconds", 0.0)) + time.time() - t0
    done["num_query"], done["num_gallery"] = len(split.query), len(split.gallery)
    os.makedirs(out_dir, exist_ok=True)
    _write_npz(npz, distances)
    report.write_atomic(os.path.join(out_dir, METRICS_FILE), _to_json(done))
    keras.backend.clear_session()
    return done


def set_threads(threads: int) -> None:
    """Limits TensorFlow's thread pools (only possible before TensorFlow has run an op)."""
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning("TensorFlow already initialised; keeping its thread pools (wanted %d)", threads)


def _split_worker(cfg, rows: tuple[str, ...], split_id: int, threads: int, log_path: str) -> float:
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
    run_split(cfg, rows, split_id)
    return time.time() - t0


def default_threads(workers: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def run_splits(cfg, rows: tuple[str, ...], split_ids: Sequence[int], workers: int = 1,
               threads: int = 0, data: Data | None = None) -> None:
    """Computes every split of `split_ids` that is not finished, `workers` at a time."""
    data = data or prepare(cfg)
    pending = []
    for s in split_ids:
        todo = missing_rows(cfg, data, rows, s)
        if todo:
            pending.append(s)
        else:
            print(f"split {s}: finished earlier ({os.path.join(split_dir(cfg, s), METRICS_FILE)}), "
                  f"skipped", flush=True)
    threads = threads or default_threads(workers)
    if workers <= 1 or len(pending) <= 1:
        if pending:
            set_threads(threads)
        for s in pending:
            run_split(cfg, rows, s, data)
        return
    wcfg = dataclasses.replace(cfg, progress=False)
    failed = {}
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(pending)), mp_context=ctx,
                                                max_tasks_per_child=1) as pool:
        logs = {s: os.path.join(split_dir(cfg, s), "worker.log") for s in pending}
        futures = {pool.submit(_split_worker, wcfg, rows, s, threads, logs[s]): s for s in pending}
        print(f"running splits {pending} in {min(workers, len(pending))} processes, {threads} "
              f"thread(s) each; logs: {cfg.run_dir}/split_<k>/worker.log", flush=True)
        for fut in concurrent.futures.as_completed(futures):
            s = futures[fut]
            try:
                print(f"split {s}: done in {fut.result():.0f} s", flush=True)
            except Exception as e:  # noqa: BLE001  (reported per split below)
                failed[s] = f"{type(e).__name__}: {e}"
                print(f"split {s}: FAILED ({failed[s]}); see {logs[s]}", flush=True)
    if failed:
        raise RuntimeError(f"splits {sorted(failed)} failed: {failed}; rerun the same command to "
                           f"resume them (finished splits are kept)")


def fusion_weights_table(per_split: dict[int, dict]) -> str:
    """Markdown table of the learned W_u, W_l, W_g per split, mean ± std, and their shares.

    Only the ratios matter for ranking (a common factor scales all distances alike), so the
    last line gives each weight divided by the sum of the three, averaged over splits.
    """
    import numpy as np
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


def plot_ranked(cfg, dataset, split, row: str, split_id: int, num_queries: int,
                top_k: int) -> str:
    """The ranked gallery of ~num_queries evenly spread queries of one split, for one row."""
    import numpy as np
    from keras_crf_reid import plots
    dist = np.load(os.path.join(split_dir(cfg, split_id), DISTANCES_FILE))[row]
    out = os.path.join(cfg.run_dir, f"ranked_{row}_split{split_id}.png")
    return plots.plot_ranked_split(dist, dataset, split, out, num_queries, top_k)


def aggregate(cfg, rows: tuple[str, ...], data: Data, split_ids: Sequence[int],
              ranked_queries: int = 5, ranked_top_k: int = 5,
              extra_flags: dict | None = None) -> dict:
    """Builds the report from the per-split files: tables, JSON, CMC and ranked-results plots."""
    import numpy as np
    from keras_crf_reid import plots, report
    dataset = data.dataset
    per = {s: read_split(cfg, data, s) for s in split_ids}
    missing = [s for s, d in per.items() if d is None or missing_rows(cfg, data, rows, s)]
    if missing:
        raise ValueError(f"splits {missing} have no complete {METRICS_FILE}; run them first")
    per_split = {}
    for r in list(rows) + (["baseline"] if cfg.baseline else []):
        if r == "fusion":  # the fused half-body models on their own, to read the fusion gain
            for part in ("upper", "lower"):
                per_split[PART_TITLES[part]] = [per[s]["parts"][part] for s in split_ids]
        per_split[ROW_TITLES[r]] = [per[s]["rows"][r] for s in split_ids]
    weights = {s: per[s]["fusion_weights"] for s in split_ids if "fusion" in rows}
    extra = {
        "rows": list(rows),
        "fusion_weights": [{"split": s, **w} for s, w in weights.items()],
        "parts": [{"split": s, **per[s]["parts"]} for s in split_ids if per[s].get("parts")],
        "train": [{"split": s, **t} for s in split_ids for t in per[s]["train"]],
        "seconds_per_split": {s: per[s]["seconds"] for s in split_ids},
    }
    if weights:
        arr = np.array([[w[p] for p in ("upper", "lower", "full")] for w in weights.values()])
        extra["fusion_weights_mean"] = dict(zip(("upper", "lower", "full"), arr.mean(0).tolist()))
        share = (arr / arr.sum(1, keepdims=True)).mean(0)
        extra["fusion_weights_share"] = dict(zip(("upper", "lower", "full"), share.tolist()))
    title = f"Ablation on {dataset.name}: {len(split_ids)} split(s)"
    written = report.write_run_report(
        cfg.run_dir, {**cfg.to_dict(), **(extra_flags or {}), "rows": list(rows)},
        os.path.join(cfg.run_dir, "splits.json"), per_split, extra, title=title)
    with open(written["markdown"]) as f:
        markdown = f.read()
    if weights:
        markdown += "\nLearned fusion weights:\n\n" + fusion_weights_table(weights)
        report.write_atomic(written["markdown"], markdown)
    curves = {ROW_TITLES[r]: np.mean([per[s]["rows"][r]["cmc"] for s in split_ids], 0)
              for r in rows}
    written["cmc_png"] = plots.plot_cmc_curves(
        curves, os.path.join(cfg.run_dir, "cmc.png"),
        title=f"{dataset.name}\nmean CMC over {len(split_ids)} split(s)")
    best = "fusion" if "fusion" in rows else max(
        rows, key=lambda r: np.mean([per[s]["rows"][r]["rank1"] for s in split_ids]))
    shown_split = 0 if 0 in split_ids else split_ids[0]
    written["ranked_png"] = plot_ranked(cfg, dataset, data.splits[shown_split], best, shown_split,
                                        ranked_queries, ranked_top_k)
    return {"markdown_text": markdown, **written}


def run_ablation(cfg, rows: Sequence[str], workers: int = 1, threads: int = 0,
                 worker_mode: bool = False, ranked_queries: int = 5, ranked_top_k: int = 5) -> dict:
    """Runs (or resumes) the ablation and, unless worker_mode, writes and returns the report."""
    from keras_crf_reid.datasets.base import save_splits
    rows = parse_rows(rows)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    t0 = time.time()
    os.makedirs(cfg.run_dir, exist_ok=True)
    data = prepare(cfg)
    dataset, splits = data.dataset, data.splits
    split_ids = split_ids_of(cfg, len(splits))
    splits_path = os.path.join(cfg.run_dir, "splits.json")
    if not worker_mode or not os.path.exists(splits_path):
        save_splits(splits, splits_path, {"dataset": dataset.name, "seed": cfg.split_seed})
    run_splits(cfg, rows, split_ids, workers, threads, data)
    if worker_mode:
        return {"run_dir": cfg.run_dir, "splits": list(split_ids), "seconds": time.time() - t0}
    out = aggregate(cfg, rows, data, split_ids, ranked_queries, ranked_top_k,
                    {"workers": workers, "threads": threads})
    return {"run_dir": cfg.run_dir, "seconds": time.time() - t0, **out}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:  # flag checks first: they need no TensorFlow import
        rows = parse_rows(FLAGS.rows)
        if FLAGS.ranked_queries < 1 or FLAGS.ranked_top_k < 1:
            raise ValueError("--ranked_queries and --ranked_top_k must be >= 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from keras_crf_reid.datasets.base import DatasetError
    from keras_crf_reid.experiment import config_from_flags
    from keras_crf_reid.trainer import NonFiniteLossError
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    try:
        out = run_ablation(config_from_flags(FLAGS), rows, FLAGS.workers, FLAGS.threads,
                           FLAGS.worker_mode, FLAGS.ranked_queries, FLAGS.ranked_top_k)
    except (DatasetError, ValueError, NonFiniteLossError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    if "markdown_text" in out:
        print(out.pop("markdown_text"))
    print(json.dumps(out, indent=1, default=str))
    return 0


def run_main() -> None:
    app.run(main, argv=crf_flags.resolve_flagfile_argv(sys.argv))


if __name__ == "__main__":
    run_main()
