"""keras_crf_reid: CNN and RNN Fusion (CRF) networks for video-based person re-identification."""
__version__ = "0.1.0"
