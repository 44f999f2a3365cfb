"""Short-deadline flood of the development gRPC server, on 127.0.0.1 only (issue 13, item 1).

Runs the server in a subprocess (default: a fresh default-config CRF export in a temp directory)
and measures a valid one-sequence request's latency (--probes sequential requests) before the
flood. Then --clients threads send, for --duration_s seconds, Predict requests on --signature
with a --flood_deadline_s deadline whose TensorProtos hold one value each and the shape
[1, --flood_frames, 128, 64, C]: a few bytes on the wire, 62 MB once decoded at 380 frames for
serving_default (frames, C=5), 33 MB for embed_raw (rgb uint8 C=3, flow float32 C=2).
Right after the flood the valid request's latency is measured again, and server RSS is read from
/proc before, at its peak during, and after the flood. Prints one JSON object and exits non-zero
if the server died, a valid request failed, RSS grew by more than --max_rss_growth_mb, or the
valid request's p99 after the flood is more than --max_p99_ratio times its p99 before.

    python tools/load_test_flood.py [--signature=embed_raw --clients=8 --duration_s=6 --model_base_path=...]
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
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from keras_crf_reid.serving.contract import FLOW_INPUT, INPUT_NAME, RAW_SIGNATURE, RGB_INPUT, SERVING_SIGNATURE  # noqa: E402
from loadtest import rss_mb, spawn_server  # noqa: E402  (tools/, beside this script)

flags.DEFINE_enum("signature", SERVING_SIGNATURE, [SERVING_SIGNATURE, RAW_SIGNATURE],
                  "Signature both the flood and the valid requests use.")
flags.DEFINE_string("model_base_path", None, "Serve this export instead of a fresh default-config model.")
flags.DEFINE_integer("clients", 8, "Concurrent flooding clients.", lower_bound=1, upper_bound=64)
flags.DEFINE_float("duration_s", 6.0, "Flood duration in seconds.", lower_bound=0.5, upper_bound=120)
flags.DEFINE_float("flood_deadline_s", 0.3, "Client deadline of each flood request.", lower_bound=0.01)
flags.DEFINE_integer("flood_frames", 380, "Frames T of the flood tensor's shape.", lower_bound=1)
flags.DEFINE_integer("probes", 30, "Sequential valid requests measured before and after.", lower_bound=2)
flags.DEFINE_integer("frames", 16, "Frames of the valid request.", lower_bound=1)
flags.DEFINE_integer("workers", 4, "Server --workers.", lower_bound=1)
flags.DEFINE_float("max_rss_growth_mb", 1024.0, "Fail if the server's RSS after the flood exceeds its "
                   "RSS before by more than this.", lower_bound=0)
flags.DEFINE_float("max_p99_ratio", 10.0, "Fail if the valid request's p99 after the flood exceeds "
                   "this times its p99 before.", lower_bound=1)
FLAGS = flags.FLAGS



# Inputs of each signature: alias -> (dtype, channels).
INPUTS = {SERVING_SIGNATURE: {INPUT_NAME: (tf.float32, 5)},
          RAW_SIGNATURE: {RGB_INPUT: (tf.uint8, 3), FLOW_INPUT: (tf.float32, 2)}}


def request(name: str, signature: str, protos: dict) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    for alias, proto in protos.items():
        req.inputs[alias].CopyFrom(proto)
    return req


def valid_request(name: str, signature: str, frames: int) -> predict_pb2.PredictRequest:
    """One sequence of random values of every input of `signature`."""
    rng = np.random.default_rng(0)
    protos = {}
    for alias, (dtype, c) in INPUTS[signature].items():
        shape = (1, frames, 128, 64, c)
        x = rng.integers(0, 256, shape) if dtype == tf.uint8 else rng.normal(size=shape)
        protos[alias] = tf.make_tensor_proto(x.astype(dtype.as_numpy_dtype))
    return request(name, signature, protos)


def flood_request(name: str, signature: str, frames: int) -> tuple[predict_pb2.PredictRequest, float]:
    """A request of one value per input shaped as `frames` frames, and its decoded size in MB."""
    protos, nbytes = {}, 0
    for alias, (dtype, c) in INPUTS[signature].items():
        shape = [1, frames, 128, 64, c]
        protos[alias] = tf.make_tensor_proto(7 if dtype == tf.uint8 else 0.1, dtype, shape=shape)
        nbytes += int(np.prod(shape)) * dtype.size
    return request(name, signature, protos), round(nbytes / 2 ** 20, 1)


def probe(stub, req, n: int) -> dict:
    """Latencies of n sequential valid requests (60 s deadline each)."""
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        stub.Predict(req, timeout=60)
        lat.append(1000 * (time.perf_counter() - t0))
    a = np.asarray(lat)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2)}


def flood(target: str, req, clients: int, duration_s: float, deadline_s: float, pid: int) -> dict:
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s
    peak = [rss_mb(pid)]

    def client_loop():
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while time.monotonic() < stop_at:
                try:
                    stub.Predict(req, timeout=deadline_s)
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                with lock:
                    counts[code] += 1

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak.append(rss_mb(pid))
        time.sleep(0.1)
    for t in threads:
        t.join()
    return {"clients": clients, "duration_s": duration_s, "deadline_s": deadline_s,
            "requests": sum(counts.values()), "codes": dict(counts), "rss_peak_mb": max(peak)}


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    with tempfile.TemporaryDirectory(prefix="load-test-flood-") as tmp:
        proc, port, name = spawn_server(tmp, FLAGS.model_base_path, FLAGS.workers)
        target = f"127.0.0.1:{port}"
        valid = valid_request(name, FLAGS.signature, FLAGS.frames)
        big, decoded_mb = flood_request(name, FLAGS.signature, FLAGS.flood_frames)
        failure = None
        try:
            with grpc.insecure_channel(target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                for _ in range(5):
                    stub.Predict(valid, timeout=60)
                rss_before = rss_mb(proc.pid)
                before = probe(stub, valid, FLAGS.probes)
                load = flood(target, big, FLAGS.clients, FLAGS.duration_s, FLAGS.flood_deadline_s, proc.pid)
                alive = proc.poll() is None
                after = rss_after = None
                if alive:
                    try:
                        after = probe(stub, valid, FLAGS.probes)
                    except grpc.RpcError as e:
                        failure = f"valid request after the flood failed: {e.code().name}: {e.details()}"
                    rss_after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {"benchmark": "load_test_flood", "target": target, "model_base_path": FLAGS.model_base_path,
              "signature": FLAGS.signature,
              "flood_tensor": {"frames": FLAGS.flood_frames, "wire_bytes": big.ByteSize(),
                               "decoded_mb": decoded_mb},
              "flood": load, "server_alive": alive, "valid_before": before, "valid_after": after,
              "p99_ratio": round(after["p99_ms"] / before["p99_ms"], 2) if after else None,
              "server_rss_mb": {"before": rss_before, "peak": load["rss_peak_mb"], "after": rss_after,
                                "growth": round(rss_after - rss_before, 1) if rss_after else None},
              "bounds": {"max_rss_growth_mb": FLAGS.max_rss_growth_mb, "max_p99_ratio": FLAGS.max_p99_ratio},
              "failure": failure}
    if failure is None and not alive:
        failure = "server died during the flood"
    elif failure is None and result["server_rss_mb"]["growth"] > FLAGS.max_rss_growth_mb:
        failure = f"server RSS grew by {result['server_rss_mb']['growth']} MB > {FLAGS.max_rss_growth_mb}"
    elif failure is None and result["p99_ratio"] > FLAGS.max_p99_ratio:
        failure = f"valid p99 after the flood is {result['p99_ratio']}x the p99 before > {FLAGS.max_p99_ratio}"
    result["failure"] = failure
    print(json.dumps(result))
    if failure:
        raise SystemExit(1)


if __name__ == "__main__":
    app.run(main)
