"""The gRPC services of the development server: TensorFlow Serving's PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus), and `serve`, which starts them.

Every input is validated against the signature before the graph runs (`limits`); bad requests
(undecodable bytes included) get INVALID_ARGUMENT (RESOURCE_EXHAUSTED for sizes over the limits)
and never take the server down. Admitted work runs on the bounded queue of `admission`.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import os
import threading
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc)

from keras_crf_reid.configs.server import ServerLimits
from keras_crf_reid.geometry import GROUP_LEN
from keras_crf_reid.serving import contract
from keras_crf_reid.serving.server.admission import ByteBudget, InferenceQueue
from keras_crf_reid.serving.server.limits import MB, RpcError, decode_inputs, decoded_bytes
from keras_crf_reid.serving.server.versions import SETTLE_S, ModelManager, ServedVersion

log = logging.getLogger(__name__)
SIGNATURE_DEF_FIELD = "signature_def"


def _expired(context) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


def _rpc(method):
    """Turns RpcError (and any unexpected exception) into a gRPC status; the server never dies."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except RpcError as e:
            err = e
        except Exception as e:
            log.exception("internal error in %s", method.__name__)
            err = RpcError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        context.abort(err.code, err.message)

    return wrapper


class _Servicer:
    """Shared model lookup of both services."""

    def __init__(self, manager: ModelManager, limits: ServerLimits):
        self.manager = manager
        self.limits = limits

    def _resolve(self, spec) -> ServedVersion:
        if spec.name != self.manager.name:
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: model {spec.name!r} is not served "
                           f"(this server serves {self.manager.name!r})")
        if spec.version_label:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"version labels are not configured (got {spec.version_label!r}); use version")
        return self.manager.get(spec.version.value if spec.HasField("version") else None)


