"""Development server under abuse: short-deadline floods, garbage bytes, versions completed in place."""
import logging
import os
import shutil
import threading
import time

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from keras_crf_reid.configs.server import ServerLimits
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.serving import contract, export
from keras_crf_reid.serving.server import admission, limits, service, versions

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    keras.utils.set_random_seed(1)
    path = str(tmp_path_factory.mktemp("reliability") / "crf_reid")
    export.export_saved_model(build_crf_model(TINY), path)
    return path


def predict_request(proto) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "crf_reid"
    req.inputs["frames"].CopyFrom(proto)
    return req


# The inputs of every signature an export has that takes inputs: alias -> (dtype, channels).
SIGNATURE_INPUTS = {contract.SERVING_SIGNATURE: {contract.INPUT_NAME: (tf.float32, 5)},
                    contract.RAW_SIGNATURE: {contract.RGB_INPUT: (tf.uint8, 3),
                                             contract.FLOW_INPUT: (tf.float32, 2)}}


def signature_request(signature: str, frames: int) -> predict_pb2.PredictRequest:
    """One constant value per input of `signature`, shaped as `frames` frames of 128x64."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "crf_reid"
    req.model_spec.signature_name = signature
    for alias, (dtype, c) in SIGNATURE_INPUTS[signature].items():
        req.inputs[alias].CopyFrom(tf.make_tensor_proto(7 if dtype == tf.uint8 else 0.1, dtype,
                                                        shape=[1, frames, 128, 64, c]))
    return req


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


# --- the inference queue ---------------------------------------------------------------------

def test_full_queue_answers_unavailable_and_abandoned_work_is_dropped():
    queue = admission.InferenceQueue(workers=1, max_queued=1)
    release, started, calls = threading.Event(), threading.Event(), []

    def blocking(**inputs):
        calls.append(sorted(inputs))
        started.set()
        release.wait(10)
        return {"ok": True}

    queue.estimates.completed(blocking, 8, 0.0)        # measured: not limited to one call at a time
    first = threading.Thread(target=lambda: queue.run(blocking, {"a": np.zeros(1)}, 10))
    first.start()
    assert started.wait(10)
    with pytest.raises(limits.RpcError) as e:        # queued behind the first, gives up after 0.2 s
        queue.run(blocking, {"b": np.zeros(1)}, 0.2)
    assert e.value.code == Code.DEADLINE_EXCEEDED
    assert queue.pending == 1                         # its slot is freed at once
    waiting = threading.Thread(target=lambda: queue.run(blocking, {"c": np.zeros(1)}, 10))
    waiting.start()
    time.sleep(0.1)
    assert queue.pending == 2
    with pytest.raises(limits.RpcError) as e:        # one running, one waiting: full
        queue.run(blocking, {"d": np.zeros(1)}, 10)
    assert e.value.code == Code.UNAVAILABLE and "--max_queued" in e.value.message
    release.set()
    first.join(10)
    waiting.join(10)
    assert calls == [["a"], ["c"]]                    # "b" was abandoned: dropped, never run
    assert queue.pending == 0
    queue.shutdown()


def test_running_inference_is_cancelled_when_its_caller_leaves():
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def spin(n):
        return {"n": tf.while_loop(lambda i: i < n, lambda i: i + 1, [tf.constant(0)])[0]}

    queue = admission.InferenceQueue(workers=1, max_queued=0)
    with pytest.raises(limits.RpcError) as e:
        queue.run(spin, {"n": np.int32(2 ** 31 - 1)}, 0.3)    # minutes of work if not cancelled
    assert e.value.code == Code.DEADLINE_EXCEEDED
    for _ in range(100):                                      # the worker is freed
        if queue.pending == 0:
            break
        time.sleep(0.1)
    assert queue.pending == 0
    assert int(queue.run(spin, {"n": np.int32(10)}, 10)["n"]) == 10
    queue.shutdown()


def test_work_that_cannot_finish_in_time_is_refused_before_it_starts():
    queue, calls = admission.InferenceQueue(workers=1, max_queued=1), []

    def slow(**inputs):
        calls.append(inputs["x"].shape)
        time.sleep(0.2)
        return {}

    queue.run(slow, {"x": np.zeros(100, np.float32)}, 10, key="sig")      # >= 0.5 ms per byte
    with pytest.raises(limits.RpcError) as e:
        queue.run(slow, {"x": np.zeros(10_000, np.float32)}, 5, key="sig")  # needs >= 15 s
    assert e.value.code == Code.DEADLINE_EXCEEDED and "not started" in e.value.message
    queue.run(slow, {"x": np.zeros(10_000, np.float32)}, 5, key="other")  # no estimate yet
    assert calls == [(100,), (10_000,)]
    queue.shutdown()


def test_estimates_follow_completed_calls_scaled_by_input_size():
    est = admission.RunTimeEstimates()
    assert est.seconds("f", 1000) == 0.0 and not est.known("f")
    est.completed("f", 100, 0.1)
    assert est.known("f") and est.seconds("f", 1000) == pytest.approx(1.0)   # proportional
    for _ in range(8):                            # the machine got 5x slower: the estimate follows
        est.completed("f", 100, 0.5)
    assert est.seconds("f", 100) == pytest.approx(0.5)
    sized = admission.RunTimeEstimates()          # two sizes: overhead + per-byte fit
    for n in (1_000, 10_000, 1_000, 10_000):
        sized.completed("g", n, 0.02 + 1e-5 * n)
    assert sized.seconds("g", 100_000) == pytest.approx(1.02)
    assert sized.seconds("g", 10) == pytest.approx(0.0201)


def test_every_cancelled_call_raises_the_lower_bound_until_it_expires():
    now = [0.0]
    est = admission.RunTimeEstimates(clock=lambda: now[0])
    est.cancelled("f", 1000, 0.05)               # the first cancelled call ran only briefly
    est.cancelled("f", 1000, 0.4)                # the next ran longer: the work takes > 0.4 s,
    assert est.seconds("f", 1000) == pytest.approx(0.8)      # taken as twice that (a backoff)
    assert est.seconds("f", 4000) == pytest.approx(0.8)      # more input: at least as long
    assert est.seconds("f", 500) == pytest.approx(0.4)       # less: scaled down
    assert not est.known("f")
    now[0] = 61.0
    assert est.seconds("f", 1000) == 0.0          # a bound from a minute ago no longer holds
    est.cancelled("f", 1000, 0.4)
    est.completed("f", 2000, 0.3)                 # finished more input faster: the bound retires
    assert est.seconds("f", 1000) == pytest.approx(0.15)


def test_a_function_never_completed_runs_one_call_at_a_time():
    queue = admission.InferenceQueue(workers=2, max_queued=2)
    release, started = threading.Event(), threading.Event()

    def blocking(**inputs):
        started.set()
        release.wait(10)
        return {"ok": True}

    first = threading.Thread(target=lambda: queue.run(blocking, {"a": np.zeros(1)}, 10, key="cold"))
    first.start()
    assert started.wait(10)
    with pytest.raises(limits.RpcError) as e:     # the same function: refused while it measures
        queue.run(blocking, {"b": np.zeros(1)}, 10, key="cold")
    assert e.value.code == Code.UNAVAILABLE and "'cold'" in e.value.message
    assert queue.run(lambda **_: {"ok": 1}, {"c": np.zeros(1)}, 10, key="other") == {"ok": 1}
    release.set()
    first.join(10)
    started.clear()
    release.clear()
    second = threading.Thread(target=lambda: queue.run(blocking, {"d": np.zeros(1)}, 10, key="cold"))
    second.start()
    assert started.wait(10)
    release.set()                                  # measured now: a second call is admitted
    assert queue.run(blocking, {"e": np.zeros(1)}, 10, key="cold") == {"ok": True}
    second.join(10)
    queue.shutdown()


def test_queued_work_is_dropped_when_its_estimate_no_longer_fits_the_time_left():
    queue, calls = admission.InferenceQueue(workers=1, max_queued=1), []
    release, started = threading.Event(), threading.Event()

    def work(**inputs):
        calls.append(sorted(inputs))
        started.set()
        release.wait(10)
        return {}

    queue.estimates.completed("f", 8, 0.0)
    first = threading.Thread(target=lambda: queue.run(work, {"a": np.zeros(1)}, 10, key="f"))
    first.start()
    assert started.wait(10)
    result = {}

    def waiting():
        try:
            queue.run(work, {"b": np.zeros(1)}, 3, key="f")
        except limits.RpcError as e:
            result["error"] = e

    second = threading.Thread(target=waiting)
    second.start()
    time.sleep(0.2)
    for _ in range(8):                            # learned meanwhile: 5 s, more than the 3 s left
        queue.estimates.completed("f", 8, 5.0)
    release.set()
    first.join(10)
    second.join(10)
    assert calls == [["a"]]
    assert result["error"].code == Code.DEADLINE_EXCEEDED and "not started" in result["error"].message
    queue.shutdown()


def test_a_busy_queue_refuses_before_the_inputs_are_decoded(base, monkeypatch):
    srv, _ = service.serve(base, poll_s=0, limits=ServerLimits(workers=1, max_queued=0))
    release, started = threading.Event(), threading.Event()
    try:
        predictor = srv.predictor
        served = predictor.manager.get(None)
        decoded, real_decode = [], service.decode_inputs
        monkeypatch.setattr(service, "decode_inputs", lambda *a: decoded.append(1) or real_decode(*a))

        def blocking(**inputs):
            started.set()
            release.wait(10)
            return {}

        queue = predictor.queue
        queue.estimates.completed("busy", 8, 0.0)
        worker = threading.Thread(target=lambda: queue.run(blocking, {"a": np.zeros(1)}, 10, key="busy"))
        worker.start()
        assert started.wait(10)
        with pytest.raises(limits.RpcError) as e:   # 33 MB decoded: refused before decoding
            predictor.run_predict(signature_request(contract.RAW_SIGNATURE, 190), served, 3600.0)
        assert e.value.code == Code.UNAVAILABLE and decoded == []
        release.set()
        worker.join(10)
    finally:
        release.set()
        srv.stop(0)


def test_in_flight_decoded_bytes_are_bounded():
    budget = admission.ByteBudget(100)
    with budget.hold(60):
        with pytest.raises(limits.RpcError) as e:
            with budget.hold(50):
                pass
        assert e.value.code == Code.RESOURCE_EXHAUSTED and "--max_inflight_mb" in e.value.message
        with budget.hold(40):
            assert budget.held == 100
    assert budget.held == 0


def test_every_signature_has_a_run_time_estimate_once_served(base):
    """The export's warm-up requests cover every signature, so each is protected from the start."""
    loaded = tf.saved_model.load(os.path.join(base, "1"))
    assert set(SIGNATURE_INPUTS) | {contract.INFO_SIGNATURE} == set(loaded.signatures)
    srv, _ = service.serve(base, poll_s=0, limits=ServerLimits(workers=1))
    try:
        for signature in SIGNATURE_INPUTS:
            assert srv.predictor.queue.min_seconds((1, signature), 10 * limits.MB) > 0, signature
    finally:
        srv.stop(0)


