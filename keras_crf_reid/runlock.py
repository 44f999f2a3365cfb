"""One process per run folder: a lock file naming its holder, so that a second training with the
same --name/--output_dir is refused with a clear message instead of clobbering checkpoints.

The lock is `<run folder>/run.lock`, created exclusively (O_EXCL) and holding "<pid> <host>".
A lock whose holder is gone (killed with kill -9, the machine rebooted) is stale: taken over by
the next run on the same host, under an flock of the run folder so that two processes finding
it stale at once cannot both take it (one would delete the lock the other just created). A lock
written on another host is never taken over (its pid cannot be checked from here); its message
says which host and pid to look at.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from typing import Iterator

from keras_crf_reid.atomic import pid_alive

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """The run folder is in use by another live process (the message names it)."""


def _holder(path: str) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None if it is unreadable or half-written."""
    try:
        with open(path) as f:
            pid, host = f.read().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def _takeover_guard(folder: str) -> Iterator[None]:
    """Serialises stale-lock checks and removals between processes: an exclusive flock on the
    folder itself (no extra file left in it), released by the kernel if its holder dies."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def acquire(folder: str) -> str:
    """Creates folder/run.lock for this process, taking over a stale one; returns its path.

    RunLockedError when a live process holds it.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(50):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            with _takeover_guard(folder):
                holder = _holder(path)
                writing = holder is None and _age(path) < 2.0   # being written by its creator
                if holder is not None:
                    pid, host = holder
                    if host != socket.gethostname() or pid_alive(pid):
                        raise RunLockedError(
                            f"{folder} is in use by process {pid} on {host} (lock file {path}); wait "
                            f"for that run to finish, or choose another --name or --output_dir") from None
                if not writing:
                    with contextlib.suppress(FileNotFoundError):   # stale: its holder is gone
                        os.remove(path)
            if writing:
                time.sleep(0.1)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        return path
    raise RunLockedError(f"{path}: cannot take the run lock (other processes keep taking it)")


def release(path: str) -> None:
    """Removes a lock this process holds (leaves another holder's lock alone)."""
    holder = _holder(path)
    if holder is not None and holder == (os.getpid(), socket.gethostname()):
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def run_lock(folder: str) -> Iterator[str]:
    """Holds folder's run lock for the duration of the block.

    Folders the lock had to create (the run folder and missing parents) are removed again on
    the way out while empty, so a run that fails before writing anything, or whose lock cannot
    be taken, leaves nothing behind.
    """
    created = []
    missing = os.path.abspath(folder)
    while not os.path.exists(missing):
        created.append(missing)
        missing = os.path.dirname(missing)
    try:
        path = acquire(folder)
        try:
            yield path
        finally:
            release(path)
    finally:
        for d in created:  # deepest first
            try:
                os.rmdir(d)
            except OSError:
                break
