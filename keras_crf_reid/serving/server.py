"""Development gRPC server speaking TensorFlow Serving's API, for tests, benchmarks and laptops.

Production serves the exported SavedModels with the real TensorFlow Serving
(`tensorflow_model_server` or the tensorflow/serving Docker image; see docs/serving.md). This
server implements the same protos and semantics for what the project uses, so
`serving.client.ReidClient` works unchanged against either:

  PredictionService.Predict, PredictionService.GetModelMetadata (signature_def),
  ModelService.GetModelStatus.

Like TF Serving it watches --model_base_path for integer version directories (temporary and hidden
names are ignored), serves the highest complete one, polls every --poll_s seconds and loads new
versions in the background while the previous one keeps answering, and replays each version's
assets.extra/tf_serving_warmup_requests. Every input is validated against the signature before the
graph runs; bad requests (undecodable bytes included) get INVALID_ARGUMENT (RESOURCE_EXHAUSTED for
sizes over the limits, counted decoded, before the tensor is built) and never take the server down.
Inference runs on a bounded queue (UNAVAILABLE when full, as TF Serving's batching queue); work
whose caller has gone or whose deadline has passed is dropped before it starts or cancelled while
it runs, so a flood of short-deadline requests cannot pile up memory or delay later callers.

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.eager import cancellation as _cancellation
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc)

from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.serving import contract

log = logging.getLogger(__name__)

MB = 1 << 20
SIGNATURE_DEF_FIELD = "signature_def"
_State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """Request limits: sizes, batch and time-axis lengths, concurrency and per-request time."""

    max_message_mb: int = 64
    max_batch: int = 64
    max_frames: int = 1024
    request_timeout_s: float = 30.0
    workers: int = 4
    max_concurrent_rpcs: int = 32
    max_queued: int = 8
    max_inflight_mb: int = 256

    def __post_init__(self):
        for name in ("max_message_mb", "max_batch", "max_frames", "workers", "max_concurrent_rpcs",
                     "max_inflight_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_queued < 0:
            raise ValueError(f"--max_queued must be >= 0, got {self.max_queued}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"--request_timeout_s must be positive, got {self.request_timeout_s}")
        if self.max_inflight_mb < self.max_message_mb:
            raise ValueError(f"--max_inflight_mb={self.max_inflight_mb} must be at least "
                             f"--max_message_mb={self.max_message_mb}")


class RpcError(Exception):
    """A request failure to report to the caller with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class ServedVersion:
    """One loaded version: its signatures (callable and as protos)."""

    version: int
    path: str
    loaded: object
    signature_defs: dict

    def function(self, signature_name: str):
        return self.loaded.signatures[signature_name]


def _read_signature_defs(path: str) -> dict:
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise contract.SavedModelError(f"{path}: SavedModel has no MetaGraph tagged 'serve'")


def _dtype_name(enum: int) -> str:
    try:
        return f"{tf.dtypes.as_dtype(enum).name} ({types_pb2.DataType.Name(enum)})"
    except (TypeError, ValueError):
        return f"unknown dtype {enum}"


def _check_shape(alias: str, proto, info, limits: ServerLimits) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': tensor_shape has unknown rank")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    want = [int(d.size) for d in info.tensor_shape.dim]
    if not info.tensor_shape.unknown_rank:
        if len(shape) != len(want):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': expected rank {len(want)} with shape "
                           f"{tuple(want)} (-1 = any), got rank {len(shape)} shape {shape}")
        bad = [i for i, (g, w) in enumerate(zip(shape, want)) if w >= 0 and g != w]
        if bad:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': expected shape {tuple(want)} (-1 = any), got {shape}: "
                           f"dimension {bad[0]} must be {want[bad[0]]}")
    if any(d < 0 for d in shape):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': negative dimension in {shape}")
    for i, name in enumerate(("batch size", "number of frames T")[:max(0, len(shape) - 3)]):
        if shape[i] == 0:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': {name} is 0 in shape {shape}")
    if len(shape) >= 3 and shape[0] > limits.max_batch:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{alias}': batch size {shape[0]} exceeds the server limit "
                       f"--max_batch={limits.max_batch}; split the request")
    if len(shape) >= 5 and shape[1] > limits.max_frames:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{alias}': {shape[1]} frames exceed the server limit "
                       f"--max_frames={limits.max_frames}; send shorter groups")
    if 0 in shape:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{alias}': empty tensor of shape {shape}")
    return shape


