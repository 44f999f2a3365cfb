"""Admission of inference work: a budget of decoded bytes in flight, a bounded, deadline-aware
queue, and run-time estimates learned from the calls.

`ByteBudget` bounds the decoded inputs all requests hold at once (--max_inflight_mb).
`InferenceQueue` runs inference on --workers threads with at most --max_queued waiting (UNAVAILABLE
beyond); work whose caller has gone or whose deadline has passed is dropped before it starts or
cancelled while it runs, and its result, if it still comes, is dropped at once.
`RunTimeEstimates` predicts each function's run time from its input size, refitted after every
completed call and bounded below by the calls cancelled unfinished; work that cannot finish in the
time left is refused before it is queued, and dropped if that is still so when a worker takes it.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import functools
import threading
import time
from typing import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import cancellation as _cancellation

from keras_crf_reid.serving.server.limits import MB, RpcError


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_trim = _malloc_trim()
# Arrays from this size on leave memory behind that glibc keeps in its heaps once freed (from
# 128 KB to 32 MB it stops using mmap for a size once a block that large was freed), so the
# server's RSS would stay at the peak of its largest requests: the heap is trimmed after them.
_TRIM_BYTES = 4 * MB


def trim_heap(nbytes: int) -> None:
    """Returns the C heap's free memory to the system after work on nbytes >= _TRIM_BYTES."""
    if nbytes >= _TRIM_BYTES and _trim is not None:
        _trim()


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
            trim_heap(nbytes)


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
    """One inference request on the queue: its inputs, its deadline, and whether its caller still
    waits.

    Holds one queue slot from admission until it finishes, or until it is abandoned while still
    queued (the slot is freed at once then, not when a worker reaches it).
    """

    def __init__(self, inputs: dict, deadline: float, cancellable: bool, release: Callable[[], None]):
        self._lock = threading.Lock()
        self._inputs: dict | None = inputs
        self._release = release
        self._state = "queued"
        self._abandoned = False
        self.deadline = deadline
        self.expired = False
        self.manager = _cancellation.CancellationManager() if cancellable else None

    @property
    def abandoned(self) -> bool:
        """Whether the caller has stopped waiting (its result would go nowhere)."""
        with self._lock:
            return self._abandoned

    def take_inputs(self, run_s: float) -> dict | None:
        """The inputs, or None (drop the work) when the caller has gone or the work, estimated at
        run_s seconds, can no longer finish before the deadline."""
        with self._lock:
            if self._state == "queued" and time.monotonic() + run_s >= self.deadline:
                self.expired = True
                self._finish_locked()
            if self._state != "queued":
                return None
            self._state = "running"
            inputs, self._inputs = self._inputs, None
            return inputs

    def why_dropped(self) -> str:
        if self.expired:
            return "inference can no longer finish before the deadline at its estimated run time; not started"
        return "request abandoned by its caller before it started"

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
            self._abandoned = True
            running = self._state == "running"
            if self._state == "queued":
                self._finish_locked()
        if running and self.manager is not None:
            self.manager.start_cancel()


class _Dropped(Exception):
    """The job's caller left, or its deadline cannot be met, before a worker started it."""


# Completed calls per function the run-time fit uses: recent enough to follow the machine's
# speed (a server sharing its cores with training slows down and speeds up again).
_HISTORY = 32
# How long a cancelled call's bound on its function's run time holds.
_FLOOR_TTL_S = 60.0
# Two input sizes closer than this ratio count as one for the fit (its slope would be noise).
_DISTINCT_SIZES = 1.5


