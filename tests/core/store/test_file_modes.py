"""Customer data on disk is the owner's alone, whatever the umask.

After a hub start and a conversation (so Mem0's files exist too), every folder under the data dir is
0700 and every file 0600: our database with its ``-wal`` and ``-shm``, Mem0's history database and our
vector store with theirs, Mem0's ``config.json``. A data dir left 0755 with files 0644 (by an older
version) is tightened at start, and the start says so in the log. ``threadline export --out FILE``
writes a 0600 file, also over an existing file that was 0644. The modes are the same under any umask.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.cli import app
from core.messages import Address, Assurance, InboundMessage
from core.pipeline.hub import Hub
from core.store.private_files import private_dir, private_sqlite, write_private
from tests.core.cli.test_cli_identity import SMS, seed_conversation
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender

# what a conversation leaves in the data dir while the hub runs (among others)
EXPECTED = {
    "threadline.db",
    "threadline.db-wal",
    "threadline.db-shm",
    "mem0",
    "mem0/history.db",
    "mem0/vectors.sqlite3",
    "mem0/vectors.sqlite3-wal",
}


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default (022): what a file gets when nobody asks for a mode is then 0644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def modes(root: Path) -> dict[str, int]:
    """Every path under ``root`` (relative, ``.`` for itself) and its permission bits."""
    return {
        ("." if path == root else path.relative_to(root).as_posix()): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


def loose(found: dict[str, int], root: Path) -> dict[str, str]:
    """The paths whose mode is not 0700 (folders) or 0600 (files)."""
    return {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (root / name).is_dir() else 0o600)
    }


async def converse(hub: Hub, n: int = 1) -> None:
    await hub.accept(
        InboundMessage(
            channel="sms",
            provider_message_id=f"SM-modes-{n}",  # new each time: memory is written
            sender=Address(channel="sms", handle="+15551230000"),
            text="my router keeps dropping the wifi",
            reply_target={"to": "+15551230000"},
            sender_assurance=Assurance.PLATFORM_ATTESTED,
            private=True,
        )
    )
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def test_a_hub_makes_its_data_dir_0700_and_every_file_in_it_0600(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_hub(settings, RecordingSender("sms")) as hub:
        await converse(hub)
        found = modes(settings.data_dir)  # while open: the -wal and -shm files exist
    assert set(found) >= EXPECTED, sorted(found)
    assert loose(found, settings.data_dir) == {}


async def test_a_looser_data_dir_from_before_is_tightened_at_start_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    async with running_hub(settings, RecordingSender("sms")) as hub:
        await converse(hub)
    data = settings.data_dir
    for path in [data, *data.rglob("*")]:  # as an older version left it
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert set(loose(modes(data), data)) >= {".", "threadline.db", "mem0", "mem0/history.db"}

    caplog.set_level(logging.INFO)
    async with running_hub(settings, RecordingSender("sms")) as hub:
        await converse(hub, 2)
        found = modes(data)
    assert loose(found, data) == {}
    tightened = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    assert any(str(data) in line and "0755" in line for line in tightened), tightened


def test_export_out_writes_a_file_only_its_owner_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_conversation(tmp_path)
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    fresh = tmp_path / "fresh.json"
    existing = tmp_path / "existing.json"
    existing.write_text("old\n")
    existing.chmod(0o644)
    for out in (fresh, existing):
        result = runner.invoke(app, ["export", SMS, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o600, out
        assert '"format": "threadline-export/1"' in out.read_text()


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_the_modes_do_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    os.umask(umask)  # the fixture puts the usual one back
    folder = tmp_path / "data"  # its parent exists: a parent made under umask 277 would be read-only
    private_dir(folder)
    private_sqlite(folder / "store.db")
    write_private(folder / "export.json", "{}\n")
    found = modes(folder)
    assert found == {".": 0o700, "store.db": 0o600, "export.json": 0o600}, {
        k: oct(v) for k, v in found.items()
    }