def test_signatures_an_old_export_has_no_warmup_for_get_one_group_of_zeros(base, tmp_path):
    old = str(tmp_path / "crf_reid")
    shutil.copytree(base, old)
    os.remove(os.path.join(old, "1", contract.WARMUP_FILE))    # as exports before every signature had one
    srv, _ = service.serve(old, poll_s=0, limits=ServerLimits(workers=1))
    try:
        for signature in SIGNATURE_INPUTS:
            assert srv.predictor.queue.estimates.known((1, signature)), signature
    finally:
        srv.stop(0)


def test_a_cancelled_call_gives_an_estimate_to_a_signature_without_warmup():
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def spin(n):
        return {"n": tf.while_loop(lambda i: i < n, lambda i: i + 1, [tf.constant(0)])[0]}

    queue = admission.InferenceQueue(workers=1, max_queued=0)
    with pytest.raises(limits.RpcError):
        queue.run(spin, {"n": np.int32(2 ** 31 - 1)}, 0.3, key="cold")
    for _ in range(100):
        if queue.pending == 0:
            break
        time.sleep(0.1)
    with pytest.raises(limits.RpcError) as e:              # the same work again: refused at once
        queue.run(spin, {"n": np.int32(2 ** 31 - 1)}, 0.2, key="cold")
    assert e.value.code == Code.DEADLINE_EXCEEDED and "not started" in e.value.message
    queue.shutdown()