class PredictionServicer(_Servicer, prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService: Predict and GetModelMetadata (Classify/Regress are UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager, limits: ServerLimits):
        super().__init__(manager, limits)
        self.queue = InferenceQueue(limits.workers, limits.max_queued)
        self.budget = ByteBudget(limits.max_inflight_mb * MB)

    def run_predict(self, request: predict_pb2.PredictRequest, served: ServedVersion,
                    timeout_s: float, context: grpc.ServicerContext | None = None,
                    ) -> predict_pb2.PredictResponse:
        name = request.model_spec.signature_name or contract.SERVING_SIGNATURE
        if name not in served.signature_defs or name.startswith("__"):
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        signature = served.signature_defs[name]
        wanted = list(request.output_filter) or sorted(signature.outputs)
        unknown = [o for o in wanted if o not in signature.outputs]
        if unknown or len(set(wanted)) != len(wanted):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output tensor alias not found in signature: {unknown or wanted} "
                           f"(outputs: {sorted(signature.outputs)})")
        nbytes = decoded_bytes(request, signature, self.limits)
        key = (served.version, name)
        self.queue.check_admission(key, nbytes, timeout_s)
        with self.budget.hold(nbytes):
            inputs = decode_inputs(request, signature, self.limits)
            if context is not None and (not context.is_active() or _expired(context)):
                raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline expired before inference")
            outputs = self._infer(served.function(name), inputs, timeout_s, context, key)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.manager.name
        response.model_spec.version.value = served.version
        response.model_spec.signature_name = name
        for alias in wanted:
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(outputs[alias].numpy()))
        return response

    def _infer(self, fn, inputs: dict, timeout_s: float, context, key) -> dict:
        if context is not None:
            remaining = context.time_remaining()
            timeout_s = min(timeout_s, remaining if remaining is not None else math.inf)
        try:
            return self.queue.run(fn, inputs, timeout_s, context.add_callback if context else None, key)
        except tf.errors.InvalidArgumentError as e:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, e.message) from e
        except tf.errors.ResourceExhaustedError as e:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message) from e

    @_rpc
    def Predict(self, request, context):
        remaining = context.time_remaining()
        timeout_s = min(self.limits.request_timeout_s, remaining if remaining is not None else math.inf)
        if timeout_s <= 0 or not context.is_active():
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline expired before inference")
        return self.run_predict(request, self._resolve(request.model_spec), timeout_s, context)

    @_rpc
    def GetModelMetadata(self, request, context):
        if not request.HasField("model_spec"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        served = self._resolve(request.model_spec)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in served.signature_defs.items():
            sigs.signature_def[key].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.manager.name
        response.model_spec.version.value = served.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(sigs)
        return response


class ModelServicer(_Servicer, model_service_pb2_grpc.ModelServiceServicer):
    """ModelService: GetModelStatus (HandleReloadConfigRequest is UNIMPLEMENTED)."""

    @_rpc
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        if not request.HasField("model_spec"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        if spec.name != self.manager.name:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        statuses = self.manager.statuses()
        if spec.HasField("version"):
            if spec.version.value not in statuses:
                raise RpcError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {spec.version.value} of model {spec.name}")
            statuses = {spec.version.value: statuses[spec.version.value]}
        if not statuses:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(statuses, reverse=True):
            state, code, message = statuses[version]
            entry = response.model_version_status.add(version=version, state=state)
            entry.status.error_code = code
            entry.status.error_message = message
        return response


class _MalformedRequest:
    """Stands for request bytes that do not parse as the method's protobuf message."""

    def __init__(self, error: Exception, size: int):
        self.error = error
        self.size = size


class RateLimitedLog:
    """Logs at most one line per `interval_s` seconds, saying how many were suppressed since."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0):
        self._log = logger
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str) -> bool:
        """Logs message unless one was logged in the last interval_s; True if it was logged."""
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._next = self._suppressed, 0, now + self.interval_s
        more = f" ({suppressed} more suppressed in the last {self.interval_s:.0f} s)" if suppressed else ""
        self._log.warning("%s%s", message, more)
        return True


_malformed_log = RateLimitedLog(log)


def _lenient(message_class):
    """A request deserializer that returns _MalformedRequest instead of raising.

    gRPC answers a deserializer exception with INTERNAL and logs a traceback per request, which
    lets garbage bytes flood the log; the handler answers INVALID_ARGUMENT instead.
    """

    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception as e:
            return _MalformedRequest(e, len(data))

    return parse


def _refuse_malformed(method_name: str, method):
    def handler(request, context):
        if isinstance(request, _MalformedRequest):
            _malformed_log.warning(f"refused {method_name}: {request.size} request bytes are not a valid "
                                   f"protobuf message ({type(request.error).__name__}) from {context.peer()}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request is not a valid {method_name} protobuf message "
                          f"({type(request.error).__name__}: {request.error})")
        return method(request, context)

    return handler


def _lenient_handlers(predictor: "PredictionServicer", model_servicer: "ModelServicer") -> tuple:
    """Generic handlers for the implemented methods, with _lenient request deserializers."""

    def handler(method, request_class, response_class):
        return grpc.unary_unary_rpc_method_handler(
            _refuse_malformed(request_class.DESCRIPTOR.name, method),
            request_deserializer=_lenient(request_class),
            response_serializer=response_class.SerializeToString)

    prediction = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "Predict": handler(predictor.Predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "GetModelMetadata": handler(predictor.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest,
                                    get_model_metadata_pb2.GetModelMetadataResponse)})
    model = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "GetModelStatus": handler(model_servicer.GetModelStatus, get_model_status_pb2.GetModelStatusRequest,
                                  get_model_status_pb2.GetModelStatusResponse)})
    return prediction, model


def _warmup(predictor: PredictionServicer, served: ServedVersion) -> None:
    """Replays assets.extra/tf_serving_warmup_requests (Predict logs only), as TF Serving does,
    then runs one group of zeros through every signature with inputs that the file did not cover
    (exports older than a warm-up of every signature), so each has a run-time estimate, and its
    graph is built, before the first request: a flood on it is then refused from the start."""
    path = os.path.join(served.path, contract.WARMUP_FILE)
    count, covered = 0, set()
    if os.path.isfile(path):
        for record in tf.data.TFRecordDataset(path):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.WhichOneof("log_type") == "predict_log":
                request = entry.predict_log.request
                predictor.run_predict(request, served, predictor.limits.request_timeout_s)
                covered.add(request.model_spec.signature_name or contract.SERVING_SIGNATURE)
                count += 1
    added = []
    for name, request in _zero_group_requests(served).items():
        if name not in covered:
            predictor.run_predict(request, served, predictor.limits.request_timeout_s)
            added.append(name)
    log.info("model %s: version %d warmed up with %d requests%s", predictor.manager.name, served.version,
             count, f" and one group of zeros on {', '.join(added)}" if added else "")


def _zero_group_requests(served: ServedVersion) -> dict:
    """{signature: a request of one group of zeros} for the signatures with 5-d inputs whose
    unknown dimensions can be told: batch 1, T the recorded group length, H and W those of
    serving_default's frames; the others are left out."""
    group_len = contract.group_len_of(served.loaded) or GROUP_LEN
    frames = served.signature_defs.get(contract.SERVING_SIGNATURE)
    frames = frames and frames.inputs.get(contract.INPUT_NAME)
    hw = [int(d.size) for d in frames.tensor_shape.dim][2:4] if frames else [-1, -1]
    requests = {}
    for name, signature in served.signature_defs.items():
        if name.startswith("__") or not signature.inputs:
            continue
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        for alias, info in signature.inputs.items():
            dims = [int(d.size) for d in info.tensor_shape.dim]
            if info.tensor_shape.unknown_rank or len(dims) != 5:
                break
            shape = [1, group_len, *(h if d < 0 else d for d, h in zip(dims[2:4], hw)), dims[4]]
            if min(shape) < 1:
                break
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(0, dtype=info.dtype, shape=shape))
        else:
            requests[name] = request
    return requests


def serve(model_base_path: str, port: int = 0, host: str = "127.0.0.1", model_name: str | None = None,
          poll_s: float = 1.0, num_versions: int = 1, limits: ServerLimits = ServerLimits(),
          settle_s: float = SETTLE_S) -> tuple[grpc.Server, int]:
    """Starts the server (versions present now are loaded before it returns, once they have been
    unchanged for settle_s); returns it and its port.

    Stop it with `server.stop(grace)`; the polling thread and pools stop with it. `server.predictor`
    is the PredictionServicer (its `queue` and `budget` show the work in flight).
    """
    base = os.path.abspath(model_base_path)
    if not os.path.isdir(base):
        raise contract.SavedModelError(f"{base}: --model_base_path does not exist or is not a directory")
    name = model_name or os.path.basename(base.rstrip(os.sep))
    manager = ModelManager(base, name, num_versions, warmup=lambda served: _warmup(predictor, served),
                           settle_s=settle_s)
    predictor = PredictionServicer(manager, limits)
    model_servicer = ModelServicer(manager, limits)
    manager.poll()
    deadline = time.monotonic() + 2 * settle_s
    while manager.pending() and time.monotonic() < deadline:
        time.sleep(min(0.1, settle_s))
        manager.poll()
    if not manager.versions():
        log.warning("model %s: no complete version under %s yet; waiting for one", name, base)
    options = [("grpc.max_send_message_length", limits.max_message_mb * MB),
               ("grpc.max_receive_message_length", limits.max_message_mb * MB),
               ("grpc.so_reuseport", 0)]
    rpc_pool = concurrent.futures.ThreadPoolExecutor(limits.workers, thread_name_prefix="grpc")
    server = grpc.server(rpc_pool, options=options, maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
    # Registered first, so they answer the methods implemented here with lenient deserializers;
    # the generated handlers behind them answer the others (Classify, ...) with UNIMPLEMENTED.
    server.add_generic_rpc_handlers(_lenient_handlers(predictor, model_servicer))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(predictor, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port} (--host/--port): address in use or not available")
    server.start()
    manager.start(poll_s)
    original_stop = server.stop

    def stop(grace):
        manager.stop()
        event = original_stop(grace)

        def release():
            event.wait()
            predictor.queue.shutdown()
            rpc_pool.shutdown(wait=False)

        threading.Thread(target=release, name="release-pools", daemon=True).start()
        return event

    server.stop = stop
    server.predictor = predictor
    log.info("serving model %s (versions %s) on %s:%d", name, manager.versions(), host, bound)
    return server, bound

