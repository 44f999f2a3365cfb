"""One experiment: data -> (per split) part models -> fusion -> evaluation -> report -> export.

`train.py` runs one experiment from flags; the ablation runner runs several. Every run writes
a results folder `<output_dir>/<name>/` holding the flags, the splits, per-split metrics, the
Markdown/JSON tables, CMC plots, checkpoints and TensorBoard logs.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_crf_reid import datasets
from keras_crf_reid.datasets.base import ReidDataset, Split, save_splits
from keras_crf_reid.evaluation import compiled_embedder, evaluate_split
from keras_crf_reid.fusion import build_fusion_model, fusion_weights, part_height
from keras_crf_reid.losses import LossWeights
from keras_crf_reid.model import ModelConfig, build_crf_model
from keras_crf_reid.pipeline import PairConfig, PairSampler, replica_pairs
from keras_crf_reid.store import TrackletStore
from keras_crf_reid.trainer import TrainConfig, Trainer, is_chief

log = logging.getLogger(__name__)
PARTS = ("full", "upper", "lower")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; built from flags by `config_from_flags`."""

    dataset: str = "synthetic"
    data_root: str = ""
    data_dir: str = "data"
    cache_dir: str = "cache"
    num_ids: int = 100
    synthetic_seed: int = 0
    min_len: int | None = None
    on_bad_image: str = "skip"
    num_splits: int = 10
    splits: tuple[int, ...] = ()
    split_seed: int = 0
    model: ModelConfig = ModelConfig()
    parts: tuple[str, ...] = ("full",)
    fusion_steps: int = 100
    pairs: PairConfig = PairConfig()
    train: TrainConfig = TrainConfig()
    eval_seq_len: int = 16
    name: str = "demo"
    output_dir: str = "runs"
    export: bool = True
    model_base_path: str = ""
    baseline: bool = True
    progress: bool = True
    strategy: str = "default"

    def __post_init__(self):
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ValueError(f"--parts must be a non-empty subset of {PARTS}, got {self.parts}")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.output_dir, self.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_from_flags(f) -> ExperimentConfig:
    """Builds the experiment config from parsed absl FLAGS, with flag-named errors."""
    def ints(name, values):
        try:
            return tuple(int(v) for v in values)
        except ValueError:
            raise ValueError(f"--{name} must be a comma-separated list of integers, got {values}")
    try:
        w = [float(v) for v in f.loss_weights]
        if len(w) != 3:
            raise ValueError
    except ValueError:
        raise ValueError(f"--loss_weights must be three numbers W1,W2,W3, got {f.loss_weights}")
    model = ModelConfig(variant=f.variant, filters=ints("filters", f.filters),
                        embed_dim=f.embed_dim, dropout=f.dropout)
    pairs = PairConfig(seq_len=f.seq_len, batch_size=f.batch_size, augment=f.augment, seed=f.seed, num_parallel_calls=f.num_parallel_calls)
    train = TrainConfig(steps=f.steps, optimizer=f.optimizer, learning_rate=f.learning_rate,
                        momentum=f.momentum, clipnorm=f.clipnorm, margin=f.margin,
                        weights=LossWeights(*w), ckpt_every=f.ckpt_every, eval_every=f.eval_every,
                        on_nan=f.on_nan, mixed_precision=f.mixed_precision, jit_compile=f.jit_compile)
    return ExperimentConfig(
        dataset=f.dataset, data_root=f.data_root, data_dir=f.data_dir, cache_dir=f.cache_dir,
        num_ids=f.num_ids, synthetic_seed=f.synthetic_seed, min_len=f.min_len,
        on_bad_image=f.on_bad_image, num_splits=f.num_splits, splits=ints("splits", f.splits),
        split_seed=f.split_seed, model=model, parts=tuple(f.parts), fusion_steps=f.fusion_steps,
        pairs=pairs, train=train, eval_seq_len=f.eval_seq_len, name=f.name, output_dir=f.output_dir,
        export=f.export, model_base_path=f.model_base_path, baseline=f.baseline,
        progress=f.progress, strategy=f.strategy)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default | mirrored (GPUs of one machine) | multi_worker (machines via TF_CONFIG)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _load_one(cfg: ExperimentConfig, root: str) -> ReidDataset:
    if cfg.dataset == "synthetic" and not root:
        from keras_crf_reid.datasets.synthetic import generate_synthetic
        root = generate_synthetic(os.path.join(cfg.data_dir, f"synthetic_{cfg.num_ids}_s{cfg.synthetic_seed}"),
                                  num_ids=cfg.num_ids, seed=cfg.synthetic_seed, progress=cfg.progress)
    elif not root:
        raise ValueError(f"--data_root is required for --dataset={cfg.dataset}")
    kwargs = {} if cfg.min_len is None else {"min_len": cfg.min_len}
    return datasets.get_dataset(cfg.dataset, root, **kwargs)