@pytest.mark.parametrize("signature", sorted(SIGNATURE_INPUTS))
def test_short_deadline_flood_of_large_decoded_tensors(base, signature):
    """4 clients x 2 s of 0.3 s-deadline requests on each signature that takes inputs, decoding to
    17-31 MB each (a few bytes on the wire)."""
    cfg = ServerLimits(max_message_mb=64, max_frames=400, workers=2, max_queued=2,
                                 max_inflight_mb=128)
    srv, port = service.serve(base, poll_s=0, limits=cfg)
    predictor = srv.predictor
    flood = signature_request(signature, 190)
    valid = signature_request(signature, 4)
    assert len(flood.SerializeToString()) < 150
    codes, peak, stop = [], {"pending": 0, "held": 0}, threading.Event()
    rss_before = rss_mb()

    def client():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(200):
                if stop.is_set():
                    return
                try:
                    stub.Predict(flood, timeout=0.3)
                    codes.append(Code.OK)
                except grpc.RpcError as e:
                    codes.append(e.code())

    def watch():
        while not stop.is_set():
            peak["pending"] = max(peak["pending"], predictor.queue.pending)
            peak["held"] = max(peak["held"], predictor.budget.held)
            time.sleep(0.005)

    try:
        threads = [threading.Thread(target=client) for _ in range(4)] + [threading.Thread(target=watch)]
        for t in threads:
            t.start()
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(30)
        for _ in range(100):                 # abandoned work is dropped or cancelled promptly
            if predictor.queue.pending == 0 and predictor.budget.held == 0:
                break
            time.sleep(0.05)
        assert predictor.queue.pending == 0 and predictor.budget.held == 0
        assert peak["pending"] <= cfg.workers + cfg.max_queued
        assert peak["held"] <= cfg.max_inflight_mb * limits.MB
        assert rss_mb() - rss_before < 1000
        assert len(codes) > 4 and set(codes) <= {Code.OK, Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE,
                                                 Code.RESOURCE_EXHAUSTED, Code.CANCELLED}
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            out = stub.Predict(valid, timeout=10)
        assert tf.make_ndarray(out.outputs["embedding"]).shape == (1, 16)
    finally:
        srv.stop(0)