def decoded_bytes(request: predict_pb2.PredictRequest, signature, limits: ServerLimits) -> int:
    """Validates request.inputs' names, dtypes and shapes against a SignatureDef and returns the
    bytes the inputs take once decoded, without decoding them.

    The decoded size, not the wire size, is what the limits bound: a TensorProto holding one value
    and a large shape is a few bytes on the wire and a full-size array once decoded.
    """
    got, want = set(request.inputs), set(signature.inputs)
    if got != want:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input size does not match signature: {len(got)}!={len(want)} "
                       f"len({{{', '.join(sorted(want))}}}). Sent extra: {sorted(got - want)}. "
                       f"Missing but required: {sorted(want - got)}.")
    total = 0
    for alias in sorted(want):
        proto, info = request.inputs[alias], signature.inputs[alias]
        if proto.dtype != info.dtype:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': expects {_dtype_name(info.dtype)} but "
                           f"{_dtype_name(proto.dtype)} is provided")
        shape = _check_shape(alias, proto, info, limits)
        total += math.prod(shape) * tf.dtypes.as_dtype(info.dtype).size
        if total > limits.max_message_mb * MB:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"inputs would take {total / MB:.1f} MB decoded, over the server limit "
                           f"--max_message_mb={limits.max_message_mb}")
    return total


def decode_inputs(request: predict_pb2.PredictRequest, signature, limits: ServerLimits) -> dict:
    """Validates request.inputs against a SignatureDef and returns {alias: np.ndarray}."""
    decoded_bytes(request, signature, limits)
    out = {}
    for alias in sorted(signature.inputs):
        proto = request.inputs[alias]
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
        try:
            arr = tf.make_ndarray(proto)
        except Exception as e:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': malformed TensorProto ({type(e).__name__}: {e})") from e
        if arr.shape != shape:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': values do not fill shape {shape}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}': contains {int(np.isnan(arr).sum())} NaN and "
                           f"{int(np.isinf(arr).sum())} Inf values")
        out[alias] = arr
    return out


class ByteBudget:
    """Bytes of decoded inputs held by all requests at once (--max_inflight_mb), so that many
    concurrent large requests are refused instead of exhausting memory."""

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    @contextlib.contextmanager
    def hold(self, nbytes: int):
        """Reserves nbytes for the duration of the block; RESOURCE_EXHAUSTED if they do not fit."""
        with self._lock:
            if self._held + nbytes > self.limit:
                held = self._held
                raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"server busy: requests in flight hold {held / MB:.1f} MB of decoded "
                               f"inputs and this one needs {nbytes / MB:.1f} MB more than the "
                               f"--max_inflight_mb={self.limit // MB} budget allows; retry later")
            self._held += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._held -= nbytes


_thread_cancellation = threading.local()


def _install_per_thread_cancellation() -> bool:
    """Makes TensorFlow's eager cancellation context per thread; False if TF lacks the hook.

    TensorFlow reads the CancellationManager that cancels a running function call from one
    process-wide variable (tensorflow/python/eager/cancellation.py, read by
    context.call_function), which would let concurrent inference threads cancel each other's
    calls. Reading it from a thread-local instead keeps each cancellation to its own call.
    """
    if not (callable(getattr(_cancellation, "context", None))
            and hasattr(_cancellation, "CancellationManager")):
        return False
    if getattr(_cancellation.context, "_per_thread", False):
        return True

    def context():
        return getattr(_thread_cancellation, "manager", None)

    context._per_thread = True
    _cancellation.context = context
    return True


class _Job:
    """One inference request on the queue: its inputs, the latest time it may start, and whether
    its caller still waits.

    Holds one queue slot from admission until it finishes, or until it is abandoned while still
    queued (the slot is freed at once then, not when a worker reaches it).
    """

    def __init__(self, inputs: dict, start_by: float, cancellable: bool, release: Callable[[], None]):
        self._lock = threading.Lock()
        self._inputs: dict | None = inputs
        self._release = release
        self._state = "queued"
        self.start_by = start_by
        self.manager = _cancellation.CancellationManager() if cancellable else None

    def take_inputs(self) -> dict | None:
        """The inputs, or None when the caller has gone or it is too late to start (drop the work)."""
        with self._lock:
            if self._state == "queued" and time.monotonic() >= self.start_by:
                self._finish_locked()
            if self._state != "queued":
                return None
            self._state = "running"
            inputs, self._inputs = self._inputs, None
            return inputs

    def finish(self) -> None:
        with self._lock:
            self._finish_locked()

    def _finish_locked(self) -> None:
        if self._state != "done":
            self._state = "done"
            self._inputs = None
            self._release()

    def abandon(self) -> None:
        """Called when the caller stops waiting: drops queued work, cancels running work."""
        with self._lock:
            running = self._state == "running"
            if self._state == "queued":
                self._finish_locked()
        if running and self.manager is not None:
            self.manager.start_cancel()