def load_data(cfg: ExperimentConfig) -> ReidDataset:
    """Reads the dataset, generating the synthetic one first when no root is given.

    Several comma-separated --data_root folders (two-camera datasets) are pooled into one;
    pooled person ids become 10000 * (folder index) + id, so no two folders share an identity.
    """
    roots = [r for r in cfg.data_root.split(",") if r]
    if len(roots) <= 1:
        return _load_one(cfg, cfg.data_root)
    parts = [_load_one(cfg, r) for r in roots]
    tracklets, skipped = [], {}
    for i, d in enumerate(parts):
        if d.probe_cam != 0 or d.gallery_cam != 1 or d.fixed_splits:
            raise ValueError(f"--data_root: {d.root} has no cam 0 / cam 1 protocol; only "
                             f"two-camera datasets without fixed splits can be pooled")
        if max(d.pids) >= 10000 or min(d.pids) < 0:
            raise ValueError(f"--data_root: {d.root} has person ids outside 0..9999; cannot pool")
        tracklets += [dataclasses.replace(t, pid=10000 * i + t.pid) for t in d.tracklets]
        skipped.update(d.skipped)
    name = "+".join(os.path.basename(os.path.normpath(r)) for r in roots)
    return ReidDataset(name=name, root=",".join(d.root for d in parts), tracklets=tracklets,
                       skipped=skipped)


def part_model_config(cfg: ExperimentConfig, part: str) -> ModelConfig:
    return dataclasses.replace(cfg.model, input_height=part_height(part))


def train_part(cfg: ExperimentConfig, store: TrackletStore, split: Split, split_id: int,
               part: str, strategy: tf.distribute.Strategy) -> tuple[keras.Model, dict]:
    """Trains (or resumes, or reloads when finished) one part model on a split's training set."""
    model_dir = os.path.join(cfg.run_dir, f"split_{split_id}", part)
    seed = cfg.pairs.seed + 1000 * split_id + PARTS.index(part)
    keras.utils.set_random_seed(seed)
    pairs = dataclasses.replace(cfg.pairs, seed=seed)
    with strategy.scope():
        model = build_crf_model(part_model_config(cfg, part), name=f"crf_{part}")
    sampler = PairSampler(store, split.train, pairs)
    trainer = Trainer(model, sampler.num_classes, dataclasses.replace(cfg.train, part=part),
                      model_dir, strategy)
    embed = compiled_embedder(model, part)
    split_eval = lambda step: {k: v for k, v in evaluate_split(
        embed, store, split, cfg.eval_seq_len).items() if k != "cmc"}
    stats = trainer.fit(lambda start, ctx: replica_pairs(store, split.train, pairs, start, ctx),
                        pairs.batch_size, eval_fn=split_eval, progress=cfg.progress)
    if trainer.interrupted:
        raise KeyboardInterrupt(f"training of {model_dir} interrupted; checkpoint saved, "
                                f"re-run the same command to resume")
    return model, stats


def train_fusion(cfg: ExperimentConfig, store: TrackletStore, split: Split, split_id: int,
                 part_models: dict[str, keras.Model], strategy: tf.distribute.Strategy) -> keras.Model:
    """Learns W_u, W_l, W_g with the part models frozen.

    Only the contrastive term is used (W2 = W3 = 0): the three scalars rescale a fixed
    embedding space, and an identity classifier trained from scratch on top of it would mostly
    learn its own weights rather than inform the fusion weights.
    """
    with strategy.scope():
        fusion = build_fusion_model(part_models)
    pairs = dataclasses.replace(cfg.pairs, seed=cfg.pairs.seed + 1000 * split_id + 7)
    sampler = PairSampler(store, split.train, pairs)
    tcfg = dataclasses.replace(cfg.train, steps=cfg.fusion_steps, part="full", optimizer="adam",
                               learning_rate=1e-2, weights=LossWeights(1.0, 0.0, 0.0), eval_every=0)
    trainer = Trainer(fusion, sampler.num_classes, tcfg,
                      os.path.join(cfg.run_dir, f"split_{split_id}", "fusion"), strategy)
    trainer.fit(lambda start, ctx: replica_pairs(store, split.train, pairs, start, ctx),
                pairs.batch_size, progress=cfg.progress)
    return fusion


