"""Limits that every process on one database shares: rates (flood control, pacing) and caps.

In scale mode many ``threadline serve`` processes share one PostgreSQL database. A limit that lives in one
process's memory lets each process through once, so N processes let N times through. Here the state is a
row per key, and every decision is atomic on that row:

- **rates** (``rate_buckets``): a GCRA per key. The row keeps the theoretical arrival time (``tat``) of
  the key's next message; ``pace`` always takes the next slot and answers how long to wait for it
  (Slack's channel pacing, Telegram's send rate), ``take_many`` grants what conforms and refuses the rest
  (the inbox's flood control, run inside the inbox's own transaction: no extra transaction per webhook).
- **caps** (``limit_windows``): at most ``limit`` uses per key in any ``window`` seconds, kept as the
  expiry stamps of the uses still counted (the email reply cap); ``limit=1`` is a single-use mark (the
  email webhook's tokens, the Slack attestation).

On PostgreSQL each decision starts with an ``INSERT … ON CONFLICT DO UPDATE`` on the key's row, which
locks it until the transaction ends, so two processes on one key take turns; ``… RETURNING`` reads the
outcome in the same round trip (a rate or a single-use mark is that one statement; a cap of more than
one use then writes its stamps back). The clock is the database's (``statement_timestamp()``;
``julianday('now')`` on SQLite): hosts whose clocks differ still agree. Keys are stored as their SHA-256
(a key may name an address; the tables hold none). A row that has run out (a ``tat`` or every stamp in
the past) says nothing a missing row would not, so pruning (bounded, at most once a minute per process)
changes no decision.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    Integer,
    bindparam,
    cast,
    delete,
    extract,
    func,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Double

from core.store.db import Database
from core.store.models import LimitWindow, RateBucket

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0  # seconds between two prunes by one process
PRUNE_BATCH = 1000  # rows per table and prune: a prune never holds the store for long
_EPSILON = 1e-9  # a burst of 5 is 5 when floating point makes (burst - 1) * T / T 3.9999999

_BUCKETS = RateBucket.__table__
_WINDOWS = LimitWindow.__table__

Clock = Callable[[], float]


def key_hash(key: str) -> str:
    """What a key is stored as: its SHA-256 in hex (keys may name addresses; the tables hold none)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class _Sql:
    """The few expressions that differ between PostgreSQL and SQLite. ``at`` (epoch seconds) stands in
    for the database's clock when a test injects one."""

    def __init__(self, dialect: str, at: float | None = None) -> None:
        self.postgres = dialect == "postgresql"
        self._at = at

    def insert(self, table: Any) -> Any:
        return (postgresql if self.postgres else sqlite).insert(table)

    def now(self) -> ColumnElement[float]:
        """Epoch seconds by the database's clock (or the injected one, written into the SQL)."""
        if self._at is not None:
            return cast(literal_column(repr(float(self._at))), Double())
        if self.postgres:
            return cast(extract("epoch", func.statement_timestamp()), Double())
        # written out, without bound parameters: the flood check's VALUES may hold only per-row ones
        return type_coerce(literal_column("((julianday('now') - 2440587.5) * 86400.0)"), Double())

    def greatest(self, a: Any, b: Any) -> ColumnElement[float]:
        return func.greatest(a, b) if self.postgres else func.max(a, b)

    def least(self, a: Any, b: Any) -> ColumnElement[float]:
        return func.least(a, b) if self.postgres else func.min(a, b)

    def whole(self, x: Any) -> ColumnElement[int]:
        """``floor(max(x, 0))`` as an integer (SQLite may lack ``floor``; its CAST truncates)."""
        if self.postgres:
            return cast(func.floor(func.greatest(x, 0.0)), Integer)
        return cast(func.max(x, 0.0), Integer)

    def json_array(self, x: Any) -> Any:
        return func.json_build_array(x) if self.postgres else func.json_array(x)


# The statements are built once per dialect and rate (``at`` is None but in tests), so SQLAlchemy compiles
# each once: the flood check runs in every inbox commit, on the acknowledgement's path.


