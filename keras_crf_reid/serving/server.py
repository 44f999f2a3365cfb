"""Development gRPC server speaking TensorFlow Serving's API, for tests, benchmarks and laptops.

Production serves the exported SavedModels with the real TensorFlow Serving
(`tensorflow_model_server` or the tensorflow/serving Docker image; see docs/serving.md). This
server implements the same protos and semantics for what the project uses, so
`serving.client.ReidClient` works unchanged against either:

  PredictionService.Predict, PredictionService.GetModelMetadata (signature_def),
  ModelService.GetModelStatus.

This module is its command line and `spawn` (the server in a subprocess). The pieces, by concern:
  limits.py     ServerLimits (every limit and its flag, declared once) and request validation
  admission.py  the decoded-bytes budget and the bounded, deadline-aware inference queue
  versions.py   ModelManager: version folders loaded, swapped, unloaded, warmed up
  service.py    the gRPC services and `serve`

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from keras_crf_reid import cli
from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.serving.limits import ServerLimits
from keras_crf_reid.serving.service import serve
from keras_crf_reid.serving.versions import SETTLE_S


class ServerProcess(subprocess.Popen):
    """A spawned server; its temp folder (port file, default log) is removed once it has exited
    and been waited for (`wait`, `poll`, `with`), or when this object goes away.

    It holds the write end of the pipe the server watches (--parent_fd): the operating system
    closes it when this process exits in any way, kill -9 included, and the server then stops.
    """

    workdir: str | None = None
    parent_fd: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._remove_workdir()
        return code

    def poll(self) -> int | None:
        code = super().poll()
        if code is not None:
            self._remove_workdir()
        return code

    def _remove_workdir(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.parent_fd is not None:
            os.close(self.parent_fd)
            self.parent_fd = None


def spawn(model_base_path: str, *args: str, timeout_s: float = 120.0,
          log_path: str | None = None) -> tuple[ServerProcess, int]:
    """Runs this server in a subprocess on a free 127.0.0.1 port; returns (process, port).

    For tools that measure the server apart from their own clients (CPU, GIL, memory). The
    server's output goes to log_path (default: a file in the process's temp folder, which is
    removed when it exits), quoted if it fails to start. The server stops when the calling
    process exits without stopping it (even killed with SIGKILL): it watches a pipe whose other
    end only this process holds (--parent_fd), and then removes the temp folder itself.
    """
    workdir = tempfile.mkdtemp(prefix="reid-server-")
    port_file = os.path.join(workdir, "port")
    log_path = log_path or os.path.join(workdir, "server.log")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.server", f"--model_base_path={model_base_path}",
           "--host=127.0.0.1", "--port=0", f"--port_file={port_file}", f"--parent_fd={read_fd}",
           f"--orphan_cleanup_dir={workdir}", *args]
    try:
        with open(log_path, "ab") as out:
            proc = ServerProcess(cmd, env={**os.environ, "PYTHONPATH": path}, stdout=out,
                                 stderr=subprocess.STDOUT, pass_fds=(read_fd,))
    except BaseException:
        os.close(write_fd)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        os.close(read_fd)
    proc.workdir = workdir
    proc.parent_fd = write_fd
    weakref.finalize(proc, shutil.rmtree, workdir, True)

    def tail() -> str:
        with open(log_path, errors="replace") as f:
            return f.read()[-3000:]

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if subprocess.Popen.poll(proc) is not None:  # keeps the log until it is quoted
            message = (f"server exited with code {proc.returncode} before listening: "
                       f"{' '.join(cmd)}\n{tail()}")
            proc.wait()
            raise RuntimeError(message)
        if os.path.exists(port_file):
            with open(port_file) as f:
                return proc, int(f.read())
        time.sleep(0.1)
    proc.kill()
    message = f"{' '.join(cmd)}\n{tail()}"
    proc.wait()
    raise TimeoutError(f"server did not start listening within {timeout_s:.0f} s: {message}")


def _watch_parent(fd: int, done: threading.Event) -> threading.Event:
    """Watches the pipe `fd` (--parent_fd) on a thread; returns an event set, with `done`, once it
    reaches end of file: every process holding its write end (the one that spawned this server)
    has exited, however it ended."""
    try:
        os.fstat(fd)
    except OSError as e:
        raise SystemExit(f"error: --parent_fd={fd} is not an open file descriptor ({e.strerror})")
    orphaned = threading.Event()

    def watch():
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        logging.warning("--parent_fd=%d closed: the process that started this server is gone; "
                        "stopping", fd)
        orphaned.set()
        done.set()

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
    return orphaned


def _parent_gone(fd: int | None) -> bool:
    """Whether the --parent_fd pipe is at end of file now (its process died after, e.g., sending
    SIGTERM and before it could wait for this server and remove its temp folder)."""
    if fd is None:
        return False
    try:
        return bool(select.select([fd], [], [], 0)[0]) and os.read(fd, 1) == b""
    except OSError:
        return False


def _main(argv) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    done = threading.Event()
    orphaned = _watch_parent(f.parent_fd, done) if f.parent_fd is not None else threading.Event()
    try:
        limits = cli.from_flags(ServerLimits, f)
        server, port = serve(f.model_base_path, f.port, f.host, f.model_name, f.poll_s, f.num_versions, limits,
                             f.settle_s)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
    print(f"serving {f.model_name or os.path.basename(os.path.abspath(f.model_base_path))} "
          f"on {f.host}:{port}", flush=True)
    if f.port_file:
        write_atomic(f.port_file, str(port))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(2).wait()
    if f.orphan_cleanup_dir and (orphaned.is_set() or _parent_gone(f.parent_fd)):
        shutil.rmtree(f.orphan_cleanup_dir, ignore_errors=True)


def main() -> None:
    from absl import app, flags

    flags.DEFINE_string("model_base_path", None, "Directory holding integer version subdirectories.")
    flags.DEFINE_string("model_name", None, "Model name clients ask for (default: basename of the base path).")
    flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on (0.0.0.0 for all).")
    flags.DEFINE_integer("port", 8500, "gRPC port (0 = pick a free one; the bound port is printed).")
    flags.DEFINE_string("port_file", None, "Write the bound port to this file once listening.")
    flags.DEFINE_float("poll_s", 1.0, "Seconds between scans of the base path for new versions (0: never).")
    flags.DEFINE_integer("num_versions", 1, "How many of the newest versions to keep loaded.")
    flags.DEFINE_float("settle_s", SETTLE_S, "Seconds a version folder must stay unchanged before it "
                       "is loaded (a folder still being copied is not served).", lower_bound=0)
    flags.DEFINE_integer("parent_fd", None, "An inherited pipe's read end: stop when it is closed, i.e. "
                         "when the process holding its write end exits (set by `spawn`).", lower_bound=0)
    flags.DEFINE_string("orphan_cleanup_dir", None, "With --parent_fd: a folder to remove when the "
                        "server stops because that process is gone (spawn's temp folder).")
    cli.define_flags(ServerLimits)
    flags.mark_flag_as_required("model_base_path")
    app.run(_main)


if __name__ == "__main__":
    main()