def run(cfg: ExperimentConfig) -> dict:
    """Runs the experiment; returns {"table": markdown, "results": aggregated, ...}."""
    from keras_crf_reid import report
    t0 = time.time()
    os.makedirs(cfg.run_dir, exist_ok=True)
    if cfg.train.mixed_precision:
        # Keras reads the policy when layers are built; float32 weights, float16 compute.
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = make_strategy(cfg.strategy)
    dataset = load_data(cfg)
    log.info("dataset: %s", json.dumps(dataset.stats()))
    print(json.dumps(dataset.stats()))
    store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image).build(progress=cfg.progress)
    all_splits = datasets.get_splits(dataset, cfg.num_splits, cfg.split_seed)
    split_ids = cfg.splits or tuple(range(len(all_splits)))
    for s in split_ids:
        if not 0 <= s < len(all_splits):
            raise ValueError(f"--splits: index {s} out of range (dataset has {len(all_splits)} splits)")
    splits_path = os.path.join(cfg.run_dir, "splits.json")
    chief = is_chief(strategy)  # in a cluster, only the chief writes the run's files
    if chief:
        save_splits(all_splits, splits_path, {"dataset": dataset.name, "seed": cfg.split_seed})
    per_split: dict[str, list[dict]] = {}
    extra: dict = {"fusion_weights": [], "train": []}
    final_model, ranked = None, None

    def score(row: str, model: keras.Model, part: str, split: Split):
        metrics, dist = evaluate_split(compiled_embedder(model, part), store, split,
                                       cfg.eval_seq_len, progress=cfg.progress, with_distances=True)
        per_split.setdefault(row, []).append(metrics)
        return dist

    for s in split_ids:
        split = all_splits[s]
        models = {}
        for part in cfg.parts:
            models[part], stats = train_part(cfg, store, split, s, part, strategy)
            extra["train"].append({"split": s, "part": part, **stats})
            dist = score(f"CRF {cfg.model.variant} ({part})", models[part], part, split)
        if len(models) == 3:
            fusion = train_fusion(cfg, store, split, s, models, strategy)
            extra["fusion_weights"].append({"split": s, **fusion_weights(fusion)})
            print(f"split {s}: fusion weights {fusion_weights(fusion)}")
            dist = score("CRF fusion (upper+lower+full)", fusion, "full", split)
            model = fusion
        else:
            model = models["full"] if "full" in models else None
        if final_model is None and model is not None:
            final_model, ranked = model, (dist, split, s)
        if cfg.baseline:
            from keras_crf_reid.baseline import evaluate_baseline
            per_split.setdefault("Colour histogram baseline", []).append(
                evaluate_baseline(dataset, split, kind="hist"))
    if not chief:
        return {"run_dir": cfg.run_dir, "seconds": time.time() - t0, "chief": False}
    written = report.write_run_report(cfg.run_dir, cfg.to_dict(), splits_path, per_split, extra)
    curves = {row: np.mean([r["cmc"] for r in rs], 0) for row, rs in per_split.items() if "cmc" in rs[0]}
    if curves:
        from keras_crf_reid import plots
        plots.plot_cmc_curves(curves, os.path.join(cfg.run_dir, "cmc.png"),
                              title=f"{dataset.name}: CMC ({len(split_ids)} split(s))")
    out = {"run_dir": cfg.run_dir, "seconds": time.time() - t0, **written}
    if ranked is not None:
        from keras_crf_reid import plots
        dist, split, s = ranked
        out["ranked_png"] = plots.plot_ranked_split(
            dist, dataset, split, os.path.join(cfg.run_dir, f"ranked_split{s}.png"))
    if final_model is not None:
        final_model.save(os.path.join(cfg.run_dir, "model.keras"))
        if cfg.export:
            from keras_crf_reid.export import export_saved_model
            base = cfg.model_base_path or os.path.join("saved_models", cfg.name)
            out["export"] = export_saved_model(final_model, base)
    return out
