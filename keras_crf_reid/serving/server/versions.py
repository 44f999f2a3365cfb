"""The versions of one served model: which version folders are loaded, swapped in and unloaded.

Like TF Serving, `ModelManager` watches a base path for integer version folders (temporary and
hidden names are ignored), loads the newest complete ones in the background while the previous
one keeps answering, replays each new version's warm-up requests before serving it, and retries
a version that failed to load once its folder changes. A version folder is loaded only once it is
complete and stable: no file in it added, removed or changed for SETTLE_S seconds (its inodes'
change times, which copies preserving modification times cannot fake, or two polls that far
apart seeing the same files), so a folder copied file by file (saved_model.pb and variables/
first, assets.extra/ last) is not served before its warm-up requests have arrived.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Callable

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2

from keras_crf_reid.configs.server import SETTLE_S
from keras_crf_reid.serving import contract
from keras_crf_reid.serving.server.limits import RpcError

log = logging.getLogger(__name__)
State = get_model_status_pb2.ModelVersionStatus.State


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


def last_change(path: str) -> float:
    """The latest inode change time (st_ctime) of path and everything under it, in seconds."""
    latest = os.stat(path).st_ctime
    for root, dirs, files in os.walk(path, onerror=_raise):
        for name in dirs + files:
            latest = max(latest, os.stat(os.path.join(root, name)).st_ctime)
    return latest


def _raise(error: OSError) -> None:
    raise error


class ModelManager:
    """Loads, swaps and unloads the versions of one model under a base path."""

    def __init__(self, base_path: str, name: str, num_versions: int = 1,
                 warmup: Callable[[ServedVersion], None] | None = None, settle_s: float = SETTLE_S):
        if num_versions < 1:
            raise ValueError(f"--num_versions must be at least 1, got {num_versions}")
        if settle_s < 0:
            raise ValueError(f"--settle_s must be >= 0, got {settle_s}")
        self.settle_s = settle_s
        # version -> (folder signature, when first seen with it): versions not settled yet.
        self._unsettled: dict[int, tuple[tuple, float]] = {}
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
        self._set_status(version, State.LOADING)
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
                with self._lock:
                    if v in self._served or self._failed.get(v) == signature:
                        continue
                if not self._settled(v, signature, last_change(path)):
                    continue
            except OSError:
                continue
            try:
                served = self._load(v)
            except Exception as e:
                log.error("model %s: cannot load version %d from %s: %s", self.name, v, path, e)
                self._failed[v] = signature
                self._set_status(v, State.END, grpc.StatusCode.UNKNOWN.value[0], f"{type(e).__name__}: {e}")
                continue
            with self._lock:
                self._served[v] = served
                self._status[v] = (State.AVAILABLE, 0, "")
            log.info("model %s: serving version %d from %s", self.name, v, path)
        with self._lock:
            keep = [v for v in self._served if v in wanted]
            others = sorted((v for v in self._served if v not in wanted), reverse=True)
            keep += others[:max(0, self.num_versions - len(keep))]
            for v in [v for v in self._served if v not in keep]:
                del self._served[v]
                self._status[v] = (State.END, 0, "")
                log.info("model %s: unloaded version %d", self.name, v)

    def _settled(self, version: int, signature: tuple, changed_at: float) -> bool:
        """Whether a version folder with these files has stayed unchanged for settle_s."""
        now = time.time()
        if now - changed_at >= self.settle_s:
            self._unsettled.pop(version, None)
            return True
        seen = self._unsettled.get(version)
        if seen is None or seen[0] != signature:
            if seen is None:
                log.info("model %s: version %d is still changing; loading it once it has been "
                         "unchanged for %.1f s", self.name, version, self.settle_s)
            self._unsettled[version] = (signature, now)
            return False
        if now - seen[1] >= self.settle_s:
            del self._unsettled[version]
            return True
        return False

    def pending(self) -> list[int]:
        """Complete versions waiting to settle before they are loaded."""
        return sorted(self._unsettled)

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

