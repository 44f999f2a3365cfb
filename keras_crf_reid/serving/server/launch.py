"""`spawn`: the development server (`python -m keras_crf_reid.serving.server`) in a subprocess,
for tools that measure it apart from their own clients, and tests of its command line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref


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
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
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
