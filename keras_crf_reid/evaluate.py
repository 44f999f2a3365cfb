"""Evaluates a trained checkpoint: `python -m keras_crf_reid.evaluate --checkpoint=DIR --flagfile=...`.

The flags describing data and model must match the training run (use the same flagfile);
`--checkpoint` is a checkpoint prefix or a folder of checkpoints (the latest is used), e.g.
runs/demo/split_0/upper/ckpt with --part=upper, or runs/demo/split_0/fusion/ckpt with
--part=fusion. The split evaluated is the first of --splits (default 0). Every flag and its
default: keras_crf_reid.configs.experiment.CheckpointEvalConfig.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags

from keras_crf_reid import cli
from keras_crf_reid.configs.experiment import CheckpointEvalConfig, ExperimentConfig

cli.define_flags(CheckpointEvalConfig)
FLAGS = flags.FLAGS


def evaluate_checkpoint(cfg: ExperimentConfig, checkpoint: str, part: str) -> dict:
    """Rebuilds the model, restores its weights and scores the configured split."""
    from keras_crf_reid.models import factory
    from keras_crf_reid.runner.data import prepare
    from keras_crf_reid.runner.split import score_split, scored_embedder

    prefix = factory.checkpoint_prefix(checkpoint)
    model = factory.restore_checkpoint(prefix, cfg.model, part)
    data = prepare(cfg.data, cfg.run.progress)
    s = data.split_ids(cfg.data)[0]
    metrics = score_split(cfg, scored_embedder(cfg, model), data, s, progress=cfg.run.progress)
    return {"checkpoint": prefix, "part": part, "split": s, **metrics}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_crf_reid.datasets import DatasetError
    try:
        cfg = cli.from_flags(CheckpointEvalConfig, FLAGS)
        out = evaluate_checkpoint(cfg.experiment, cfg.checkpoint, cfg.part)
    except (DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    print(json.dumps({k: v for k, v in out.items() if k != "cmc"}, indent=1))
    return 0


if __name__ == "__main__":
    cli.run(main)
