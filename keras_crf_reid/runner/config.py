"""The one config tree of an experiment; every default lives here or in the dataclasses it nests.

    ExperimentConfig
      data:  DataConfig       which dataset, where, splits
      model: ModelConfig      the CRF network (configs/model.py; built by model.py)
      parts                   body-part models trained
      fusion: FusionConfig    how the three fusion weights are learned (configs/train.py)
      pairs: PairConfig       pair or P x K sampling and augmentation (configs/pairs.py)
      train: TrainConfig      optimisation (configs/train.py; trainer.py acts on it)
      eval:  EvalConfig       test protocol, report, test-time augmentation (configs/tta.py)
      run:   RunConfig        names, outputs, rows of an ablation, processes

`define_flags()` makes one absl flag per leaf (named after the field, e.g. --seq_len) and
`config_from_flags()` builds the tree back; both come from `keras_crf_reid.cli`. Nothing here
imports TensorFlow: parsing flags and reading a run's settings stay cheap.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from keras_crf_reid import cli
from keras_crf_reid.configs.model import ModelConfig
from keras_crf_reid.configs.pairs import PairConfig
from keras_crf_reid.configs.train import FusionConfig, TrainConfig
from keras_crf_reid.configs.tta import TTAConfig
from keras_crf_reid.datasets import DATASETS
from keras_crf_reid.evaluation.baseline import DEFAULT_KIND, KINDS
from keras_crf_reid.geometry import GROUP_LEN, PARTS
from keras_crf_reid.options import option

ROWS = ("cnn", "rnn", "cnn_rnn", "fusion")
TRAIN_SPLITS = ("train", "all")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset to read (or generate) and how its identities are split."""

    dataset: str = option("synthetic", "Dataset reader.", choices=sorted(DATASETS))
    data_root: str = option("", "Dataset folder; several comma-separated two-camera folders are "
                            "pooled. Empty with --dataset=synthetic: generate one.")
    data_dir: str = option("data", "Where generated synthetic data is written.", results=False)
    cache_dir: str = option("cache", "Where decoded frames and optical flow are cached.",
                            results=False)
    num_ids: int = option(100, "Identities of the generated synthetic dataset.")
    synthetic_seed: int = option(0, "Seed of the generated synthetic dataset.")
    min_len: int | None = option(None, "Minimum tracklet length (default: the dataset's protocol).")
    on_bad_image: str = option("skip", "Unreadable frames: skip with a warning (counted) or fail.",
                               choices=("skip", "fail"))
    num_splits: int = option(10, "Random 50/50 identity splits (PRID-2011, iLIDS-VID).",
                             results=False)
    splits: tuple[int, ...] = option((), "Split indices to run (default: all --num_splits).",
                                     results=False)
    split_seed: int = option(0, "Seed of the random identity splits.")
    train_fraction: float = option(0.5, "Share of the identities trained on per random split; "
                                   "1.0 trains on all of them and needs --eval_data_root.")
    train_split: str = option("train", "With --eval_data_root, what of a --data_root with a fixed "
                              "split (MARS) trains: its training part (train) or every tracklet "
                              "of a real person, training and test folders alike (all; MARS "
                              "junk and distractor tracks excluded).", choices=TRAIN_SPLITS)
    eval_dataset: str = option("", "Reader of --eval_data_root (default: --dataset).",
                               choices=("",) + tuple(sorted(DATASETS)))
    eval_data_root: str = option("", "Evaluate on this separate dataset folder of unseen people "
                                 "(comma-separated folders are pooled): its probe/gallery "
                                 "cameras are query and gallery; every identity of --data_root "
                                 "(or --train_fraction of them) trains. Empty: split --data_root.")

    def __post_init__(self):
        if self.num_ids < 2:
            raise ValueError(f"--num_ids must be >= 2, got {self.num_ids}")
        if self.min_len is not None and self.min_len < 1:
            raise ValueError(f"--min_len must be >= 1, got {self.min_len}")
        if self.num_splits < 1:
            raise ValueError(f"--num_splits must be >= 1, got {self.num_splits}")
        if any(s < 0 for s in self.splits):
            raise ValueError(f"--splits must be split indices >= 0, got {list(self.splits)}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"--train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_fraction == 1.0 and not self.eval_data_root:
            raise ValueError("--train_fraction=1.0 trains on every identity of --data_root and "
                             "leaves none to test: give a separate --eval_data_root")
        if self.train_split == "all" and not self.eval_data_root:
            raise ValueError("--train_split=all trains on every tracklet of --data_root and "
                             "leaves none to test: give a separate --eval_data_root (e.g. "
                             "../shared/realdata/mot_tracklets/pets09_s2l1)")
        if self.eval_dataset and not self.eval_data_root:
            raise ValueError(f"--eval_dataset={self.eval_dataset} needs --eval_data_root (the "
                             f"folder of the evaluation people)")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The test protocol and what the report shows."""

    seq_len: int = option(GROUP_LEN, "Frames per evaluation group (also recorded in the export).",
                          flag="eval_seq_len")
    tta: TTAConfig = TTAConfig()
    baseline: bool = option(True, "Also report a hand-crafted nearest-neighbour baseline per "
                            "split (--baseline_kind).")
    baseline_kind: str = option(DEFAULT_KIND, "The report's baseline: stripe_hsv (HSV "
                                "histograms of 4 horizontal stripes, the standard one), hist "
                                "(per-frame standardised RGB histogram, weak on real people) "
                                "or pixel (keras_crf_reid/evaluation/baseline.py). Changing it "
                                "recomputes only the baseline row.", choices=KINDS, results=False)
    rerank: bool = option(False, "k-reciprocal re-ranking (Zhong et al. 2017; k1=20, k2=6, "
                          "lambda=0.3) of the query-gallery distances "
                          "(keras_crf_reid.evaluation.rerank).")
    ranked_queries: int = option(5, "Queries shown in the ranked-results figure.", results=False)
    ranked_top_k: int = option(5, "Gallery ranks shown per query in that figure.", results=False)

    def __post_init__(self):
        for name, flag in (("seq_len", "eval_seq_len"), ("ranked_queries", "ranked_queries"),
                           ("ranked_top_k", "ranked_top_k")):
            if getattr(self, name) < 1:
                raise ValueError(f"--{flag} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
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
                           choices=("default", "mirrored", "multi_worker"))
    rows: tuple[str, ...] = option((), "Ablation rows (any of cnn,rnn,cnn_rnn,fusion): train each "
                                   "on the same splits and report them side by side.",
                                   results=False)
    workers: int = option(1, "Splits trained in parallel processes.", results=False)
    threads: int = option(0, "TensorFlow intra/inter-op threads per worker (0: cores // "
                          "--workers).", results=False)
    worker_mode: bool = option(False, "Only compute the per-split files of --splits; no report "
                               "(a later plain run aggregates them).", results=False)

    def __post_init__(self):
        if not self.name or self.name in (".", "..") or "/" in self.name or os.sep in self.name \
                or ".." in self.name.split(os.sep):
            raise ValueError(f"--name must be a plain folder name (no path separator, not '.' or "
                             f"'..'), got {self.name!r}")
        bad = [r for r in self.rows if r not in ROWS]
        if bad:
            raise ValueError(f"--rows: unknown row(s) {bad}; choose from {','.join(ROWS)}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {self.threads}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    parts: tuple[str, ...] = option(("full",), "Part models to train: full,upper,lower; all "
                                    "three are also fused.", results=False)
    fusion: FusionConfig = FusionConfig()
    pairs: PairConfig = PairConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"--parts must be a non-empty subset of {','.join(PARTS)}, got "
                             f"{','.join(self.parts)}")
        if self.train.metric_loss.startswith("triplet") and self.pairs.sampler != "pk":
            raise ValueError(f"--metric_loss={self.train.metric_loss} needs identity batches: add "
                             "--sampler=pk (pair batches train the contrastive loss)")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.run.output_dir, self.run.name)

    @property
    def fuses(self) -> bool:
        """All three parts trained: the fusion model is learned too."""
        return set(self.parts) == set(PARTS)

    def flags(self) -> dict:
        """Every setting by its flag name (what flags.json records)."""
        return cli.flag_dict(self)

    def results_key(self) -> dict:
        """The settings a run's numbers depend on, by flag name (compared when resuming)."""
        return cli.flag_dict(self, results_only=True)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the experiment's flags (idempotent)."""
    cli.define_flags(ExperimentConfig, fv)


def config_from_flags(fv: flags.FlagValues = flags.FLAGS) -> ExperimentConfig:
    """The config tree from parsed flags; ValueError naming the flag for invalid values."""
    return cli.from_flags(ExperimentConfig, fv)


def replace(cfg: ExperimentConfig, **sections) -> ExperimentConfig:
    """`dataclasses.replace` on sections: replace(cfg, run={"name": "x"}, model={"variant": "cnn"})."""
    return dataclasses.replace(cfg, **{
        k: dataclasses.replace(getattr(cfg, k), **v) if isinstance(v, dict) else v
        for k, v in sections.items()})
