"""Settings of the development gRPC server (keras_crf_reid.serving.server); no TensorFlow.

`ServerLimits` bounds what one request and all requests together may take (the server's limits
module enforces it); `ServerConfig` is the server's command line: what it serves, where, and
with which limits.
"""
from __future__ import annotations

from keras_crf_reid.options import config_class, option

# Seconds a version folder must stay unchanged before it is loaded (--settle_s).
SETTLE_S = 1.0


@config_class
class ServerLimits:
    """Request limits: sizes, batch and time-axis lengths, concurrency and per-request time."""

    max_message_mb: int = option(64, "Largest request or response message, in MB.", lower_bound=1)
    max_batch: int = option(64, "Largest batch size accepted.", lower_bound=1)
    max_frames: int = option(1024, "Largest number of frames T per sequence accepted.",
                             lower_bound=1)
    request_timeout_s: float = option(30.0, "Server-side limit on one request's inference time.")
    workers: int = option(4, "Threads handling RPCs and threads running inference.",
                          lower_bound=1)
    max_concurrent_rpcs: int = option(32, "RPCs in flight beyond which new ones get "
                                      "RESOURCE_EXHAUSTED.", lower_bound=1)
    max_queued: int = option(8, "Inference requests waiting for a worker beyond which new ones get "
                             "UNAVAILABLE.", lower_bound=0)
    max_inflight_mb: int = option(256, "Decoded input MB held by all requests at once beyond which "
                                  "new ones get RESOURCE_EXHAUSTED (at least --max_message_mb).",
                                  lower_bound=1)

    def __post_init__(self):
        if self.request_timeout_s <= 0:
            raise ValueError(f"--request_timeout_s must be positive, got {self.request_timeout_s}")
        if self.max_inflight_mb < self.max_message_mb:
            raise ValueError(f"--max_inflight_mb={self.max_inflight_mb} must be at least "
                             f"--max_message_mb={self.max_message_mb}")


@config_class
class ServerConfig:
    """What the server serves, where it listens, how it follows new versions, its limits."""

    model_base_path: str | None = option(None, "Directory holding integer version subdirectories.",
                                         required=True)
    model_name: str | None = option(None, "Model name clients ask for (default: basename of the "
                                    "base path).")
    host: str = option("127.0.0.1", "Interface to listen on (0.0.0.0 for all).")
    port: int = option(8500, "gRPC port (0 = pick a free one; the bound port is printed).",
                       lower_bound=0)
    port_file: str | None = option(None, "Write the bound port to this file once listening.")
    poll_s: float = option(1.0, "Seconds between scans of the base path for new versions (0: "
                           "never).", lower_bound=0)
    num_versions: int = option(1, "How many of the newest versions to keep loaded.", lower_bound=1)
    settle_s: float = option(SETTLE_S, "Seconds a version folder must stay unchanged before it is "
                             "loaded (a folder still being copied is not served).", lower_bound=0)
    parent_fd: int | None = option(None, "An inherited pipe's read end: stop when it is closed, "
                                   "i.e. when the process holding its write end exits (set by "
                                   "`spawn`).", lower_bound=0)
    orphan_cleanup_dir: str | None = option(None, "With --parent_fd: a folder to remove when the "
                                            "server stops because that process is gone (spawn's "
                                            "temp folder).")
    limits: ServerLimits = ServerLimits()
