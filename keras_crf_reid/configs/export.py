"""Settings of the export command line (keras_crf_reid.serving.export); no TensorFlow."""
from __future__ import annotations

from keras_crf_reid.configs.model import CHECKPOINT_PARTS, ModelConfig
from keras_crf_reid.configs.tta import TTAConfig
from keras_crf_reid.geometry import GROUP_LEN
from keras_crf_reid.options import config_class, option


@config_class
class ExportConfig:
    """Which model is exported (a .keras file, or a checkpoint rebuilt from the model and TTA
    settings), with which frame-group length, to which version of which base path."""

    keras_model: str | None = option(None, "A .keras model file to export.")
    checkpoint: str | None = option(None, "A trainer checkpoint prefix or directory; the model is "
                                    "rebuilt from the model flags (--variant, --filters, ...) and "
                                    "--part.")
    part: str = option("full", "Which model the --checkpoint holds: a body part or the fusion of "
                       "all three.", choices=CHECKPOINT_PARTS)
    model: ModelConfig = ModelConfig()
    tta: TTAConfig = TTAConfig()
    group_len: int = option(GROUP_LEN, "Frames per group when embedding tracklets (the run's "
                            "--eval_seq_len).", lower_bound=1)
    model_base_path: str | None = option(None, "Base directory; the export goes to "
                                         "<base>/<version>.", required=True)
    version: int | None = option(None, "Version number (default: latest existing + 1).",
                                 lower_bound=0)
    overwrite: bool = option(False, "Atomically replace an existing version.")
