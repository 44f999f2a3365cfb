"""keras_crf_reid: CNN and RNN Fusion (CRF) networks for video-based person re-identification."""
import os

# TensorFlow's C++ info/warning chatter (oneDNN notices, cost-model messages) drowns progress
# bars; users can still override this by setting the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def load(path: str):
    """Loads a trained model (SavedModel version dir or base path, or a .keras file) for inference.

    Returns an object with `.predict(frames)` and `.embed(tracklet_dir)`; see keras_crf_reid.inference.
    """
    from keras_crf_reid.inference import load as _load
    return _load(path)
