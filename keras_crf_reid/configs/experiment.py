"""The one config tree of an experiment; every default lives in the dataclasses it nests.

    ExperimentConfig
      data:  DataConfig       which dataset, where, splits (configs/data.py)
      model: ModelConfig      the CRF network (configs/model.py; models/network.py builds it)
      parts                   body-part models trained
      fusion: FusionConfig    how the three fusion weights are learned (configs/train.py)
      pairs: PairConfig       pair or P x K sampling and augmentation (configs/pairs.py)
      train: TrainConfig      optimisation (configs/train.py; training/trainer.py acts on it)
      eval:  EvalConfig       test protocol, report, test-time augmentation (configs/evaluation.py)
      run:   RunConfig        names, outputs, rows of an ablation, processes (configs/run.py)

`define_flags()` makes one absl flag per leaf (named after the field, e.g. --seq_len) and
`config_from_flags()` builds the tree back; both come from `keras_crf_reid.cli`. Nothing here
imports TensorFlow: parsing flags and reading a run's settings stay cheap.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from keras_crf_reid import cli
from keras_crf_reid.configs.data import DataConfig
from keras_crf_reid.configs.evaluation import EvalConfig
from keras_crf_reid.configs.model import CHECKPOINT_PARTS, ModelConfig
from keras_crf_reid.configs.pairs import PairConfig
from keras_crf_reid.configs.run import RunConfig
from keras_crf_reid.configs.train import FusionConfig, TrainConfig
from keras_crf_reid.geometry import PARTS
from keras_crf_reid.options import config_class, option

# The seed of one model of one split (keras_crf_reid.runner.split.entry_seed): --seed, plus
# SPLIT_SEED_STRIDE per split index, plus the model's offset, so every model of every split has
# its own weights and training pairs.
SPLIT_SEED_STRIDE = 1000
PART_SEED_OFFSETS = {p: k for k, p in enumerate(PARTS)}
FUSION_SEED_OFFSET = 7


@config_class
class ExperimentConfig:
    """Everything one run needs."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    parts: tuple[str, ...] = option(("full",), "Part models to train: full,upper,lower; all "
                                    "three are also fused.", results=False, choices=PARTS)
    fusion: FusionConfig = FusionConfig()
    pairs: PairConfig = PairConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        if not self.parts or len(set(self.parts)) != len(self.parts):
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


@config_class
class CheckpointEvalConfig:
    """`python -m keras_crf_reid.evaluate`: one trained checkpoint scored on the first of
    --splits, with the data and model settings of its run."""

    experiment: ExperimentConfig = ExperimentConfig()
    checkpoint: str | None = option(None, "Checkpoint prefix or folder (latest checkpoint used).",
                                    required=True)
    part: str = option("full", "Which model the checkpoint holds: a body part or the fusion of "
                       "all three.", choices=CHECKPOINT_PARTS)


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
