"""Atomic file writes: readers see the old file or the complete new one, never a partial one.

Every writer in the package (reports, splits, caches, plots, exports' side files) goes through
`atomic_path`, which hands out a unique temporary name in the target's folder and renames it over
the target only when the block finished without an exception.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside `path`; os.replace()s it onto `path` if the block succeeds.

    `suffix` keeps an extension that a writer insists on (np.save adds ".npy" otherwise).
    The temporary file is removed when the block raises (also on KeyboardInterrupt).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_atomic(path: str, data: str | bytes) -> str:
    """Writes text or bytes to `path` atomically (fsynced before the rename); returns path."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb" if isinstance(data, bytes) else "x",
                  **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists: a temporary file named after a dead writer is abandoned."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
