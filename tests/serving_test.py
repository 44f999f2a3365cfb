"""Export -> development gRPC server -> official TF Serving stubs and ReidClient."""
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from keras_crf_reid.configs.server import ServerLimits
from keras_crf_reid.datasets.preprocess import to_model_input
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.serving import contract, export
from keras_crf_reid.serving.client import ReidClient
from keras_crf_reid.serving.inference import tracklet_input
from keras_crf_reid.serving.server import launch, service, versions

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)
LIMITS = ServerLimits(max_message_mb=4, max_batch=4, max_frames=40, workers=2)
Code = grpc.StatusCode
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_crf_model(TINY)


@pytest.fixture(scope="module")
def model():
    return tiny_model(1)


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("serving") / "crf_reid")
    export.export_saved_model(model, base)
    srv, port = service.serve(base, poll_s=0, limits=LIMITS)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield port, prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    srv.stop(0)


def frames(b=2, t=5, seed=0):
    return np.random.default_rng(seed).normal(size=(b, t, 128, 64, 5)).astype(np.float32)


def request(x=None, name="crf_reid", version=None, signature=None, key="frames"):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    if signature is not None:
        req.model_spec.signature_name = signature
    if x is not None:
        req.inputs[key].CopyFrom(x if isinstance(x, tensor_pb2.TensorProto) else tf.make_tensor_proto(x))
    return req


def test_predict_via_stubs_matches_keras(model, served):
    _, stub = served
    x = frames()
    response = stub.Predict(request(x), timeout=30)
    assert response.model_spec.name == "crf_reid"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    got = tf.make_ndarray(response.outputs["embedding"])
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-5)


def test_client_predict_raw_and_tracklet(model, served, tmp_path):
    port, _ = served
    rng = np.random.default_rng(3)
    for i in range(20):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), rng.integers(0, 256, (160, 80, 3), dtype=np.uint8))
    with ReidClient(f"127.0.0.1:{port}", timeout_s=30, max_message_mb=4) as client:
        x = frames(b=3, t=16)
        np.testing.assert_allclose(client.predict(x), model(x).numpy(), atol=1e-5)
        rgb = rng.integers(0, 256, (1, 4, 128, 64, 3), dtype=np.uint8)
        flow = rng.uniform(-1, 1, (1, 4, 128, 64, 2)).astype(np.float32)
        np.testing.assert_allclose(client.predict_raw(rgb, flow), model(to_model_input(rgb, flow)).numpy(),
                                   atol=1e-5)
        groups = tracklet_input(str(tmp_path))
        assert groups.shape == (2, 16, 128, 64, 5)
        np.testing.assert_allclose(client.embed_tracklet(str(tmp_path)), model(groups).numpy().mean(0),
                                   atol=1e-5)