@functools.lru_cache(maxsize=64)
def _take_statement(dialect: str, at: float | None, interval: float, burst: int) -> Any:
    """GCRA for many keys at once, see ``take_many``. Executed for many rows (``key``; ``first``, what a
    key without a row gets, and ``ahead``, ``first * interval``), one multi-row INSERT: the per-row
    parameters come one after another in the VALUES clause, as SQLAlchemy's insertmanyvalues needs."""
    sql = _Sql(dialect, at)
    now = sql.now()
    stmt = sql.insert(_BUCKETS).values(
        key=bindparam("key"),
        tat=now + bindparam("ahead", type_=Double()),
        granted=bindparam("first", type_=Integer),
    )
    base = sql.greatest(_BUCKETS.c.tat, now)
    room = sql.whole((now + (burst - 1) * interval - base) / interval + (1 + _EPSILON))
    granted = sql.least(room, stmt.excluded.granted)
    return stmt.on_conflict_do_update(
        index_elements=[_BUCKETS.c.key],
        set_={"tat": base + granted * interval, "granted": cast(granted, Integer)},
    ).returning(_BUCKETS.c.key, _BUCKETS.c.granted)


@functools.lru_cache(maxsize=64)
def _pace_statement(dialect: str, at: float | None, interval: float, burst: int) -> Any:
    """Take ``key``'s next slot; returns the wait for it (RETURNING sees the new ``tat``: the slot taken
    is ``tat - interval``)."""
    sql = _Sql(dialect, at)
    now = sql.now()
    stmt = sql.insert(_BUCKETS).values(key=bindparam("key"), tat=now + interval, granted=1)
    return stmt.on_conflict_do_update(
        index_elements=[_BUCKETS.c.key],
        set_={"tat": sql.greatest(_BUCKETS.c.tat, now) + interval, "granted": 1},
    ).returning(sql.greatest(_BUCKETS.c.tat - interval - (burst - 1) * interval - now, 0.0))


@functools.lru_cache(maxsize=64)
def _mark_statement(dialect: str, at: float | None, window: float) -> Any:
    """A single-use mark on ``key``: written (its expiry returned) unless a live one is there."""
    sql = _Sql(dialect, at)
    now = sql.now()
    expiry = now + window
    stmt = sql.insert(_WINDOWS).values(key=bindparam("key"), stamps=sql.json_array(expiry), expires_at=expiry)
    return stmt.on_conflict_do_update(
        index_elements=[_WINDOWS.c.key],
        set_={"stamps": stmt.excluded.stamps, "expires_at": stmt.excluded.expires_at},
        where=_WINDOWS.c.expires_at <= now,
    ).returning(_WINDOWS.c.expires_at)


@functools.lru_cache(maxsize=64)
def _lock_statement(dialect: str, at: float | None) -> Any:
    """Lock ``key``'s window row (creating it); returns its stamps and the time now."""
    sql = _Sql(dialect, at)
    stmt = sql.insert(_WINDOWS).values(key=bindparam("key"), stamps=[], expires_at=0.0)
    return stmt.on_conflict_do_update(
        index_elements=[_WINDOWS.c.key], set_={"expires_at": _WINDOWS.c.expires_at}
    ).returning(_WINDOWS.c.stamps, sql.now())


def _at(clock: Clock | None) -> float | None:
    return clock() if clock is not None else None


async def take_many(
    session: AsyncSession,
    dialect: str,
    wanted: Mapping[str, int],
    *,
    interval: float,
    burst: int,
    clock: Clock | None = None,
) -> dict[str, int]:
    """Grant each key up to ``wanted[key]`` messages of a rate of one per ``interval`` seconds after a
    burst of ``burst``; returns how many each key got (what conforms, in one statement for all keys).

    Runs in the caller's transaction: the keys' rows stay locked until it ends, so the caller may commit
    what it decided (the inbox rows) together with the buckets. Keys are locked in one fixed order, so
    two processes never wait for each other in a circle.
    """
    if not wanted:
        return {}
    hashed = {key_hash(key): key for key in wanted}
    rows = []
    for digest in sorted(hashed):
        first = min(wanted[hashed[digest]], burst)
        rows.append({"key": digest, "ahead": first * interval, "first": first})
    stmt = _take_statement(dialect, _at(clock), interval, burst)
    result = await session.execute(stmt, rows)
    return {hashed[str(digest)]: int(count) for digest, count in result}


