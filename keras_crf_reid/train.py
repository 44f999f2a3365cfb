"""Trains CRF models and reports CMC: `python -m keras_crf_reid.train --flagfile=pipelines/prid.flags`.

With no flags it runs the demo on generated synthetic data: generate, cache flow, train,
evaluate (CMC table printed and written under runs/<name>/), export the SavedModel.
"""
from __future__ import annotations

import json
import logging
import sys

from absl import app, flags

from keras_crf_reid import flags as crf_flags
from keras_crf_reid.datasets.base import DatasetError

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_crf_reid.experiment import config_from_flags, run
    from keras_crf_reid.trainer import NonFiniteLossError
    logging.getLogger("keras_crf_reid").setLevel(logging.INFO)
    for noisy in ("tensorflow", "absl"):  # their INFO lines drown the progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = config_from_flags(FLAGS)
        out = run(cfg)
    except (DatasetError, ValueError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    if "markdown" in out:  # absent on the non-chief workers of a cluster
        with open(out["markdown"]) as f:
            print(f.read())
    print(json.dumps({k: v for k, v in out.items() if k != "markdown"}, indent=1, default=str))
    return 0


def run_main() -> None:
    app.run(main, argv=crf_flags.resolve_flagfile_argv(sys.argv))


if __name__ == "__main__":
    run_main()
