"""Benchmarks gRPC serving of the real-size CRF model: one-sequence latency and concurrent throughput.

Exports a default-config CRF model (random weights: speed does not depend on them) to a temp
directory unless --model_base_path is given, runs the development server in a subprocess on a
free 127.0.0.1 port, and measures with `ReidClient` (so client-side encoding is included):
  latency: p50/p99 of --requests sequential requests of one --frames-frame sequence, after --warmup;
  throughput: --concurrency clients, each on its own channel, for --duration_s seconds.
Prints one JSON object.

    python tools/bench_serving.py [--duration_s=10 --concurrency=8 --frames=16]
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_crf_reid.serving.client import ReidClient  # noqa: E402
from keras_crf_reid.serving.server.launch import spawn  # noqa: E402

flags.DEFINE_string("model_base_path", None, "Serve this export instead of a fresh default-config model.")
flags.DEFINE_integer("frames", 16, "Frames per sequence.", lower_bound=1)
flags.DEFINE_integer("warmup", 20, "Requests before measuring latency.", lower_bound=0)
flags.DEFINE_integer("requests", 100, "Sequential requests timed for latency.", lower_bound=1)
flags.DEFINE_integer("concurrency", 8, "Concurrent clients in the throughput phase.", lower_bound=1)
flags.DEFINE_float("duration_s", 10.0, "Length of the throughput phase.", lower_bound=0.5)
flags.DEFINE_integer("workers", 4, "Server --workers.", lower_bound=1)
FLAGS = flags.FLAGS


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)} if len(a) else {}


def export_default_model(base: str) -> dict:
    """Exports build_crf_model(ModelConfig()) to base/1; returns a description."""
    from keras_crf_reid.models.network import ModelConfig, build_crf_model
    from keras_crf_reid.serving.export import export_saved_model

    model = build_crf_model(ModelConfig())
    export_saved_model(model, base)
    return {"config": "ModelConfig() (paper defaults)", "params": int(model.count_params())}


def throughput(target: str, x: np.ndarray, concurrency: int, duration_s: float) -> dict:
    lat: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def worker():
        with ReidClient(target, timeout_s=60, retries=0) as client:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    client.predict(x)
                    with lock:
                        lat.append(1000 * (time.perf_counter() - t0))
                except grpc.RpcError as e:
                    with lock:
                        errors[e.code().name] = errors.get(e.code().name, 0) + 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return {"concurrency": concurrency, "duration_s": round(elapsed, 2), "requests": len(lat),
            "errors": errors, "requests_per_s": round(len(lat) / elapsed, 2),
            "sequences_per_s": round(len(lat) * len(x) / elapsed, 2), **percentiles(lat)}


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        base = FLAGS.model_base_path
        model = {"model_base_path": base}
        if base is None:
            base = os.path.join(tmp, "crf_reid")
            model = export_default_model(base)
        proc, port = spawn(base, f"--workers={FLAGS.workers}", "--poll_s=0")
        target = f"127.0.0.1:{port}"
        try:
            x = np.random.default_rng(0).normal(size=(1, FLAGS.frames, 128, 64, 5)).astype(np.float32)
            with ReidClient(target, model_name=os.path.basename(os.path.abspath(base)), timeout_s=60) as client:
                for _ in range(FLAGS.warmup):
                    client.predict(x)
                lat = []
                for _ in range(FLAGS.requests):
                    t0 = time.perf_counter()
                    client.predict(x)
                    lat.append(1000 * (time.perf_counter() - t0))
            result = {
                "benchmark": "bench_serving",
                "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
                "server": "keras_crf_reid.serving.server (subprocess, 127.0.0.1, grpc)",
                "model": model,
                "request": {"shape": list(x.shape), "bytes": int(x.nbytes)},
                "latency": {"warmup": FLAGS.warmup, "requests": FLAGS.requests, **percentiles(lat)},
                "throughput": throughput(target, x, FLAGS.concurrency, FLAGS.duration_s),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
