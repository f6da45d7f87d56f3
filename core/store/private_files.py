"""Files and folders that hold customers' data are the owner's alone: folders 0700, files 0600.

The modes are set explicitly after creation (``chmod``), so they do not depend on the process's umask.
``private_dir`` also tightens a folder that exists with a looser mode (``tighten=True``, for folders that
are ours, such as the data dir) and logs that it did; ``private_file`` creates a file 0600 before
anything else opens it (SQLite gives its ``-wal`` and ``-shm`` files the database file's mode) and
tightens an existing one. ``write_private`` writes a file that is 0600 from its first byte.

An existing folder or file that we may not ``chmod`` (another user's) is left as it is, with a warning:
the hub still starts.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_dir(path: Path, *, tighten: bool = True) -> None:
    """Create ``path`` (and missing parents) with the leaf 0700; with ``tighten``, make an existing one 0700.

    Parents that had to be created get the default mode: they may be shared folders of the user's.
    """
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode goes through the umask
        return
    if not tighten:
        return
    before = _mode(path)
    if before != DIR_MODE:
        try:
            os.chmod(path, DIR_MODE)
        except PermissionError:
            log.warning("folder %s is mode %04o and not ours to change; left as it is", path, before)
            return
        log.warning("folder %s was mode %04o; tightened to %04o", path, before, DIR_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; make an existing one 0600."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)  # never truncates
    try:
        before = stat.S_IMODE(os.fstat(fd).st_mode)
        if before != FILE_MODE:
            try:
                os.fchmod(fd, FILE_MODE)
            except PermissionError:
                log.warning("file %s is mode %04o and not ours to change; left as it is", path, before)
                return
            if before & 0o077:
                log.warning("file %s was mode %04o; tightened to %04o", path, before, FILE_MODE)
    finally:
        os.close(fd)


def private_sqlite(path: Path) -> None:
    """A SQLite database file and its ``-wal``/``-shm``/``-journal`` files (those that exist) 0600."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            private_file(companion)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, created or truncated, readable by the owner alone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode through O_TRUNC; the umask aside
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1  # the file object owns it now
            out.write(text)
    finally:
        if fd != -1:
            os.close(fd)
