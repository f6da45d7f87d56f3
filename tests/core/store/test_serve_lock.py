"""One ``serve`` per SQLite data dir (``core.store.serve_lock``).

The two-process case is in ``tests/core/cli/test_cli.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import AlreadyServing
from core.store.serve_lock import LOCK_FILE, ServeLock


def test_a_held_data_dir_refuses_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServeLock(data):
        assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(AlreadyServing) as caught:
            ServeLock(data).acquire()  # another open file: flock refuses it as it would another process
        assert caught.value.pid == os.getpid()
        assert (
            str(caught.value) == f"another threadline process is serving data dir {data} (pid {os.getpid()})"
        )
    with ServeLock(data):  # released on exit: the next server starts
        pass


def test_a_lock_file_left_by_a_dead_server_does_not_block(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / LOCK_FILE).write_text("999999\n")  # written by a server that died: no flock is held
    with ServeLock(data):
        assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_the_data_dir_is_made_private_for_the_lock(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    with ServeLock(data):
        assert (data.stat().st_mode & 0o777, (data / LOCK_FILE).stat().st_mode & 0o777) == (0o700, 0o600)
