"""Evaluates a trained checkpoint: `python -m keras_crf_reid.evaluate --checkpoint=DIR --flagfile=...`.

The flags describing data and model must match the training run (use the same flagfile);
`--checkpoint` is a checkpoint prefix or a folder of checkpoints (the latest is used), e.g.
runs/demo/split_0/full/ckpt. The split evaluated is the first of --splits (default 0).
"""
from __future__ import annotations

import json
import sys

from absl import app, flags

from keras_crf_reid import flags as crf_flags
from keras_crf_reid.datasets.base import DatasetError

flags.DEFINE_string("checkpoint", "", "Checkpoint prefix or folder (latest checkpoint used).")
flags.DEFINE_enum("part", "full", ["full", "upper", "lower"], "Body part the model was trained on.")
FLAGS = flags.FLAGS


def evaluate_checkpoint(cfg, checkpoint: str, part: str) -> dict:
    """Rebuilds the part model, restores its weights and scores the configured split."""
    from keras_crf_reid import datasets, export
    from keras_crf_reid.evaluation import compiled_embedder, evaluate_split
    from keras_crf_reid.experiment import load_data, part_model_config
    from keras_crf_reid.store import TrackletStore

    if not checkpoint:
        raise ValueError("--checkpoint is required")
    prefix = export.checkpoint_prefix(checkpoint)
    model = export.restore_checkpoint(prefix, part_model_config(cfg, part))
    dataset = load_data(cfg)
    store = TrackletStore(dataset, cfg.cache_dir, on_bad_image=cfg.on_bad_image).build(progress=cfg.progress)
    splits = datasets.get_splits(dataset, cfg.num_splits, cfg.split_seed)
    s = cfg.splits[0] if cfg.splits else 0
    metrics = evaluate_split(compiled_embedder(model, part), store, splits[s], cfg.eval_seq_len,
                             progress=cfg.progress)
    return {"checkpoint": prefix, "split": s, **metrics}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_crf_reid.experiment import config_from_flags
    try:
        out = evaluate_checkpoint(config_from_flags(FLAGS), FLAGS.checkpoint, FLAGS.part)
    except (DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in out.items() if k != "cmc"}, indent=1))
    return 0


if __name__ == "__main__":
    app.run(main, argv=crf_flags.resolve_flagfile_argv(sys.argv))
