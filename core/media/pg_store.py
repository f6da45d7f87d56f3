"""``PostgresMediaStore``: the bytes of attachments in the PostgreSQL store, so every process sees them.

In scale mode (``THREADLINE_DATABASE_URL=postgresql+asyncpg://...``) a web process on one host keeps an
email's parts at accept time, a worker on another host takes them in, a third serves the signed ``/media``
link Twilio fetches or an operator's download, and forget or retention on any of them removes the bytes.
Files under each host's own data dir (``core.media.store``) would be seen by one host only; rows of the
database every process already shares are seen by all. ``media_store`` picks this store when the database
is PostgreSQL and the files otherwise.

One row per file, ``media_objects(sha256 primary key, size, data bytea, created_at)`` (migration 0011),
not PostgreSQL's large objects, although the issue names them. Measured on the local PostgreSQL 16
through SQLAlchemy on asyncpg (random bytes, median of 5; ``lo_from_bytea``/``lo_get`` with a
``(sha256, oid)`` table against one ``bytea`` column):

    size      put lo / bytea     get lo / bytea
    100 KiB   2.3 / 1.7 ms       0.8 / 0.7 ms
    1 MiB     9.6 / 5.8 ms       3.3 / 2.8 ms
    10 MiB    98  / 59 ms        25  / 23 ms
    on disk for the 55.5 MiB written: pg_largeobject 78 MB, the bytea table 60 MB

What large objects offer, reading and writing a file in pieces, buys nothing here: a file is at most
``THREADLINE_ATTACHMENTS__MAX_BYTES`` (10 MiB by default), checked and sniffed whole in memory before it is
kept, and sent whole. What they cost: slower writes, a third more disk (2 KiB pages in
``pg_largeobject``), an object that outlives its row unless every path that deletes the row also calls
``lo_unlink`` (a leak of customer data that forget would not see), ownership by the role that made them
(processes connecting as another role cannot read them), and separate handling by ``pg_dump``. A
``bytea`` row goes with its ``DELETE`` and is backed up with the rest.

Writes are idempotent under concurrency: a file already kept is not sent to the database again, and two
processes keeping the same new file at once both ``INSERT ... ON CONFLICT DO NOTHING``: one row, no error
(the second waits on the first's uncommitted key, then does nothing). A deleted row's bytes are gone from
the table at once and from the data files when (auto)vacuum reuses the space, as for every row forget
deletes (large objects are no different). Nothing here logs or repr's the bytes: sizes and digests only.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from core.media.store import FileMediaStore, digest_of
from core.ports import MediaStore
from core.store.db import Database
from core.store.models import MediaObject, utcnow

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _checked(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError("not a sha256 digest")
    return sha256


class PostgresMediaStore:
    """Content-addressed bytes in the ``media_objects`` table: a ``core.ports.MediaStore``."""

    def __init__(self, db: Database) -> None:
        if db.dialect != "postgresql":
            raise ValueError("the PostgreSQL media store needs a PostgreSQL database")
        self._db = db

    def __repr__(self) -> str:
        return "PostgresMediaStore()"

    async def put(self, data: bytes) -> str:
        """Keep ``data`` (once, whatever the number of calls and processes) and return its sha256."""
        sha256 = digest_of(data)
        if await self.has(sha256):  # kept already: the bytes need not travel to the database again
            return sha256
        async with self._db.session() as session:
            await session.execute(
                insert(MediaObject)
                .values(sha256=sha256, size=len(data), data=data, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["sha256"])
            )
        return sha256

    async def get(self, sha256: str) -> bytes:
        """The bytes of ``sha256``; ``FileNotFoundError`` when they are not kept (forgotten, or never)."""
        async with self._db.read() as session:
            data = await session.scalar(
                select(MediaObject.data).where(MediaObject.sha256 == _checked(sha256))
            )
        if data is None:
            raise FileNotFoundError(f"no media object {sha256[:12]}…")
        return bytes(data)

    async def has(self, sha256: str) -> bool:
        if not _SHA256.fullmatch(sha256):
            return False
        async with self._db.read() as session:
            found = await session.scalar(select(MediaObject.size).where(MediaObject.sha256 == sha256))
        return found is not None

    async def delete(self, sha256: str) -> bool:
        """Remove the bytes of ``sha256``; False when they were not kept."""
        async with self._db.session() as session:
            gone = await session.scalar(
                delete(MediaObject)
                .where(MediaObject.sha256 == _checked(sha256))
                .returning(MediaObject.size)
                .execution_options(synchronize_session=False)
            )
        return gone is not None


def media_store(db: Database, data_dir: Path) -> MediaStore:
    """The media store of a process on ``db``: in PostgreSQL when the database is (every process sees the
    same bytes), files under ``<data_dir>/media`` otherwise (the embedded default)."""
    if db.dialect == "postgresql":
        return PostgresMediaStore(db)
    return FileMediaStore(data_dir / "media")