def test_metadata_and_status(served):
    port, stub = served
    with ReidClient(f"127.0.0.1:{port}") as client:
        meta = client.metadata()
        status = client.status()
    assert meta["model_spec"] == {"name": "crf_reid", "version": 1}
    assert meta["signatures"]["serving_default"]["inputs"] == {
        "frames": {"dtype": "DT_FLOAT", "shape": [-1, -1, 128, 64, 5]}}
    assert meta["signatures"]["serving_default"]["outputs"] == {
        "embedding": {"dtype": "DT_FLOAT", "shape": [-1, 16]}}
    assert set(meta["signatures"]["embed_raw"]["inputs"]) == {"rgb", "flow"}
    assert status == [{"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
    bad = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
    bad.model_spec.name = "crf_reid"
    with pytest.raises(grpc.RpcError) as e:
        stub.GetModelMetadata(bad, timeout=10)
    assert e.value.code() == Code.INVALID_ARGUMENT


def _malformed():
    req = request(frames(1, 2))
    req.inputs["frames"].tensor_content = req.inputs["frames"].tensor_content[:-8]
    return req


def compact(shape):
    """A TensorProto of zeros holding one value (tiny on the wire, large once decoded)."""
    return tf.make_tensor_proto(0.0, tf.float32, shape)


def _extra():
    req = request(frames(1, 2))
    req.inputs["other"].CopyFrom(tf.make_tensor_proto(np.zeros(3, np.float32)))
    return req


BAD_REQUESTS = {
    "wrong dtype": (lambda: request(frames(1, 2).astype(np.float64)), Code.INVALID_ARGUMENT, "expects float32"),
    "uint8": (lambda: request(np.zeros((1, 2, 128, 64, 5), np.uint8)), Code.INVALID_ARGUMENT, "uint8"),
    "wrong rank": (lambda: request(np.zeros((2, 128, 64, 5), np.float32)), Code.INVALID_ARGUMENT, "rank 5"),
    "wrong width": (lambda: request(np.zeros((1, 2, 128, 60, 5), np.float32)), Code.INVALID_ARGUMENT,
                    "dimension 3 must be 64"),
    "wrong channels": (lambda: request(np.zeros((1, 2, 128, 64, 3), np.float32)), Code.INVALID_ARGUMENT,
                       "dimension 4 must be 5"),
    "T = 0": (lambda: request(np.zeros((1, 0, 128, 64, 5), np.float32)), Code.INVALID_ARGUMENT,
              "number of frames T is 0"),
    "batch 0": (lambda: request(np.zeros((0, 2, 128, 64, 5), np.float32)), Code.INVALID_ARGUMENT,
                "batch size is 0"),
    "NaN": (lambda: request(np.where(frames(1, 2) > 2, np.nan, 0).astype(np.float32)), Code.INVALID_ARGUMENT,
            "NaN"),
    "Inf": (lambda: request(np.full((1, 2, 128, 64, 5), np.inf, np.float32)), Code.INVALID_ARGUMENT, "Inf"),
    "batch over limit": (lambda: request(compact([5, 1, 128, 64, 5])), Code.INVALID_ARGUMENT, "--max_batch=4"),
    "T over limit": (lambda: request(compact([1, 41, 128, 64, 5])), Code.INVALID_ARGUMENT, "--max_frames=40"),
    "message over limit": (lambda: request(np.zeros((4, 40, 128, 64, 5), np.float32)), Code.RESOURCE_EXHAUSTED,
                           "larger than max"),
    "decoded size over limit": (lambda: request(compact([4, 40, 128, 64, 5])), Code.RESOURCE_EXHAUSTED,
                                "--max_message_mb=4"),
    "missing input": (lambda: request(frames(1, 2), key="images"), Code.INVALID_ARGUMENT,
                      "Missing but required: ['frames']"),
    "no input": (lambda: request(), Code.INVALID_ARGUMENT, "Missing but required"),
    "extra input": (_extra, Code.INVALID_ARGUMENT, "Sent extra: ['other']"),
    "malformed tensor": (_malformed, Code.INVALID_ARGUMENT, "malformed TensorProto"),
    "unknown model": (lambda: request(frames(1, 2), name="other"), Code.NOT_FOUND, "other"),
    "unknown version": (lambda: request(frames(1, 2), version=9), Code.NOT_FOUND, "Specific(crf_reid, 9)"),
    "unknown signature": (lambda: request(frames(1, 2), signature="nope"), Code.FAILED_PRECONDITION,
                          'signature key "nope" not found'),
    "raw flow mismatch": (
        lambda: _raw(np.zeros((1, 3, 128, 64, 3), np.uint8), np.zeros((1, 2, 128, 64, 2), np.float32)),
        Code.INVALID_ARGUMENT, "same batch and time"),
}


def _raw(rgb, flow):
    req = request(signature="embed_raw")
    req.inputs["rgb"].CopyFrom(tf.make_tensor_proto(rgb))
    req.inputs["flow"].CopyFrom(tf.make_tensor_proto(flow))
    return req


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_status_and_server_survives(served, case):
    _, stub = served
    make, code, text = BAD_REQUESTS[case]
    req = make()
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(req, timeout=30)
    assert e.value.code() == code, e.value.details()
    assert text in e.value.details()
    assert stub.Predict(request(frames(1, 2)), timeout=30).model_spec.version.value == 1


def test_undecodable_request_bytes(served):
    port, stub = served
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\x07 not a protobuf", timeout=10)
    assert e.value.code() == Code.INVALID_ARGUMENT
    assert stub.Predict(request(frames(1, 2)), timeout=30).outputs["embedding"].dtype == tf.float32


def test_status_errors(served):
    port, _ = served
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    for name, version in (("other", None), ("crf_reid", 5)):
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = name
        if version is not None:
            req.model_spec.version.value = version
        with pytest.raises(grpc.RpcError) as e:
            stub.GetModelStatus(req, timeout=10)
        assert e.value.code() == Code.NOT_FOUND


def test_new_version_is_served(model, tmp_path):
    base = str(tmp_path / "crf_reid")
    export.export_saved_model(model, base)
    srv, port = service.serve(base, poll_s=0.1, limits=LIMITS)
    try:
        (tmp_path / "crf_reid" / "5").mkdir()
        (tmp_path / "crf_reid" / ".tmp-6-1").mkdir()
        newer = tiny_model(2)
        export.export_saved_model(newer, base, version=3)
        x = frames(1, 3)
        with ReidClient(f"127.0.0.1:{port}", timeout_s=30) as client:
            deadline = time.monotonic() + 20
            while client.status()[0] != {"version": 3, "state": "AVAILABLE", "error_code": 0,
                                         "error_message": ""} and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [(s["version"], s["state"]) for s in client.status()] == [(3, "AVAILABLE"), (1, "END")]
            np.testing.assert_allclose(client.predict(x), newer(x).numpy(), atol=1e-5)
        with ReidClient(f"127.0.0.1:{port}", version=1) as old:
            with pytest.raises(grpc.RpcError) as e:
                old.predict(x)
        assert e.value.code() == Code.NOT_FOUND
    finally:
        srv.stop(0)


def test_missing_base_path_is_refused(tmp_path):
    with pytest.raises(contract.SavedModelError, match="does not exist"):
        service.serve(str(tmp_path / "absent"))


def test_client_retries_only_unavailable():
    calls = []

    class Unavailable(grpc.RpcError):
        def __init__(self, code):
            self._code = code

        def code(self):
            return self._code

    def method(code):
        def call(request, timeout):
            calls.append(code)
            raise Unavailable(code)
        return call

    client = ReidClient("127.0.0.1:1", retries=2)
    for code, tries in ((Code.UNAVAILABLE, 3), (Code.INVALID_ARGUMENT, 1)):
        calls.clear()
        with pytest.raises(grpc.RpcError):
            client._call(method(code), None)
        assert len(calls) == tries
    client.close()


def test_failed_version_keeps_previous_serving(model, tmp_path):
    base = str(tmp_path / "crf_reid")
    export.export_saved_model(model, base)
    manager = versions.ModelManager(base, "crf_reid", settle_s=0)
    manager.poll()
    broken = tmp_path / "crf_reid" / "2"
    (broken / "variables").mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    (broken / "variables" / "variables.index").write_bytes(b"")
    manager.poll()
    assert manager.get(None).version == 1
    state, code, message = manager.statuses()[2]
    assert state == get_model_status_pb2.ModelVersionStatus.END and code != 0 and message
    shutil.rmtree(broken)
    export.export_saved_model(model, base, version=4)
    manager.poll()
    assert manager.versions() == [4]


def test_server_cli_in_subprocess(model, tmp_path):
    base = str(tmp_path / "reid")
    export.export_saved_model(model, base)
    proc, port = launch.spawn(base, "--poll_s=0", "--max_batch=2")
    try:
        with ReidClient(f"127.0.0.1:{port}", model_name="reid", timeout_s=30) as client:
            x = frames(2, 3)
            np.testing.assert_allclose(client.predict(x), model(x).numpy(), atol=1e-5)
            with pytest.raises(grpc.RpcError, match="--max_batch=2"):
                client.predict(frames(3, 1))
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    port_file = next(a.split("=", 1)[1] for a in proc.args if a.startswith("--port_file="))
    assert not os.path.exists(os.path.dirname(port_file))     # its temp folder went with it


def test_spawn_removes_its_temp_folder_when_the_server_fails_to_start(tmp_path):
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(RuntimeError, match="does not exist"):
        launch.spawn(str(tmp_path / "missing"), timeout_s=600)   # exits at once; TF import may be slow
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("reid-server-")}


def _exited(pid: int) -> bool:
    """Whether process pid is gone or a zombie (its new parent may not reap it at once)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_spawned_server_exits_when_its_parent_is_killed(model, tmp_path):
    base = str(tmp_path / "reid")
    export.export_saved_model(model, base)
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from keras_crf_reid.serving.server import launch\n"
         "proc, port = launch.spawn(sys.argv[1], '--poll_s=0')\n"
         "print(proc.pid, proc.workdir, flush=True)\n"
         "time.sleep(600)\n", base],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
    try:
        pid, workdir = parent.stdout.readline().split()
        pid = int(pid)
        assert not _exited(pid) and os.path.isdir(workdir)
    finally:
        parent.kill()                                   # SIGKILL: no finaliser, no atexit
        parent.wait()
    for _ in range(600):
        if _exited(pid):
            break
        time.sleep(0.1)
    assert _exited(pid), f"server {pid} outlived the process that spawned it"
    assert not os.path.exists(workdir)                  # its temp folder went with it


def test_many_concurrent_connections_mixed_with_bad_requests(model, served):
    """24 clients, each on its own connection, half sending NaN: all answered, none crash it."""
    from concurrent.futures import ThreadPoolExecutor
    port, stub = served
    x = frames(1, 3, seed=5)
    expected = model(x, training=False).numpy()

    def client(k):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            s = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            if k % 2:
                try:
                    s.Predict(request(np.full_like(x, np.nan)), timeout=60)
                except grpc.RpcError as e:
                    return e.code()
                return "accepted NaN"
            out = s.Predict(request(x), timeout=60).outputs["embedding"]
            return tf.make_ndarray(out)

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(client, range(24)))
    for k, r in enumerate(results):
        if k % 2:
            assert r == Code.INVALID_ARGUMENT
        else:
            np.testing.assert_allclose(r, expected, atol=1e-5)
    assert stub.Predict(request(x), timeout=30).model_spec.version.value == 1


def test_server_limit_flags_are_generated_from_server_limits():
    from absl import flags

    from keras_crf_reid import cli
    fv = flags.FlagValues()
    cli.define_flags(ServerLimits, fv)
    fv(["prog", "--max_queued=3"])
    assert cli.from_flags(ServerLimits, fv) == ServerLimits(max_queued=3)
    assert {name: fv[name].default for name in fv} == dataclasses.asdict(ServerLimits())
