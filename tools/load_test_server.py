"""Load test of the development gRPC server: N clients for D seconds, on 127.0.0.1 only.

Runs the server in a subprocess (default: a fresh default-config CRF export in a temp directory),
then --clients threads, each with its own channel, send one-sequence requests for --duration_s
seconds. With --invalid_every=K every K-th request of a client is deliberately invalid (NaN
values, wrong width, or T = 0 in turn) and must be rejected with INVALID_ARGUMENT; any other
failure counts as an error. Server RSS is read from /proc before and after the load. Prints one
JSON object and exits non-zero if there were errors, the server died, or its resident memory
grew by more than --max_rss_growth_mb.

    python tools/load_test_server.py [--clients=8 --duration_s=30 --invalid_every=10]
"""
from __future__ import annotations

import collections
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_crf_reid.serving.client import ReidClient  # noqa: E402
from loadtest import rss_mb, spawn_server  # noqa: E402  (tools/, beside this script)

flags.DEFINE_string("model_base_path", None, "Serve this export instead of a fresh default-config model.")
flags.DEFINE_integer("clients", 8, "Concurrent clients.", lower_bound=1, upper_bound=64)
flags.DEFINE_float("duration_s", 30.0, "Load duration in seconds.", lower_bound=1, upper_bound=600)
flags.DEFINE_integer("frames", 16, "Frames per sequence.", lower_bound=1)
flags.DEFINE_integer("invalid_every", 0, "Every K-th request is invalid (0: none).", lower_bound=0)
flags.DEFINE_integer("workers", 4, "Server --workers.", lower_bound=1)
flags.DEFINE_float("max_rss_growth_mb", 150.0, "Fail if the server's RSS grows more than this "
                   "during the load (after a 5-request warm-up).", lower_bound=0)
FLAGS = flags.FLAGS



def invalid_input(i: int, good: np.ndarray) -> np.ndarray:
    kind = i % 3
    if kind == 0:
        bad = good.copy()
        bad[0, 0, 0, 0, 0] = np.nan
        return bad
    if kind == 1:
        return good[:, :, :, :32]
    return good[:, :0]


def run_load(target: str, model_name: str, x: np.ndarray, clients: int, duration_s: float,
             invalid_every: int) -> dict:
    lat: list[float] = []
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def client_loop():
        with ReidClient(target, model_name=model_name, timeout_s=60, retries=0) as client:
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                invalid = invalid_every and i % invalid_every == 0
                t0 = time.perf_counter()
                try:
                    client.predict(invalid_input(i // invalid_every, x) if invalid else x)
                    outcome = "unexpected_ok" if invalid else "ok"
                except grpc.RpcError as e:
                    outcome = ("rejected" if invalid and e.code() == grpc.StatusCode.INVALID_ARGUMENT
                               else f"error_{e.code().name}")
                ms = 1000 * (time.perf_counter() - t0)
                with lock:
                    counts[outcome] += 1
                    if outcome == "ok":
                        lat.append(ms)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    a = np.asarray(lat) if lat else np.zeros(1)
    return {"clients": clients, "duration_s": round(elapsed, 2), "requests": sum(counts.values()),
            "ok": counts["ok"], "rejected_as_expected": counts["rejected"],
            "errors": {k: v for k, v in counts.items() if k not in ("ok", "rejected")},
            "ok_per_s": round(counts["ok"] / elapsed, 2),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    with tempfile.TemporaryDirectory(prefix="load-test-") as tmp:
        proc, port, name = spawn_server(tmp, FLAGS.model_base_path, FLAGS.workers)
        target = f"127.0.0.1:{port}"
        try:
            x = np.random.default_rng(0).normal(size=(1, FLAGS.frames, 128, 64, 5)).astype(np.float32)
            with ReidClient(target, model_name=name, timeout_s=60) as client:
                for _ in range(5):
                    client.predict(x)
            before = rss_mb(proc.pid)
            load = run_load(target, name, x, FLAGS.clients, FLAGS.duration_s, FLAGS.invalid_every)
            alive = proc.poll() is None
            after = rss_mb(proc.pid) if alive else None
            if alive:
                with ReidClient(target, model_name=name, timeout_s=60) as client:
                    client.predict(x)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {"benchmark": "load_test_server", "target": target, "model_base_path": FLAGS.model_base_path,
              "invalid_every": FLAGS.invalid_every, **load, "server_alive": alive,
              "server_rss_mb": {"before": before, "after": after,
                                "growth": round(after - before, 1) if after is not None else None}}
    result["rss_bound_mb"] = FLAGS.max_rss_growth_mb
    print(json.dumps(result))
    if load["errors"] or not alive or result["server_rss_mb"]["growth"] > FLAGS.max_rss_growth_mb:
        raise SystemExit(1)


if __name__ == "__main__":
    app.run(main)