class _Dropped(Exception):
    """The job's caller left or its deadline passed before a worker took it."""


# A request is refused before it starts when this fraction of its estimated time at the fastest
# rate seen so far exceeds the time left. At 1.0: large inputs rarely run faster per value than
# the small ones the rate comes from (380 frames at once: 1.6 ms/frame vs 1.2-1.8 ms/frame for 16
# frames on CPU), so what is refused would at best have finished with almost no time to spare.
_ESTIMATE_MARGIN = 1.0


class InferenceQueue:
    """Runs inference on `workers` threads with at most `max_queued` requests waiting.

    A full queue answers UNAVAILABLE at once (the client may retry later) instead of growing.
    Work whose caller is gone (deadline passed, RPC cancelled) is dropped before it starts, and a
    call already running is cancelled (TensorFlow's CancellationManager; it stops at the next
    op boundary), so abandoned requests neither hold memory nor delay the next callers. Work that
    cannot finish in the time left, at the fastest rate (seconds per input byte) this function
    has run at so far, is refused with DEADLINE_EXCEEDED before it is queued or started.
    """

    def __init__(self, workers: int, max_queued: int):
        self.workers = workers
        self.max_queued = max_queued
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="infer")
        self._lock = threading.Lock()
        self._admitted = 0
        self._cancellable = _install_per_thread_cancellation()
        self._best_s_per_byte: dict = {}

    def min_seconds(self, key, nbytes: int) -> float:
        """Lower estimate of the run time of nbytes of input to the function `key` (0: unknown)."""
        with self._lock:
            best = self._best_s_per_byte.get(key)
        return 0.0 if best is None else _ESTIMATE_MARGIN * best * nbytes

    def check_time(self, key, nbytes: int, remaining_s: float) -> None:
        """DEADLINE_EXCEEDED if nbytes of input cannot be processed in remaining_s."""
        need = self.min_seconds(key, nbytes)
        if need > remaining_s:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"inference of {nbytes / MB:.1f} MB of input takes at least {need:.2f} s on "
                           f"this server, more than the {max(0.0, remaining_s):.2f} s left before the "
                           f"deadline; not started")

    def run(self, fn: Callable[..., dict], inputs: dict, timeout_s: float,
            on_done: Callable[[Callable[[], None]], object] | None = None, key=None) -> dict:
        """fn(**inputs as tensors) on a worker; waits at most timeout_s.

        on_done(callback), e.g. grpc's context.add_callback, registers the job's abandonment to
        run when the RPC ends for any reason (client cancel, deadline, disconnect). key names
        the function for the run-time estimate (default: fn itself).
        """
        key = fn if key is None else key
        nbytes = sum(np.asarray(v).nbytes for v in inputs.values())
        self.check_time(key, nbytes, timeout_s)
        with self._lock:
            full = self._admitted >= self.workers + self.max_queued
            self._admitted += not full
        if full:
            raise RpcError(grpc.StatusCode.UNAVAILABLE,
                           f"server busy: {self.workers} inferences running and {self.max_queued} "
                           f"waiting (--workers, --max_queued); retry later")
        min_run_s = self.min_seconds(key, nbytes)
        job = _Job(inputs, time.monotonic() + timeout_s - min_run_s, self._cancellable, self._release)
        del inputs
        try:
            future = self._pool.submit(self._work, fn, job, key, nbytes)
        except RuntimeError:
            job.finish()
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        if on_done is not None and on_done(job.abandon) is False:
            job.abandon()
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError as e:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"inference did not finish within {timeout_s:.2f} s") from e
        except (_Dropped, tf.errors.CancelledError) as e:
            raise RpcError(grpc.StatusCode.CANCELLED, "request abandoned by its caller") from e
        finally:
            job.abandon()

    def _work(self, fn: Callable[..., dict], job: _Job, key, nbytes: int) -> dict:
        try:
            inputs = job.take_inputs()
            if inputs is None:
                raise _Dropped()
            tensors = {k: tf.constant(v) for k, v in inputs.items()}
            del inputs
            _thread_cancellation.manager = job.manager
            start = time.perf_counter()
            try:
                outputs = fn(**tensors)
            finally:
                _thread_cancellation.manager = None
            rate = (time.perf_counter() - start) / max(1, nbytes)
            with self._lock:
                self._best_s_per_byte[key] = min(rate, self._best_s_per_byte.get(key, math.inf))
            return outputs
        finally:
            job.finish()

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    @property
    def pending(self) -> int:
        """Requests running or waiting."""
        with self._lock:
            return self._admitted

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def folder_signature(path: str) -> tuple:
    """(relative path, size, mtime_ns) of every file under path, sorted: changes whenever any file
    is added, removed, rewritten or grows, so a version that failed to load is retried once its
    folder changes (e.g. a half-copied version completed in place, saved_model.pb untouched)."""
    entries = []
    for root, dirs, files in os.walk(path, onerror=_raise):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            st = os.stat(full)
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


