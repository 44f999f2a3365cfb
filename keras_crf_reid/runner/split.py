"""One split of one config: train the part models (and their fusion), score them, resumably.

Layout of a config's run folder (`<output_dir>/<name>`, or `<...>/<name>/<variant>` for an
ablation row):

    split_<k>/<entry>/ckpt, tb      entry = full | upper | lower | fusion (trainer checkpoints)
    split_<k>/metrics.json          {"key", "entries": {entry: metrics}, "train", ...}
    split_<k>/distances.npz         query x gallery distances per entry

metrics.json and distances.npz are rewritten atomically after every entry, so a killed run
resumes at the first entry without results (and inside it, at the trainer's last checkpoint).
Entries are independent of --parts: a later run asking for more parts reuses those already
scored, if the settings that change results (`ExperimentConfig.results_key`) are the same; a
setting added to the package after a split was written counts as its default there (defaults
reproduce the earlier behaviour). The baseline entry records its --baseline_kind and is
recomputed when another kind is asked for (entries from before the option: "hist").
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_crf_reid import cli
from keras_crf_reid.atomic import atomic_path, write_atomic
from keras_crf_reid.configs.experiment import (FUSION_SEED_OFFSET, PART_SEED_OFFSETS,
                                               SPLIT_SEED_STRIDE, ExperimentConfig)
from keras_crf_reid.configs.train import TrainConfig
from keras_crf_reid.datasets.pipeline import replica_pairs, training_sampler
from keras_crf_reid.evaluation.protocol import compiled_embedder, evaluate_split
from keras_crf_reid.evaluation.report import to_json
from keras_crf_reid.geometry import PARTS
from keras_crf_reid.models.factory import FUSION, build_model
from keras_crf_reid.models.fusion import build_fusion_model, fusion_weights
from keras_crf_reid.models.tta import scored_model
from keras_crf_reid.runner.data import RunData
from keras_crf_reid.training.trainer import Trainer

BASELINE = "baseline"
LEGACY_BASELINE_KIND = "hist"  # what a baseline entry without a recorded kind was computed with
METRICS_FILE = "metrics.json"
DISTANCES_FILE = "distances.npz"
log = logging.getLogger(__name__)


def split_dir(cfg: ExperimentConfig, split_id: int) -> str:
    return os.path.join(cfg.run_dir, f"split_{split_id}")


def scored_embedder(cfg: ExperimentConfig, model: keras.Model) -> Callable:
    """The compiled embedder a run scores `model` with: wrapped for --tta and --colour_norm."""
    return compiled_embedder(scored_model(model, cfg.eval.tta, cfg.model.colour_norm))


def score_split(cfg: ExperimentConfig, embed: Callable, data: RunData, split_id: int, **kwargs):
    """`evaluation.evaluate_split` with the run's evaluation flags (--eval_seq_len,
    --colour_norm, --rerank, --num_parallel_calls); `kwargs` go to it unchanged."""
    return evaluate_split(embed, data.store, data.splits[split_id], cfg.eval.seq_len,
                          num_parallel_calls=cfg.pairs.num_parallel_calls,
                          colour_norm=cfg.model.colour_norm, rerank=cfg.eval.rerank, **kwargs)


def entries_of(cfg: ExperimentConfig) -> list[str]:
    """What a config computes per split: its parts, the fusion when all three are trained."""
    return list(cfg.parts) + ([FUSION] if cfg.fuses else [])


def split_key(cfg: ExperimentConfig, data: RunData, split_id: int) -> dict:
    """What a split's results depend on: settings, data files and the split's identities."""
    return {"config": cfg.results_key(), "data": data.fingerprint,
            "split": data.split_digest(split_id)}


def read_split(cfg: ExperimentConfig, data: RunData, split_id: int) -> dict | None:
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
    old, new = done.get("key") or {}, split_key(cfg, data, split_id)
    if "config" in old:  # a setting added since the split ran: it ran with the default
        old = {**old, "config": {**cli.flag_dict(type(cfg)(), results_only=True), **old["config"]}}
    if old != new:
        diff = [f"{k} files" if k == "data" else "split identities"
                for k in ("data", "split") if old.get(k) != new[k]]
        o, n = old.get("config") or {}, new["config"]
        diff += [f"--{k}" for k in sorted(set(o) | set(n)) if o.get(k) != n.get(k)]
        raise ValueError(f"{path}: written with different settings or data (differing: "
                         f"{', '.join(diff)}); use another --name or --output_dir, or delete "
                         f"{split_dir(cfg, split_id)}")
    return done


def _missing(cfg: ExperimentConfig, done: dict | None, entries: Sequence[str]) -> list[str]:
    """Entries `done` (a split's results, or None) lacks or that `cfg` cannot reuse from it (a
    baseline of another kind)."""
    if done is None:
        return list(entries)
    scored = set(done["entries"])
    if done.get("baseline_kind", LEGACY_BASELINE_KIND) != cfg.eval.baseline_kind:
        scored.discard(BASELINE)
    return [e for e in entries if e not in scored]


def missing_entries(cfg: ExperimentConfig, data: RunData, split_id: int,
                    entries: Sequence[str]) -> list[str]:
    """Entries split `split_id` still has to compute (ValueError as `read_split`)."""
    return _missing(cfg, read_split(cfg, data, split_id), entries)


SEED_OFFSETS = {**PART_SEED_OFFSETS, FUSION: FUSION_SEED_OFFSET}


def entry_seed(cfg: ExperimentConfig, split_id: int, entry: str) -> int:
    """The seed of one entry's weights and training pairs on one split (configs.experiment)."""
    return cfg.pairs.seed + SPLIT_SEED_STRIDE * split_id + SEED_OFFSETS[entry]