# --- garbage bytes ---------------------------------------------------------------------------

def test_garbage_bytes_get_invalid_argument_and_one_log_line(base, caplog):
    srv, port = service.serve(base, poll_s=0, limits=ServerLimits(workers=2))
    identity = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        with caplog.at_level(logging.INFO, logger=service.log.name), \
                grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method in ("/tensorflow.serving.PredictionService/Predict",
                           "/tensorflow.serving.PredictionService/GetModelMetadata",
                           "/tensorflow.serving.ModelService/GetModelStatus"):
                call = channel.unary_unary(method, **identity)
                for i in range(10):
                    with pytest.raises(grpc.RpcError) as e:
                        call(b"\xff\xff\xff\x07 not a protobuf %d" % i, timeout=10)
                    assert e.value.code() == Code.INVALID_ARGUMENT, (method, e.value.details())
                    assert "not a valid" in e.value.details()
            ok = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request(tf.make_tensor_proto(np.zeros((1, 2, 128, 64, 5), np.float32))), timeout=30)
        assert ok.model_spec.version.value == 1
        refused = [r for r in caplog.records if "not a valid protobuf" in r.getMessage()]
        assert len(refused) == 1, [r.getMessage() for r in refused]
        assert "\n" not in refused[0].getMessage() and refused[0].exc_info is None
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        srv.stop(0)


