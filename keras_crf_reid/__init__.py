"""keras_crf_reid: CNN and RNN Fusion (CRF) networks for video-based person re-identification."""
import os

# TensorFlow's C++ info/warning chatter (oneDNN notices, cost-model messages) drowns progress
# bars; users can still override this by setting the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def load(path: str, batch_size: int = 16, group_len: int | None = None,
         colour_norm: str | None = None, call_frames: int | None = None):
    """Loads a trained model (SavedModel version dir or base path, or a .keras file) for inference.

    Returns an object with `.predict(frames)` and `.embed(tracklet_dir)` (tracklets cut into the
    frame groups the model was evaluated with, colour normalised as it was trained; both read
    from the export unless given). `embed` passes at most `call_frames` frames (whole groups) through
    the model at once, so its memory does not grow with the tracklet; see
    keras_crf_reid.serving.inference.
    """
    from keras_crf_reid.serving.inference import load as _load
    return _load(path, batch_size, group_len, colour_norm, call_frames)
