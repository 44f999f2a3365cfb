"""Settings of one CRF network (keras_crf_reid.models.network builds it); no TensorFlow here."""
from __future__ import annotations

import dataclasses

from keras_crf_reid.geometry import (COLOUR_NORMS, DEFAULT_COLOUR_NORM, FRAME_WIDTH, PARTS,
                                     check_colour_norm, part_height)
from keras_crf_reid.options import option

VARIANTS = ("cnn", "rnn", "cnn_rnn")
FLOW_NORMS = ("fixed", "frame_std")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one CRF network (defaults: the paper's)."""

    variant: str = option("cnn_rnn", "Embedding: x_C (cnn), x_R (rnn) or x_F = x_C + x_R.",
                          choices=VARIANTS)
    filters: tuple[int, ...] = option((16, 32, 32), "Filters of the conv blocks.")
    kernel_size: int = option(5, "Conv kernel size.")
    embed_dim: int = option(128, "Embedding size.")
    dropout: float = option(0.5, "Dropout before the CNN's dense layer.")
    flow_norm: str = option("fixed", "Flow channels: fixed +-8 px scale (paper) or per-frame, "
                            "per-channel standardisation inside the model.", choices=FLOW_NORMS)
    batch_norm: bool = option(False, "BatchNormalization after each conv, before pooling (a "
                              "variant; not in the paper).")
    # Here rather than in DataConfig: what a trained model expects as input depends on it, so it
    # travels with the model (export model_info, TTA views), though the network never reads it.
    colour_norm: str = option(DEFAULT_COLOUR_NORM, "Colour channels of the model input: "
                              "frame_std standardises each YUV channel of each frame (paper; "
                              "discards mean colour), fixed uses constant dataset-level offsets "
                              "and scales (geometry.YUV_FIXED_MEAN/STD; keeps mean colour). "
                              "Training, evaluation, TTA and the export all apply it.",
                              choices=COLOUR_NORMS)
    part: str = option("full", "Body part the model sees (the runner sets it per part model).",
                       cli=False, results=False)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        check_colour_norm(self.colour_norm, "--colour_norm")
        if self.flow_norm not in FLOW_NORMS:
            raise ValueError(f"--flow_norm must be one of {FLOW_NORMS}, got {self.flow_norm!r}")
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"--batch_norm must be a bool, got {self.batch_norm!r}")
        if not self.filters or any(int(f) <= 0 for f in self.filters):
            raise ValueError(f"--filters must be positive integers, got {self.filters!r}")
        if self.kernel_size < 1:
            raise ValueError(f"--kernel_size must be >= 1, got {self.kernel_size}")
        if self.embed_dim < 1:
            raise ValueError(f"--embed_dim must be >= 1, got {self.embed_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.part not in PARTS:
            raise ValueError(f"--part must be one of {', '.join(PARTS)}, got {self.part!r}")
        down = 2 ** len(self.filters)
        if self.input_height % down or FRAME_WIDTH % down:
            raise ValueError(f"--filters: {len(self.filters)} max-pooling stages need an input "
                             f"divisible by {down}; the {self.part} input is "
                             f"{self.input_height}x{FRAME_WIDTH}")

    @property
    def input_height(self) -> int:
        """Rows the CNN sees after the model's own crop to its body part."""
        return part_height(self.part)