def test_rate_limited_log_counts_suppressed_lines(caplog):
    limited = service.RateLimitedLog(logging.getLogger("reid-test"), interval_s=0.2)
    with caplog.at_level(logging.WARNING, logger="reid-test"):
        assert limited.warning("a") and not limited.warning("b") and not limited.warning("c")
        time.sleep(0.25)
        assert limited.warning("d")
    assert [r.getMessage() for r in caplog.records] == [
        "a", "d (2 more suppressed in the last 0 s)"]


# --- versions completed in place -------------------------------------------------------------

def test_half_written_version_is_retried_once_completed_in_place(base, tmp_path):
    models = str(tmp_path / "crf_reid")
    os.makedirs(models)
    shutil.copytree(os.path.join(base, "1"), os.path.join(models, "1"))
    manager = versions.ModelManager(models, "crf_reid", settle_s=0)
    manager.poll()
    version = os.path.join(models, "2")
    shutil.copytree(os.path.join(base, "1"), version)
    data = os.path.join(version, "variables", "variables.data-00000-of-00001")
    shutil.move(data, str(tmp_path / "data"))         # half-written: variables data not there yet
    manager.poll()
    assert manager.versions() == [1]                  # version 2 failed; 1 keeps serving
    assert manager.statuses()[2][0] == versions.State.END
    pb_mtime = os.stat(os.path.join(version, "saved_model.pb")).st_mtime_ns
    manager.poll()                                    # unchanged folder: not reloaded
    assert manager.versions() == [1]
    shutil.move(str(tmp_path / "data"), data)         # completed in place, saved_model.pb untouched
    assert os.stat(os.path.join(version, "saved_model.pb")).st_mtime_ns == pb_mtime
    manager.poll()
    assert manager.versions() == [2]
    assert manager.statuses()[2][0] == versions.State.AVAILABLE


def test_version_copied_file_by_file_is_loaded_only_once_complete_and_stable(base, tmp_path):
    """saved_model.pb and variables/ arrive first, assets.extra/ (the warm-up) last."""
    models = str(tmp_path / "crf_reid")
    os.makedirs(models)
    shutil.copytree(os.path.join(base, "1"), os.path.join(models, "1"))
    warmed = []
    manager = versions.ModelManager(models, "crf_reid", warmup=lambda served: warmed.append(
        (served.version, os.path.isfile(os.path.join(served.path, contract.WARMUP_FILE)))), settle_s=0.5)
    time.sleep(0.6)
    manager.poll()
    assert manager.versions() == [1]
    source, version = os.path.join(base, "1"), os.path.join(models, "2")
    os.makedirs(version)
    shutil.copy2(os.path.join(source, "saved_model.pb"), version)   # copies keep mtimes
    shutil.copytree(os.path.join(source, "variables"), os.path.join(version, "variables"))
    manager.poll()
    assert manager.versions() == [1] and manager.pending() == [2]   # complete, not yet stable
    time.sleep(0.3)
    shutil.copytree(os.path.join(source, "assets.extra"), os.path.join(version, "assets.extra"))
    time.sleep(0.3)
    manager.poll()
    assert manager.versions() == [1]                    # changed 0.3 s ago: still waiting
    time.sleep(0.6)
    manager.poll()
    assert manager.versions() == [2]
    assert warmed == [(1, True), (2, True)]             # its warm-up requests were there to replay


def test_folder_signature_changes_with_any_file(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x")
    before = versions.folder_signature(str(tmp_path))
    (tmp_path / "variables" / "variables.index").write_bytes(b"y")
    assert versions.folder_signature(str(tmp_path)) != before
