"""Where a run writes, which table rows it computes and with how many processes; no TensorFlow."""
from __future__ import annotations

import os

from keras_crf_reid.options import config_class, option

ROWS = ("cnn", "rnn", "cnn_rnn", "fusion")
STRATEGIES = ("default", "mirrored", "multi_worker")


@config_class
class RunConfig:
    """Where a run writes, which table rows it computes and with how many processes."""

    name: str = option("demo", "Run name: results under --output_dir/<name>.", results=False)
    output_dir: str = option("runs", "Results, checkpoints and TensorBoard logs.", results=False)
    export: bool = option(True, "Export the final model as a SavedModel (not for ablations).",
                          results=False)
    model_base_path: str = option("", "SavedModel base path (default saved_models/<name>).",
                                  results=False)
    progress: bool = option(True, "Show progress bars (off: one log line per --log_every steps).",
                            results=False)
    strategy: str = option("default", "tf.distribute strategy.", results=False,
                           choices=STRATEGIES)
    rows: tuple[str, ...] = option((), "Ablation rows (any of cnn,rnn,cnn_rnn,fusion): train each "
                                   "on the same splits and report them side by side.",
                                   results=False, choices=ROWS)
    workers: int = option(1, "Splits trained in parallel processes.", results=False, lower_bound=1)
    threads: int = option(0, "TensorFlow intra/inter-op threads per worker (0: cores // "
                          "--workers).", results=False, lower_bound=0)
    worker_mode: bool = option(False, "Only compute the per-split files of --splits; no report "
                               "(a later plain run aggregates them).", results=False)

    def __post_init__(self):
        if not self.name or self.name in (".", "..") or "/" in self.name or os.sep in self.name \
                or ".." in self.name.split(os.sep):
            raise ValueError(f"--name must be a plain folder name (no path separator, not '.' or "
                             f"'..'), got {self.name!r}")
