"""Settings of the gRPC client's command line (keras_crf_reid.serving.client); no TensorFlow."""
from __future__ import annotations

from keras_crf_reid.options import config_class, option


@config_class
class ClientConfig:
    """Which server and model the client asks, and what for."""

    target: str = option("127.0.0.1:8500", "host:port of TF Serving's gRPC endpoint.")
    model_name: str = option("crf_reid", "Model name as configured in the server.")
    version: int | None = option(None, "Model version to use (default: the server's latest).",
                                 lower_bound=0)
    tracklet_dir: str | None = option(None, "Folder of one tracklet's frames to embed.")
    output: str | None = option(None, "Save the embedding (D,) to this .npy file.")
    status: bool = option(False, "Print the model's version status.")
    metadata: bool = option(False, "Print the model's signatures.")
    timeout_s: float = option(10.0, "Per-call timeout in seconds.")
    retries: int = option(3, "Retries on UNAVAILABLE.", lower_bound=0)
    max_message_mb: int = option(64, "Largest message sent or received, in MB.", lower_bound=1)

    def __post_init__(self):
        if not self.timeout_s > 0:
            raise ValueError(f"--timeout_s must be positive, got {self.timeout_s}")
