"""Trains CRF models and reports CMC: `python -m keras_crf_reid.train --flagfile=pipelines/prid.flags`.

With no flags it runs the demo on generated synthetic data: generate, cache flow, train,
evaluate (CMC table printed and written under runs/<name>/), export the SavedModel. With
`--rows=cnn,rnn,cnn_rnn,fusion` it runs the paper's ablation (pipelines/ablation_*.flags).
Every flag and its default: `--helpfull`; the defaults live in keras_crf_reid.configs.
"""
from __future__ import annotations

import json
import logging
import sys

from absl import app, flags

from keras_crf_reid import cli
from keras_crf_reid.configs import experiment

experiment.define_flags()
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:  # every flag is checked before any data is read or any folder written
        cfg = experiment.config_from_flags(FLAGS)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    from keras_crf_reid.datasets import DatasetError
    from keras_crf_reid.runner.experiment import run
    from keras_crf_reid.training.trainer import NonFiniteLossError
    logging.getLogger("keras_crf_reid").setLevel(logging.INFO)
    for noisy in ("tensorflow", "absl"):  # their INFO lines drown the progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        out = run(cfg)
    except (DatasetError, ValueError, NonFiniteLossError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    if "markdown_text" in out:  # absent for worker_mode and the non-chief workers of a cluster
        print(out.pop("markdown_text"))
    print(json.dumps(out, indent=1, default=str))
    return 0


def run_main() -> None:
    cli.run(main)


if __name__ == "__main__":
    run_main()