def _train(cfg: ExperimentConfig, data: RunData, split_id: int, entry: str, model: keras.Model,
           tcfg: TrainConfig, strategy: tf.distribute.Strategy,
           eval_fn: Callable | None = None) -> tuple[Trainer, dict]:
    """Fits `model` (resuming from its checkpoint) on the split's training pairs; returns the
    trainer and its statistics."""
    split = data.splits[split_id]
    pairs = dataclasses.replace(cfg.pairs, seed=entry_seed(cfg, split_id, entry))
    sampler = training_sampler(data.store, split.train, pairs)
    trainer = Trainer(model, sampler.num_classes, tcfg,
                      os.path.join(split_dir(cfg, split_id), entry), strategy)
    stats = trainer.fit(lambda start, ctx: replica_pairs(data.store, split.train, pairs, start, ctx,
                                                         cfg.model.colour_norm),
                        pairs.global_batch, eval_fn=eval_fn, progress=cfg.run.progress)
    return trainer, stats


def train_part(cfg: ExperimentConfig, data: RunData, split_id: int, part: str,
               strategy: tf.distribute.Strategy) -> tuple[keras.Model, Callable, dict]:
    """Trains (or resumes, or reloads when finished) one part model on a split's training set.

    Returns the model, its compiled scored embedder (TTA-wrapped with --tta) and the training
    statistics.
    """
    keras.utils.set_random_seed(entry_seed(cfg, split_id, part))
    with strategy.scope():
        model = build_model(cfg.model, part)
    embed = scored_embedder(cfg, model)

    def split_eval(step: int) -> dict:
        metrics = score_split(cfg, embed, data, split_id)
        return {k: v for k, v in metrics.items() if k != "cmc"}

    trainer, stats = _train(cfg, data, split_id, part, model, cfg.train, strategy, split_eval)
    if trainer.interrupted:
        raise KeyboardInterrupt(f"training of {trainer.model_dir} interrupted; checkpoint saved, "
                                f"re-run the same command to resume")
    return model, embed, stats


def train_fusion(cfg: ExperimentConfig, data: RunData, split_id: int,
                 part_models: dict[str, keras.Model], strategy: tf.distribute.Strategy) -> keras.Model:
    """Learns W_u, W_l, W_g with the part models frozen, as --fusion_* say (FusionConfig)."""
    with strategy.scope():
        fusion = build_fusion_model(part_models)
    f = cfg.fusion
    tcfg = dataclasses.replace(cfg.train, steps=f.steps, optimizer=f.optimizer,
                               learning_rate=f.learning_rate, weights=f.weights, eval_every=0)
    _train(cfg, data, split_id, FUSION, fusion, tcfg, strategy)
    return fusion


def run_split(cfg: ExperimentConfig, data: RunData, split_id: int, entries: Sequence[str],
              strategy: tf.distribute.Strategy | None = None, write: bool = True) -> dict:
    """Computes the entries missing from split `split_id`; returns its metrics.json content.

    `write=False` (non-chief workers of a cluster) trains and scores without writing files.
    """
    from keras_crf_reid.evaluation.baseline import evaluate_baseline

    strategy = strategy or tf.distribute.get_strategy()
    done = read_split(cfg, data, split_id)
    todo = _missing(cfg, done, entries)
    done = done or {"split": split_id, "key": split_key(cfg, data, split_id), "entries": {},
                    "train": [], "seconds": 0.0}
    if not todo:
        return done
    split, out_dir = data.splits[split_id], split_dir(cfg, split_id)
    npz = os.path.join(out_dir, DISTANCES_FILE)
    distances = dict(np.load(npz)) if os.path.exists(npz) else {}
    models: dict[str, tuple[keras.Model, Callable]] = {}  # part -> (model, scored embedder)

    def part_model(part: str) -> tuple[keras.Model, Callable]:
        if part not in models:
            model, embed, stats = train_part(cfg, data, split_id, part, strategy)
            models[part] = model, embed
            done["train"].append({"part": part, **stats})
        return models[part]

    for entry in todo:
        t_entry = time.time()
        if entry == BASELINE:
            done["entries"][entry] = evaluate_baseline(data.dataset, split,
                                                       kind=cfg.eval.baseline_kind)
            done["baseline_kind"] = cfg.eval.baseline_kind
        else:
            if entry == FUSION:
                model = train_fusion(cfg, data, split_id, {p: part_model(p)[0] for p in PARTS},
                                     strategy)
                done["fusion_weights"] = fusion_weights(model)
                log.info("split %d: fusion weights %s", split_id, done["fusion_weights"])
                embed = scored_embedder(cfg, model)
            else:
                embed = part_model(entry)[1]
            done["entries"][entry], distances[entry] = score_split(
                cfg, embed, data, split_id, progress=cfg.run.progress, with_distances=True)
        done["seconds"] = float(done.get("seconds", 0.0)) + time.time() - t_entry
        done["num_query"], done["num_gallery"] = len(split.query), len(split.gallery)
        if write:
            with atomic_path(npz, suffix=".npz") as tmp:
                np.savez(tmp, **distances)
            write_atomic(os.path.join(out_dir, METRICS_FILE), to_json(done))
    keras.backend.clear_session()
    return done