def _raise(error: OSError) -> None:
    raise error


class ModelManager:
    """Loads, swaps and unloads the versions of one model under a base path."""

    def __init__(self, base_path: str, name: str, num_versions: int = 1,
                 warmup: Callable[[ServedVersion], None] | None = None):
        if num_versions < 1:
            raise ValueError(f"--num_versions must be at least 1, got {num_versions}")
        self.base_path = os.path.abspath(base_path)
        self.name = name
        self.num_versions = num_versions
        self._warmup = warmup
        self._lock = threading.Lock()
        self._served: dict[int, ServedVersion] = {}
        self._status: dict[int, tuple[int, int, str]] = {}
        self._failed: dict[int, tuple] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set_status(self, version: int, state: int, code: int = 0, message: str = "") -> None:
        with self._lock:
            self._status[version] = (state, code, message)

    def _load(self, version: int) -> ServedVersion:
        path = os.path.join(self.base_path, str(version))
        self._set_status(version, _State.LOADING)
        served = ServedVersion(version, path, tf.saved_model.load(path), _read_signature_defs(path))
        if self._warmup:
            self._warmup(served)
        return served

    def poll(self) -> None:
        """Loads the newest complete versions on disk, then unloads versions no longer wanted.

        Availability is preserved: a served version is only unloaded once enough wanted versions
        are loaded, so a failed or removed new version leaves the previous one answering.
        """
        wanted = [v for v in contract.list_versions(self.base_path)
                  if contract.is_complete_saved_model(os.path.join(self.base_path, str(v)))][-self.num_versions:]
        for v in wanted:
            path = os.path.join(self.base_path, str(v))
            try:
                signature = folder_signature(path)
            except OSError:
                continue
            with self._lock:
                if v in self._served or self._failed.get(v) == signature:
                    continue
            try:
                served = self._load(v)
            except Exception as e:
                log.error("model %s: cannot load version %d from %s: %s", self.name, v, path, e)
                self._failed[v] = signature
                self._set_status(v, _State.END, grpc.StatusCode.UNKNOWN.value[0], f"{type(e).__name__}: {e}")
                continue
            with self._lock:
                self._served[v] = served
                self._status[v] = (_State.AVAILABLE, 0, "")
            log.info("model %s: serving version %d from %s", self.name, v, path)
        with self._lock:
            keep = [v for v in self._served if v in wanted]
            others = sorted((v for v in self._served if v not in wanted), reverse=True)
            keep += others[:max(0, self.num_versions - len(keep))]
            for v in [v for v in self._served if v not in keep]:
                del self._served[v]
                self._status[v] = (_State.END, 0, "")
                log.info("model %s: unloaded version %d", self.name, v)

    def get(self, version: int | None) -> ServedVersion:
        """The served version (latest when None); NOT_FOUND if it is not being served."""
        with self._lock:
            if version is None and self._served:
                return self._served[max(self._served)]
            if version is not None and version in self._served:
                return self._served[version]
        what = f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"
        raise RpcError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {what}")

    def versions(self) -> list[int]:
        with self._lock:
            return sorted(self._served)

    def statuses(self) -> dict[int, tuple[int, int, str]]:
        with self._lock:
            return dict(self._status)

    def start(self, poll_s: float) -> None:
        """Polls base_path every poll_s seconds in a daemon thread (poll_s <= 0: never)."""
        if poll_s <= 0:
            return

        def loop():
            while not self._stop.wait(poll_s):
                try:
                    self.poll()
                except Exception:
                    log.exception("model %s: polling %s failed", self.name, self.base_path)

        self._thread = threading.Thread(target=loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


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
        self.queue.check_time(key, nbytes, timeout_s)
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
    """Replays assets.extra/tf_serving_warmup_requests (Predict logs only), as TF Serving does."""
    path = os.path.join(served.path, contract.WARMUP_FILE)
    if not os.path.isfile(path):
        return
    count = 0
    for record in tf.data.TFRecordDataset(path):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if entry.WhichOneof("log_type") == "predict_log":
            predictor.run_predict(entry.predict_log.request, served, predictor.limits.request_timeout_s)
            count += 1
    log.info("model %s: version %d warmed up with %d requests", predictor.manager.name, served.version, count)


def serve(model_base_path: str, port: int = 0, host: str = "127.0.0.1", model_name: str | None = None,
          poll_s: float = 1.0, num_versions: int = 1, limits: ServerLimits = ServerLimits(),
          ) -> tuple[grpc.Server, int]:
    """Starts the server (versions present now are loaded before it returns); returns it and its port.

    Stop it with `server.stop(grace)`; the polling thread and pools stop with it. `server.predictor`
    is the PredictionServicer (its `queue` and `budget` show the work in flight).
    """
    base = os.path.abspath(model_base_path)
    if not os.path.isdir(base):
        raise contract.SavedModelError(f"{base}: --model_base_path does not exist or is not a directory")
    name = model_name or os.path.basename(base.rstrip(os.sep))
    manager = ModelManager(base, name, num_versions, warmup=lambda served: _warmup(predictor, served))
    predictor = PredictionServicer(manager, limits)
    model_servicer = ModelServicer(manager, limits)
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


def spawn(model_base_path: str, *args: str, timeout_s: float = 120.0,
          log_path: str | None = None) -> tuple[subprocess.Popen, int]:
    """Runs this server in a subprocess on a free 127.0.0.1 port; returns (process, port).

    For tools that measure the server apart from their own clients (CPU, GIL, memory). The
    server's output goes to log_path (default: a temp file), quoted if it fails to start.
    """
    workdir = tempfile.mkdtemp(prefix="reid-server-")
    port_file = os.path.join(workdir, "port")
    log_path = log_path or os.path.join(workdir, "server.log")
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.server", f"--model_base_path={model_base_path}",
           "--host=127.0.0.1", "--port=0", f"--port_file={port_file}", *args]
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": path}, stdout=out,
                                stderr=subprocess.STDOUT)

    def tail() -> str:
        with open(log_path, errors="replace") as f:
            return f.read()[-3000:]

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening: "
                               f"{' '.join(cmd)}\n{tail()}")
        if os.path.exists(port_file):
            with open(port_file) as f:
                return proc, int(f.read())
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"server did not start listening within {timeout_s:.0f} s: {' '.join(cmd)}\n{tail()}")


