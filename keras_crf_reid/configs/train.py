"""Optimisation settings: the part models' (TrainConfig) and the fusion weights' (FusionConfig).

No TensorFlow here: keras_crf_reid.training.trainer and keras_crf_reid.training.losses act on
these settings.
"""
from __future__ import annotations

import dataclasses
import math

from keras_crf_reid.options import config_class, option

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
METRIC_LOSSES = ("contrastive", "triplet", "triplet_soft")
ON_NAN = ("stop", "skip")

# Training policy of keras_crf_reid.training.trainer, fixed rather than flags.
STEP_DECAY_AT = (0.5, 0.75)  # --lr_schedule=step: fractions of --steps where the rate drops
STEP_DECAY_FACTOR = 0.1  # ... and the factor it is multiplied by at each
RUNNING_LOSS_WEIGHTS = (0.9, 0.1)  # running loss = old * w[0] + new * w[1] (logs, checkpoints)
MIN_FINITE = 0.999  # a step whose finite flag (1.0 or 0.0 per replica, averaged) is below: NaN


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """W1 (siamese), W2 and W3 (softmax of each side of the pair)."""

    siamese: float = 1.0
    softmax_a: float = 1.0
    softmax_b: float = 1.0


@config_class
class TrainConfig:
    """Optimisation settings (defaults: the paper's where it gives them)."""

    steps: int = option(1000, "Training steps per part model.", extendable=True, lower_bound=0)
    optimizer: str = option("sgd", "Optimizer.", choices=OPTIMIZERS)
    learning_rate: float = option(1e-3, "Learning rate.")
    momentum: float = option(0.9, "SGD momentum.")
    clipnorm: float = option(10.0, "Gradient clipping by global norm.")
    margin: float = option(2.0, "Contrastive margin alpha.")
    weights: LossWeights = option(LossWeights(), "W1 (siamese), W2, W3 (softmax of each side). "
                                  "With --sampler=pk: W1 weights the metric loss and W2 + W3 "
                                  "the identity softmax of every sequence.", flag="loss_weights")
    metric_loss: str = option("contrastive", "Metric loss: contrastive (the paper's; on a P x K "
                              "batch over all its positive and negative pairs) or triplet "
                              "(batch-hard, needs --sampler=pk) or triplet_soft (batch-hard "
                              "with the soft margin log(1 + exp(.)) of Hermans et al.).",
                              choices=METRIC_LOSSES)
    triplet_margin: float = option(0.3, "Margin of the batch-hard triplet loss "
                                   "(--metric_loss=triplet; triplet_soft has none).")
    ckpt_every: int = option(200, "Checkpoint every N steps (0: only at the end).", results=False,
                             lower_bound=0)
    max_to_keep: int = option(3, "Checkpoints kept per model.", results=False, lower_bound=1)
    log_every: int = option(100, "Steps between TensorBoard loss summaries and, without a "
                           "progress bar, one printed log line.", results=False, lower_bound=1)
    eval_every: int = option(0, "Evaluate on the test split every N steps (0: at the end only).",
                            results=False, lower_bound=0)
    on_nan: str = option("stop", "Non-finite loss: stop, or skip the batch.", choices=ON_NAN)
    mixed_precision: bool = option(False, "mixed_float16 compute (GPU).")
    jit_compile: bool = option(False, "XLA-compile the training step.")
    lr_schedule: str = option("constant", "Learning-rate decay over --steps: constant, cosine to "
                              f"0, or step (x{STEP_DECAY_FACTOR} at "
                              f"{' and '.join(f'{a:.0%}' for a in STEP_DECAY_AT)}).",
                              choices=LR_SCHEDULES)
    warmup_steps: int = option(0, "Steps of linear learning-rate warmup before the schedule.",
                               lower_bound=0)
    weight_decay: float = option(0.0, "Decoupled weight decay of the optimizer (0: none).",
                                 lower_bound=0)

    def __post_init__(self):
        for name in ("learning_rate", "clipnorm", "margin", "triplet_margin"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"--{name} must be a finite number > 0, got {v}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        w = dataclasses.astuple(self.weights)
        if not all(math.isfinite(x) and x >= 0 for x in w) or not any(w):
            raise ValueError(f"--loss_weights must be finite, >= 0 and not all 0, got {w}")


@config_class
class FusionConfig:
    """Learning W_u, W_l, W_g with the part models frozen (the other settings: TrainConfig's).

    By default only the metric loss is used (W2 = W3 = 0): the three scalars rescale a fixed
    embedding space, and an identity classifier trained from scratch on top of it would
    mostly learn its own weights rather than inform the fusion weights.
    """

    steps: int = option(100, "Steps learning the three fusion weights.", flag="fusion_steps",
                        extendable=True, lower_bound=0)
    optimizer: str = option("adam", "Optimizer of the fusion weights.", flag="fusion_optimizer",
                            choices=OPTIMIZERS)
    learning_rate: float = option(1e-2, "Learning rate of the fusion weights.",
                                  flag="fusion_learning_rate")
    weights: LossWeights = option(LossWeights(1.0, 0.0, 0.0), "Loss weights W1 (siamese), W2, W3 "
                                  "(softmax of each side) while learning the fusion weights.",
                                  flag="fusion_loss_weights")

    def __post_init__(self):
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--fusion_learning_rate must be a finite number > 0, got "
                             f"{self.learning_rate}")
        w = dataclasses.astuple(self.weights)
        if not all(math.isfinite(x) and x >= 0 for x in w) or not any(w):
            raise ValueError(f"--fusion_loss_weights must be finite, >= 0 and not all 0, got {w}")
