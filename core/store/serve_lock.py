"""One ``threadline serve`` per SQLite data dir.

Two servers on one SQLite file would both run the worker and the delivery lanes over the same rows, and
their writers would queue on the file lock instead of on one process's lock (``core.store.db``).
``ServeLock`` takes an exclusive, non-blocking ``flock`` on ``serve.lock`` in the data dir for as long as
the server runs and writes its process id there; a second ``serve`` gets ``AlreadyServing`` naming the
holder. The kernel releases the lock when the holder exits, however it exits (``kill -9`` included), so a
stale file never blocks a start. PostgreSQL needs no such lock: many processes may share it.

The other commands (``chat``, ``memory``, ``customers``, ...) take no lock: they may run beside a server.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from core.errors import AlreadyServing
from core.store.private_files import FILE_MODE, private_dir

LOCK_FILE = "serve.lock"


class ServeLock:
    """The serving lock of ``data_dir`` (a context manager; ``acquire`` raises ``AlreadyServing``)."""

    __slots__ = ("_fd", "path")

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir.absolute() / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            holder = f" (pid {pid})" if pid is not None else ""
            raise AlreadyServing(
                f"another threadline process is serving data dir {self.path.parent}{holder}", pid=pid
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> ServeLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def _pid_in(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
