"""Shared pieces of the loopback load tests (load_test_server.py, load_test_flood.py)."""
from __future__ import annotations

import os


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def spawn_server(tmp: str, model_base_path: str | None, workers: int):
    """Starts the development server on `model_base_path` (default: a fresh default-config model
    exported under tmp); returns (process, port, model name)."""
    from keras_crf_reid.serving.server.launch import spawn
    base = model_base_path
    if base is None:
        from keras_crf_reid.models.network import ModelConfig, build_crf_model
        from keras_crf_reid.serving.export import export_saved_model

        base = os.path.join(tmp, "crf_reid")
        export_saved_model(build_crf_model(ModelConfig()), base)
    proc, port = spawn(base, f"--workers={workers}", "--poll_s=0")
    return proc, port, os.path.basename(os.path.abspath(base))