class RunTimeEstimates:
    """Run time of each served function by input size, learned from the calls themselves.

    Completed calls: seconds = overhead + per_byte * input bytes, a least-squares fit to the last
    _HISTORY calls of the function (proportional to bytes while they all had about one size), so
    the estimate follows every call, slower ones included, instead of keeping the first or the
    fastest. A cancelled call ran `e` seconds on `n` bytes without finishing, so the same work
    takes longer, by how much is unknown; a bound of `e` alone would let the next such call start
    whenever more than `e` is left, only to be cancelled at the same point again (a call can show
    no more than the time its deadline gave it). So, doubling like a backoff, for _FLOOR_TTL_S
    `m` bytes are estimated at no less than 2 * e * min(1, m / n); a completed call of at least
    n bytes that was faster than that retires the bound at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict = {}      # key -> deque of (bytes, seconds) of completed calls
        self._fits: dict = {}       # key -> (overhead_s, s_per_byte)
        self._floors: dict = {}     # key -> list of (bytes, seconds, when) of cancelled calls

    def known(self, key) -> bool:
        """Whether a call of `key` has completed (its estimate is a measurement, not a bound)."""
        with self._lock:
            return key in self._fits

    def completed(self, key, nbytes: int, seconds: float) -> None:
        with self._lock:
            calls = self._calls.setdefault(key, collections.deque(maxlen=_HISTORY))
            calls.append((max(1, nbytes), seconds))
            self._fits[key] = _fit(calls)
            self._floors[key] = [f for f in self._floors.get(key, [])
                                 if not (nbytes >= f[0] and seconds < f[1])]

    def cancelled(self, key, nbytes: int, seconds: float) -> None:
        with self._lock:
            self._floors.setdefault(key, []).append((max(1, nbytes), 2 * seconds, self._clock()))

    def seconds(self, key, nbytes: int) -> float:
        """Estimated run time of nbytes of input to `key` (0.0: nothing known about it yet)."""
        now = self._clock()
        with self._lock:
            overhead, per_byte = self._fits.get(key, (0.0, 0.0))
            floors = self._floors.get(key, [])
            floors[:] = [f for f in floors if now - f[2] < _FLOOR_TTL_S]
            bound = max((s * min(1.0, nbytes / n) for n, s, _ in floors), default=0.0)
        fitted = overhead + per_byte * nbytes if per_byte or overhead else 0.0
        return max(fitted, bound)


def _fit(calls) -> tuple[float, float]:
    """(overhead_s, s_per_byte) of seconds ~ overhead + per_byte * bytes over calls, both >= 0."""
    n = np.array([c[0] for c in calls], np.float64)
    t = np.array([c[1] for c in calls], np.float64)
    if n.max() < _DISTINCT_SIZES * n.min():
        return 0.0, float(np.median(t / n))
    slope = float(np.cov(n, t, bias=True)[0, 1] / np.var(n))
    overhead = float(t.mean() - slope * n.mean())
    if slope <= 0:
        return float(np.median(t)), 0.0
    if overhead < 0:
        return 0.0, float((n * t).sum() / (n * n).sum())
    return overhead, slope


class InferenceQueue:
    """Runs inference on `workers` threads with at most `max_queued` requests waiting.

    A full queue answers UNAVAILABLE at once (the client may retry later) instead of growing.
    Work whose caller is gone (deadline passed, RPC cancelled) is dropped before it starts, and a
    call already running is cancelled (TensorFlow's CancellationManager; it stops at the next op
    boundary), so abandoned requests neither hold memory nor delay the next callers; a result
    that comes after its caller left is dropped at once. Work whose estimated run time
    (`RunTimeEstimates`) exceeds the time left is refused with DEADLINE_EXCEEDED when it arrives,
    and dropped if that is still so when a worker reaches it. A function no call of which has
    completed yet runs one call at a time (the others get UNAVAILABLE), so a flood on a signature
    without warm-up cannot start --workers huge calls at once before anything is known of it.
    After a large call the C heap is trimmed, so its memory goes back to the system.
    """

    def __init__(self, workers: int, max_queued: int, estimates: RunTimeEstimates | None = None):
        self.workers = workers
        self.max_queued = max_queued
        self.estimates = estimates or RunTimeEstimates()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="infer")
        self._lock = threading.Lock()
        self._admitted = 0
        self._measuring: set = set()
        self._cancellable = _install_per_thread_cancellation()

    def min_seconds(self, key, nbytes: int) -> float:
        """Estimated run time of nbytes of input to the function `key` (0: nothing known yet)."""
        return self.estimates.seconds(key, nbytes)

    def check_time(self, key, nbytes: int, remaining_s: float) -> None:
        """DEADLINE_EXCEEDED if nbytes of input cannot be processed in remaining_s."""
        need = self.min_seconds(key, nbytes)
        if need > remaining_s:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"inference of {nbytes / MB:.1f} MB of input takes about {need:.2f} s on "
                           f"this server, more than the {max(0.0, remaining_s):.2f} s left before the "
                           f"deadline; not started")

    def check_admission(self, key, nbytes: int, remaining_s: float) -> None:
        """The refusals `run` would answer for nbytes of input to `key` (deadline, full queue, a
        function being measured), checked before the inputs are decoded: a flood refused here
        costs neither the decoding nor its memory. `run` checks again."""
        self.check_time(key, nbytes, remaining_s)
        measuring = not self.estimates.known(key)
        with self._lock:
            full = self._admitted >= self.workers + self.max_queued
            busy = measuring and key in self._measuring
        self._refuse(full, busy, key)

    def _refuse(self, full: bool, busy: bool, key) -> None:
        if full:
            raise RpcError(grpc.StatusCode.UNAVAILABLE,
                           f"server busy: {self.workers} inferences running and {self.max_queued} "
                           f"waiting (--workers, --max_queued); retry later")
        if busy:
            raise RpcError(grpc.StatusCode.UNAVAILABLE,
                           f"server busy: the first call of {_name(key)} is running and measures its "
                           f"run time; it takes no other call before that one ends; retry later")

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
        measuring = not self.estimates.known(key)
        with self._lock:
            full = self._admitted >= self.workers + self.max_queued
            busy = measuring and key in self._measuring
            if not (full or busy):
                self._admitted += 1
                if measuring:
                    self._measuring.add(key)
        self._refuse(full, busy, key)
        job = _Job(inputs, time.monotonic() + timeout_s, self._cancellable,
                   functools.partial(self._release, key if measuring else None))
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
        except _Dropped as e:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED if job.expired else grpc.StatusCode.CANCELLED,
                           str(e)) from e
        except tf.errors.CancelledError as e:
            raise RpcError(grpc.StatusCode.CANCELLED, "request abandoned by its caller") from e
        finally:
            job.abandon()

    def _work(self, fn: Callable[..., dict], job: _Job, key, nbytes: int) -> dict:
        try:
            inputs = job.take_inputs(self.min_seconds(key, nbytes))
            if inputs is None:
                raise _Dropped(job.why_dropped())
            tensors = {k: tf.constant(v) for k, v in inputs.items()}
            del inputs
            _thread_cancellation.manager = job.manager
            start = time.perf_counter()
            try:
                outputs = fn(**tensors)
            except tf.errors.CancelledError:
                self.estimates.cancelled(key, nbytes, time.perf_counter() - start)
                raise
            finally:
                _thread_cancellation.manager = None
                del tensors
            self.estimates.completed(key, nbytes, time.perf_counter() - start)
            if job.abandoned:
                raise _Dropped("request abandoned by its caller; its result was dropped")
            return outputs
        finally:
            job.finish()
            trim_heap(nbytes)

    def _release(self, measured_key) -> None:
        with self._lock:
            self._admitted -= 1
            self._measuring.discard(measured_key)

    @property
    def pending(self) -> int:
        """Requests running or waiting."""
        with self._lock:
            return self._admitted

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _name(key) -> str:
    """How a run-time estimate key reads in a message: (version, signature) or a function."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"signature {key[1]!r} of version {key[0]}"
    return repr(getattr(key, "__name__", key))
