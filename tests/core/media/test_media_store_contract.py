"""The ``core.ports.MediaStore`` contract, run against both implementations: the files under the data dir
(``core.media.store``, chosen on SQLite) and the rows of PostgreSQL (``core.media.pg_store``, chosen in
scale mode). Each store is the one ``media_store`` picks for the database, so the choice is tested too.

The same bytes put twice (or by two processes at once) are kept once and neither put fails; what was put
comes back byte for byte; a digest nobody kept is ``FileNotFoundError``; a delete removes the bytes and
says whether there were any; a name that is not a sha256 is refused and names nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.media.pg_store import PostgresMediaStore, media_store
from core.media.store import FileMediaStore, digest_of
from core.ports import MediaStore
from core.store.db import Database
from core.store.models import MediaObject

DATA = bytes(range(256)) * 40 + b"\x00\r\n\x00"  # every byte value, NUL bytes, line ends


@dataclass
class Kept:
    store: MediaStore
    db: Database
    media_dir: Path

    async def copies(self) -> int:
        """How many copies of anything the store holds (files on disk, or rows)."""
        if isinstance(self.store, FileMediaStore):
            return sum(1 for p in self.media_dir.rglob("*") if p.is_file()) if self.media_dir.exists() else 0
        async with self.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(MediaObject)) or 0)


@pytest.fixture
async def kept(database_url: str, tmp_path: Path) -> AsyncIterator[Kept]:
    db = await Database.open(database_url)
    try:
        yield Kept(media_store(db, tmp_path / "data"), db, tmp_path / "data" / "media")
    finally:
        await db.aclose()


async def test_the_store_follows_the_database(kept: Kept, database_url: str) -> None:
    if database_url.startswith("postgresql"):
        assert isinstance(kept.store, PostgresMediaStore)
    else:
        assert isinstance(kept.store, FileMediaStore)
        with pytest.raises(ValueError, match="PostgreSQL"):
            PostgresMediaStore(kept.db)  # never on SQLite: the embedded bytes are files
    assert isinstance(kept.store, MediaStore)  # the port (runtime-checkable)
    assert "root" in repr(kept.store) or repr(kept.store) == "PostgresMediaStore()"


async def test_the_same_bytes_put_twice_are_kept_once(kept: Kept) -> None:
    first = await kept.store.put(DATA)
    again = await kept.store.put(DATA)
    assert first == again == digest_of(DATA)
    assert await kept.copies() == 1
    assert await kept.store.get(first) == DATA
    assert await kept.store.has(first)
    other = os.urandom(1024 * 1024)  # a larger file, random: kept apart, back byte for byte
    assert await kept.store.put(other) == digest_of(other)
    assert await kept.store.get(digest_of(other)) == other
    assert await kept.copies() == 2


async def test_a_missing_file_is_not_found_and_a_delete_removes_the_bytes(kept: Kept) -> None:
    nobody = digest_of(b"a file nobody sent")
    with pytest.raises(FileNotFoundError):
        await kept.store.get(nobody)
    assert not await kept.store.has(nobody)
    assert await kept.store.delete(nobody) is False

    sha256 = await kept.store.put(DATA)
    stays = await kept.store.put(b"another customer's file")
    assert await kept.store.delete(sha256) is True
    with pytest.raises(FileNotFoundError):
        await kept.store.get(sha256)
    assert not await kept.store.has(sha256)
    assert await kept.store.delete(sha256) is False  # gone already: nothing to say but False
    assert await kept.copies() == 1 and await kept.store.get(stays) == b"another customer's file"
    assert await kept.store.put(DATA) == sha256 and await kept.store.get(sha256) == DATA  # kept anew


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "../" + "0" * 61,
        digest_of(DATA).upper(),
        digest_of(DATA)[:63],
        digest_of(DATA) + "\n",
        digest_of(DATA) + "0",
        " " + digest_of(DATA),
        "%2e%2e%2f" + "0" * 55,
        "",
    ],
    ids=["path", "path-64", "upper-case", "short", "newline", "long", "space", "encoded", "empty"],
)
async def test_a_name_that_is_not_a_sha256_is_refused_and_names_nothing(kept: Kept, name: str) -> None:
    sha256 = await kept.store.put(DATA)
    with pytest.raises(ValueError, match="not a sha256"):
        await kept.store.get(name)
    with pytest.raises(ValueError, match="not a sha256"):
        await kept.store.delete(name)
    assert not await kept.store.has(name)
    assert await kept.store.get(sha256) == DATA and await kept.copies() == 1  # nothing was touched


async def test_two_processes_keeping_the_same_new_file_at_once_keep_one_copy(
    kept: Kept, database_url: str, tmp_path: Path
) -> None:
    """Two stores, each on its own engine (two hosts on one PostgreSQL; two processes on one data dir),
    put the same new file eight times each, all at once: every put answers its digest, one copy is kept."""
    other_db = await Database.open(database_url)
    try:
        other = media_store(other_db, tmp_path / "data")
        data = os.urandom(256 * 1024)
        answers = await asyncio.gather(*(store.put(data) for _ in range(8) for store in (kept.store, other)))
        assert answers == [digest_of(data)] * 16
        assert await kept.copies() == 1
        assert await other.get(digest_of(data)) == data and await kept.store.get(digest_of(data)) == data
        assert await other.delete(digest_of(data)) is True  # one process deletes: gone for both
        assert not await kept.store.has(digest_of(data))
    finally:
        await other_db.aclose()
