"""keras_crf_reid: CNN and RNN Fusion (CRF) networks for video-based person re-identification."""
import os

# TensorFlow's C++ info/warning chatter (oneDNN notices, cost-model messages) drowns progress
# bars; users can still override this by setting the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
