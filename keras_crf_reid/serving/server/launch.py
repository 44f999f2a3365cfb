"""The development server's command line (`main`, which `python -m keras_crf_reid.serving.server`
runs) and `spawn` (the server in a subprocess); the package docstring describes the server.

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
from __future__ import annotations

import logging
import os
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
from keras_crf_reid.serving.server.limits import ServerLimits
from keras_crf_reid.serving.server.service import serve
from keras_crf_reid.serving.server.versions import SETTLE_S


class ServerProcess(subprocess.Popen):
    """A spawned server; its temp folder (port file, default log) is removed once it has exited
    and been waited for (`wait`, `poll`, `with`), or when this object goes away."""

    workdir: str | None = None

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


def spawn(model_base_path: str, *args: str, timeout_s: float = 120.0,
          log_path: str | None = None) -> tuple[ServerProcess, int]:
    """Runs this server in a subprocess on a free 127.0.0.1 port; returns (process, port).

    For tools that measure the server apart from their own clients (CPU, GIL, memory). The
    server's output goes to log_path (default: a file in the process's temp folder, which is
    removed when it exits), quoted if it fails to start.
    """
    workdir = tempfile.mkdtemp(prefix="reid-server-")
    port_file = os.path.join(workdir, "port")
    log_path = log_path or os.path.join(workdir, "server.log")
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.server", f"--model_base_path={model_base_path}",
           "--host=127.0.0.1", "--port=0", f"--port_file={port_file}", *args]
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    try:
        with open(log_path, "ab") as out:
            proc = ServerProcess(cmd, env={**os.environ, "PYTHONPATH": path}, stdout=out,
                                 stderr=subprocess.STDOUT)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    proc.workdir = workdir
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


def _main(argv) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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
    flags.DEFINE_float("settle_s", SETTLE_S, "Seconds a version folder must stay unchanged before it "
                       "is loaded (a folder still being copied is not served).", lower_bound=0)
    cli.define_flags(ServerLimits)
    flags.mark_flag_as_required("model_base_path")
    app.run(_main)

