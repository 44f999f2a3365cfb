"""Command line of the development gRPC server (the package docstring says what it serves and
lists the pieces; `launch.spawn` runs it in a subprocess).

    python -m keras_crf_reid.serving.server --model_base_path=saved_models/crf_reid --port=8500
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import sys
import threading

from keras_crf_reid import cli
from keras_crf_reid.atomic import write_atomic
from keras_crf_reid.configs.server import ServerConfig
from keras_crf_reid.serving.server.service import serve

cli.define_flags(ServerConfig)


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


def main(argv: list[str]) -> int:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    done = threading.Event()
    try:
        cfg = cli.from_flags(ServerConfig, flags.FLAGS)
        server, port = serve(cfg.model_base_path, cfg.port, cfg.host, cfg.model_name, cfg.poll_s,
                             cfg.num_versions, cfg.limits, cfg.settle_s)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_USAGE
    orphaned = (_watch_parent(cfg.parent_fd, done) if cfg.parent_fd is not None
                else threading.Event())
    name = cfg.model_name or os.path.basename(os.path.abspath(cfg.model_base_path))
    print(f"serving {name} on {cfg.host}:{port}", flush=True)
    if cfg.port_file:
        write_atomic(cfg.port_file, str(port))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(2).wait()
    if cfg.orphan_cleanup_dir and (orphaned.is_set() or _parent_gone(cfg.parent_fd)):
        shutil.rmtree(cfg.orphan_cleanup_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
