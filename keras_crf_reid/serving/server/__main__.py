"""Development gRPC server speaking TensorFlow Serving's API, for tests, benchmarks and laptops.

Production serves the exported SavedModels with the real TensorFlow Serving
(`tensorflow_model_server` or the tensorflow/serving Docker image; see docs/serving.md). This
server implements the same protos and semantics for what the project uses, so
`serving.client.ReidClient` works unchanged against either:

  PredictionService.Predict, PredictionService.GetModelMetadata (signature_def),
  ModelService.GetModelStatus.

This module is its command line (`launch.spawn` runs it in a subprocess); the package docstring
lists the pieces.

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import threading

from keras_crf_reid import cli
from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.serving.server.limits import ServerLimits
from keras_crf_reid.serving.server.service import serve
from keras_crf_reid.serving.server.versions import SETTLE_S


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