async def prune(db: Database, *, clock: Clock | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete up to ``batch`` run-out rows of each table (rows another transaction holds are skipped)."""
    sql = _Sql(db.dialect, _at(clock))
    deleted = 0
    async with db.session() as session:
        for model, key, column in (
            (RateBucket, RateBucket.key, RateBucket.tat),
            (LimitWindow, LimitWindow.key, LimitWindow.expires_at),
        ):
            doomed = select(key).where(column < sql.now()).limit(batch)
            if sql.postgres:
                doomed = doomed.with_for_update(skip_locked=True)
            result: Any = await session.execute(delete(model).where(key.in_(doomed)))
            deleted += int(result.rowcount or 0)
    if deleted:
        log.debug("shared limits: pruned %d run-out rows", deleted)
    return deleted


class Pruner:
    """Says when this process's next prune is due (at most one per ``every`` seconds)."""

    def __init__(self, every: float = PRUNE_EVERY) -> None:
        self._every = every
        self._next = time.monotonic() + every

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._every
        return True

    async def prune_if_due(self, db: Database, *, clock: Clock | None = None) -> None:
        """Prune when due; a failure is logged, never raised (the next round tries again)."""
        if not self.due():
            return
        try:
            await prune(db, clock=clock)
        except Exception as exc:
            log.warning("shared limits: pruning failed (%s)", type(exc).__name__)


class DatabaseLimits:
    """``core.ports.SharedLimits`` over the store: shared by every process on the database.

    ``clock`` (epoch seconds) replaces the database's clock in tests.
    """

    def __init__(self, db: Database, *, clock: Clock | None = None, prune_every: float = PRUNE_EVERY) -> None:
        self._db = db
        self._clock = clock
        self._pruner = Pruner(prune_every)

    def __repr__(self) -> str:
        return f"DatabaseLimits(dialect={self._db.dialect!r})"

    async def pace(self, key: str, *, interval: float, burst: int) -> float:
        if interval <= 0:
            return 0.0
        stmt = _pace_statement(self._db.dialect, _at(self._clock), interval, burst)
        async with self._db.session() as session:
            wait = float(await session.scalar(stmt, {"key": key_hash(key)}) or 0.0)
        await self._pruner.prune_if_due(self._db, clock=self._clock)
        return wait

    async def reserve(self, key: str, *, limit: int, window: float) -> float | None:
        if limit < 1:
            return None
        digest, at = key_hash(key), _at(self._clock)
        async with self._db.session() as session:
            if limit == 1:  # a single-use mark: one statement
                mark = await session.scalar(_mark_statement(self._db.dialect, at, window), {"key": digest})
                ticket = float(mark) if mark is not None else None
            else:
                ticket = await self._reserve_many(session, digest, at, limit, window)
        await self._pruner.prune_if_due(self._db, clock=self._clock)
        return ticket

    async def _reserve_many(
        self, session: AsyncSession, digest: str, at: float | None, limit: int, window: float
    ) -> float | None:
        """Lock the key's row (creating it), count its live stamps, add one if there is room."""
        locked = await session.execute(_lock_statement(self._db.dialect, at), {"key": digest})
        stamps, now = locked.one()
        live = [float(s) for s in _stamps(stamps) if float(s) > float(now)]
        if len(live) >= limit:
            return None
        ticket = float(now) + window
        live.append(ticket)
        await session.execute(
            update(LimitWindow).where(LimitWindow.key == digest).values(stamps=live, expires_at=max(live))
        )
        return ticket

    async def release(self, key: str, ticket: float) -> None:
        digest = key_hash(key)
        async with self._db.session() as session:
            stamps = await session.scalar(
                select(_WINDOWS.c.stamps).where(_WINDOWS.c.key == digest).with_for_update()
            )
            if stamps is None:
                return
            left = [float(s) for s in _stamps(stamps)]
            # a stamp written through SQLite's json_array keeps 15 digits: match within a millisecond
            match = next((s for s in left if abs(s - ticket) < 1e-3), None)
            if match is None:
                return
            left.remove(match)
            await session.execute(
                update(LimitWindow)
                .where(LimitWindow.key == digest)
                .values(stamps=left, expires_at=max(left, default=0.0))
            )


def _stamps(value: Any) -> list[Any]:
    """The stamps column as a list (SQLite hands back ``json_array``'s text when no type processed it)."""
    if isinstance(value, str):
        value = json.loads(value)
    return list(value) if isinstance(value, list) else []
