"""Admission of inference work: a budget of decoded bytes in flight and a bounded, deadline-aware
queue.

`ByteBudget` bounds the decoded inputs all requests hold at once (--max_inflight_mb).
`InferenceQueue` runs inference on --workers threads with at most --max_queued waiting (UNAVAILABLE
beyond); work whose caller has gone or whose deadline has passed is dropped before it starts or
cancelled while it runs, and work that cannot finish in the time left at the fastest rate seen
for its function (warm-up requests give the first rate) is refused before it is queued.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import math
import threading
import time
from typing import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import cancellation as _cancellation

from keras_crf_reid.serving.server.limits import MB, RpcError

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
            except tf.errors.CancelledError:
                # No estimate yet (a signature without warm-up): the time this call ran before it
                # was cancelled is a lower bound of its rate, enough to refuse the next like it.
                rate = (time.perf_counter() - start) / max(1, nbytes)
                with self._lock:
                    self._best_s_per_byte.setdefault(key, rate)
                raise
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