def _main(argv) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        limits = ServerLimits(f.max_message_mb, f.max_batch, f.max_frames, f.request_timeout_s,
                              f.workers, f.max_concurrent_rpcs, f.max_queued, f.max_inflight_mb)
        server, port = serve(f.model_base_path, f.port, f.host, f.model_name, f.poll_s, f.num_versions, limits)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
    print(f"serving {f.model_name or os.path.basename(os.path.abspath(f.model_base_path))} "
          f"on {f.host}:{port}", flush=True)
    if f.port_file:
        write_atomic(f.port_file, str(port))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(2).wait()


def main() -> None:
    from absl import app, flags

    flags.DEFINE_string("model_base_path", None, "Directory holding integer version subdirectories.")
    flags.DEFINE_string("model_name", None, "Model name clients ask for (default: basename of the base path).")
    flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on (0.0.0.0 for all).")
    flags.DEFINE_integer("port", 8500, "gRPC port (0 = pick a free one; the bound port is printed).")
    flags.DEFINE_string("port_file", None, "Write the bound port to this file once listening.")
    flags.DEFINE_float("poll_s", 1.0, "Seconds between scans of the base path for new versions (0: never).")
    flags.DEFINE_integer("num_versions", 1, "How many of the newest versions to keep loaded.")
    flags.DEFINE_integer("max_message_mb", 64, "Largest request or response message, in MB.")
    flags.DEFINE_integer("max_batch", 64, "Largest batch size accepted.")
    flags.DEFINE_integer("max_frames", 1024, "Largest number of frames T per sequence accepted.")
    flags.DEFINE_float("request_timeout_s", 30.0, "Server-side limit on one request's inference time.")
    flags.DEFINE_integer("workers", 4, "Threads handling RPCs and threads running inference.")
    flags.DEFINE_integer("max_concurrent_rpcs", 32,
                         "RPCs in flight beyond which new ones get RESOURCE_EXHAUSTED.")
    flags.DEFINE_integer("max_queued", 8,
                         "Inference requests waiting for a worker beyond which new ones get UNAVAILABLE.")
    flags.DEFINE_integer("max_inflight_mb", 256,
                         "Decoded input MB held by all requests at once beyond which new ones get "
                         "RESOURCE_EXHAUSTED (at least --max_message_mb).")
    flags.mark_flag_as_required("model_base_path")
    app.run(_main)


if __name__ == "__main__":
    main()
