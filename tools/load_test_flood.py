"""Short-deadline flood of the development gRPC server, on 127.0.0.1 only (issues 13 and 29).

Runs the server in a subprocess (default: a fresh default-config CRF export in a temp directory)
and measures a valid one-sequence request on --valid_signature (--probes sequential requests)
before the flood. Then --clients threads send, for --duration_s seconds, Predict requests on
--signature with a --deadline deadline whose TensorProtos hold one value each and the shape
[1, --flood_frames, 128, 64, C]: a few bytes on the wire, 62 MB once decoded at 380 frames for
serving_default (frames, C=5), 33 MB for embed_raw (rgb uint8 C=3, flow float32 C=2). With the
default --valid_signature (serving_default), a flood on embed_raw is the first embed_raw call
the server sees unless the export's warm-up covers it.
Right after the flood it times the first valid request and then --probes_after more, and reads
the server's RSS from /proc before, at its peak during, right after and --settle_s after the
flood. Each of --repeat repetitions runs on a fresh server and prints one JSON object; the script
exits non-zero if in any of them the server died, a valid request failed, RSS grew by more than
--max_rss_growth_mb, or the first valid request after the flood or the p99 of the next ones took
more than --max_p99_ratio times the p99 before.

    python tools/load_test_flood.py --signature=embed_raw --deadline=0.3 --repeat=3 \
        [--clients=8 --duration_s=6 --model_base_path=saved_models/crf_mars_sample]
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
                  "Signature the flood requests use.")
flags.DEFINE_enum("valid_signature", SERVING_SIGNATURE, [SERVING_SIGNATURE, RAW_SIGNATURE],
                  "Signature the valid requests before and after the flood use.")
flags.DEFINE_string("model_base_path", None, "Serve this export instead of a fresh default-config model.")
flags.DEFINE_integer("clients", 8, "Concurrent flooding clients.", lower_bound=1, upper_bound=64)
flags.DEFINE_float("duration_s", 6.0, "Flood duration in seconds.", lower_bound=0.5, upper_bound=120)
flags.DEFINE_float("deadline", 0.3, "Client deadline of each flood request, in seconds.", lower_bound=0.01)
flags.DEFINE_integer("flood_frames", 380, "Frames T of the flood tensor's shape.", lower_bound=1)
flags.DEFINE_integer("probes", 30, "Sequential valid requests measured before the flood.", lower_bound=2)
flags.DEFINE_integer("probes_after", 10, "Sequential valid requests measured after the first one "
                     "after the flood.", lower_bound=1)
flags.DEFINE_integer("repeat", 1, "Repetitions, each on a fresh server.", lower_bound=1)
flags.DEFINE_float("settle_s", 2.0, "Seconds after the last probe at which RSS is read again (work "
                   "still running after its callers left would make it grow).", lower_bound=0)
flags.DEFINE_integer("frames", 16, "Frames of the valid request.", lower_bound=1)
flags.DEFINE_integer("workers", 4, "Server --workers.", lower_bound=1)
flags.DEFINE_float("max_rss_growth_mb", 200.0, "Fail if the server's RSS after the flood exceeds its "
                   "RSS before by more than this.", lower_bound=0)
flags.DEFINE_float("max_p99_ratio", 10.0, "Fail if the first valid request after the flood, or the "
                   "p99 of the next ones, exceeds this times the p99 before.", lower_bound=1)
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


def repetition(tmp: str) -> dict:
    """One flood against a fresh server; the JSON-ready result with "failure" (None if it passed)."""
    proc, port, name = spawn_server(tmp, FLAGS.model_base_path, FLAGS.workers)
    target = f"127.0.0.1:{port}"
    valid = valid_request(name, FLAGS.valid_signature, FLAGS.frames)
    big, decoded_mb = flood_request(name, FLAGS.signature, FLAGS.flood_frames)
    failure = after = first_ms = rss_after = rss_later = None
    try:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(5):
                stub.Predict(valid, timeout=60)
            rss_before = rss_mb(proc.pid)
            before = probe(stub, valid, FLAGS.probes)
            load = flood(target, big, FLAGS.clients, FLAGS.duration_s, FLAGS.deadline, proc.pid)
            alive = proc.poll() is None
            if alive:
                try:
                    first_ms = probe(stub, valid, 1)["max_ms"]
                    after = probe(stub, valid, FLAGS.probes_after)
                except grpc.RpcError as e:
                    failure = f"valid request after the flood failed: {e.code().name}: {e.details()}"
                rss_after = rss_mb(proc.pid)
                time.sleep(FLAGS.settle_s)
                rss_later = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    growth = round(max(rss_after, rss_later) - rss_before, 1) if rss_later else None
    ratio = round(max(first_ms, after["p99_ms"]) / before["p99_ms"], 2) if after else None
    if failure is None and not alive:
        failure = "server died during the flood"
    elif failure is None and growth > FLAGS.max_rss_growth_mb:
        failure = f"server RSS grew by {growth} MB > {FLAGS.max_rss_growth_mb}"
    elif failure is None and ratio > FLAGS.max_p99_ratio:
        failure = (f"the first valid request after the flood ({first_ms} ms) or the p99 of the next "
                   f"{FLAGS.probes_after} ({after['p99_ms']} ms) is {ratio}x the p99 before "
                   f"({before['p99_ms']} ms) > {FLAGS.max_p99_ratio}")
    return {"benchmark": "load_test_flood", "target": target, "model_base_path": FLAGS.model_base_path,
            "signature": FLAGS.signature, "valid_signature": FLAGS.valid_signature,
            "flood_tensor": {"frames": FLAGS.flood_frames, "wire_bytes": big.ByteSize(),
                             "decoded_mb": decoded_mb},
            "flood": load, "server_alive": alive, "valid_before": before,
            "valid_first_after_ms": first_ms, "valid_after": after, "p99_ratio": ratio,
            "server_rss_mb": {"before": rss_before, "peak": load["rss_peak_mb"], "after": rss_after,
                              "settled": rss_later, "growth": growth},
            "bounds": {"max_rss_growth_mb": FLAGS.max_rss_growth_mb, "max_p99_ratio": FLAGS.max_p99_ratio},
            "loadavg_1m": round(os.getloadavg()[0], 2), "failure": failure}


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    failures = 0
    for i in range(FLAGS.repeat):
        with tempfile.TemporaryDirectory(prefix="load-test-flood-") as tmp:
            result = {"repetition": i + 1, "of": FLAGS.repeat, **repetition(tmp)}
        print(json.dumps(result), flush=True)
        failures += result["failure"] is not None
    if failures:
        raise SystemExit(f"{failures} of {FLAGS.repeat} repetitions failed")


if __name__ == "__main__":
    app.run(main)
