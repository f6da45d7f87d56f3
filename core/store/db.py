"""Engine, sessions and migrations for the store.

SQLite allows one writer at a time. Left to itself, a second writer polls the file lock with growing
sleeps (``busy_timeout``), so under load a webhook's insert could wait hundreds of milliseconds behind a
worker's commit. Within one process, ``Database.session()`` therefore queues SQLite transactions on an
``asyncio.Lock`` (first come, first served, no sleeping); ``read()`` is for read-only work and does not
queue. Across processes (the CLI beside a running hub) ``busy_timeout`` still applies. PostgreSQL needs
neither: its sessions run side by side.

A SQLite database file is created 0600 before SQLAlchemy opens it (an existing one is tightened to
0600), so its ``-wal`` and ``-shm`` files, which SQLite creates with the database's mode, are 0600 too;
a folder created for it is 0700 (``core.store.private_files``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.store.private_files import private_dir, private_sqlite

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"


DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a SQLite writer waits for another process's lock before failing


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten: forget means gone from disk
        cursor.close()

    return on_connect


def create_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys, its folder 0700 and file 0600."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            database = Path(parsed.database)
            private_dir(database.parent, tighten=False)  # not ours to tighten: it may be a shared folder
            private_sqlite(database)
        kwargs["connect_args"] = {"timeout": busy_timeout}
    else:
        kwargs["pool_pre_ping"] = True
    # hide_parameters: SQL errors must never print message text, phone numbers or emails
    engine = create_async_engine(url, hide_parameters=True, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout))
    return engine


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def _revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    before = _revision(connection)
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
    return before, _revision(connection)


# pg_advisory_xact_lock key for migrations ("threadln" in ASCII): any number of processes may start at once
MIGRATION_LOCK = 0x7468726561646C6E


async def migrate(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest migration; returns the revision before (None: an empty database)
    and after.

    On PostgreSQL the upgrade runs holding a transaction-level advisory lock: processes starting at once
    on a fresh database take turns, and all but the first find the schema at head (without it, one of
    them died creating ``alembic_version``). SQLite's write lock already serialises them."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        before, after = await conn.run_sync(_upgrade)
    log.debug("store migrated to head")
    return before, after


# Set while a task holds its database's write queue: a session opened inside another one does not queue
# again (it would wait for itself).
_holding: ContextVar[frozenset[int]] = ContextVar("threadline_db_holding", default=frozenset())


class Database:
    """The engine and a session factory; ``session()`` commits on success, rolls back on error."""

    def __init__(self, engine: AsyncEngine, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.engine = engine
        self._busy_timeout = busy_timeout
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._writers = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    async def open(
        cls, url: str, *, run_migrations: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> Database:
        engine = create_engine(url, busy_timeout=busy_timeout)
        if run_migrations:
            await migrate(engine)
        return cls(engine, busy_timeout=busy_timeout)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, its connection returned to the pool even when the task is being
        cancelled (Ctrl-C, a lane stopping): a cancelled return left SQLAlchemy's pool logging a traceback
        ("Exception during reset or similar ... CancelledError") and dropping the connection. The return
        runs to its end, then the cancellation goes on."""
        session = self.sessions()
        try:
            async with session.begin():
                yield session
        finally:
            await _closed(session)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A transaction that may write; on SQLite it waits for the process's earlier writers first."""
        key = id(self)
        held = _holding.get()
        if self._writers is None or key in held:
            async with self._transaction() as session:
                yield session
            return
        try:  # as SQLite's own busy timeout would: a writer that waits too long fails, never hangs
            async with asyncio.timeout(self._busy_timeout):
                await self._writers.acquire()
        except TimeoutError as exc:
            raise OperationalError("queued for the SQLite write lock", None, exc) from exc
        token = _holding.set(held | {key})
        try:
            async with self._transaction() as session:
                yield session
        finally:
            _holding.reset(token)
            self._writers.release()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A transaction for reading only: it never waits for writers (SQLite readers do not block)."""
        async with self._transaction() as session:
            yield session

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def aclose(self) -> None:
        await self.engine.dispose()


async def _closed(session: AsyncSession) -> None:
    """Close ``session`` (its connection back to the pool) to the end, shielded from the task's
    cancellation; a cancellation that came meanwhile is raised once it is closed."""
    closing = asyncio.ensure_future(session.close())
    cancelled: asyncio.CancelledError | None = None
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError as exc:
            if closing.cancelled():  # the loop itself is shutting down: nothing more to wait for
                raise
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    closing.result()
