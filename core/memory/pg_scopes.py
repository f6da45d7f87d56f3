"""What recall reads of one scope of the PostgreSQL memory index, kept in memory between recalls.

Recall scores every memory of a customer (``core.memory.ranking``), so it needs all of their vectors,
ids and times. Read from PostgreSQL that is every row of the scope, 1.5 KB of vector each: about 70 ms at
10,000 memories on the 2-core machine, growing with the customer. :class:`PgScopeCache` keeps, per scope
of a large customer, the same :class:`~core.memory.scope_rows.ScopeRows` the SQLite index keeps
(``core.memory.sqlite_scopes``): the rows in the order written, their vectors in one contiguous float32
matrix, their rids sorted for lookups.

Kept exact, never stale, with any number of processes and hosts writing: a recall of a kept scope first
reads the scope's rids (one index scan, about 2.5 ms at 10,000 rows) and compares them with the rids kept.
The index gives every written row a new rid (an insert, and a replacement too: ``rid = DEFAULT`` in
``core.memory.pg_rows``), a deleted row's rid is gone, and a row moved to another customer leaves this
scope's rids and arrives in the other's; so the rids that are new are read (and only those), the ones
that are gone are dropped (``ScopeRows.changed``: their vectors' slots are left behind, no copy of the
matrix), and a scope nobody changed costs the rid scan alone. Each statement sees the rows committed when
it starts, as a fresh read does.

Only scopes of at least :data:`MIN_ROWS` rows are kept (a small one reads in about a millisecond, in one
query as before), at most :data:`MAX_ROWS` rows in all, least recently used first out, and none longer
than :data:`IDLE_SECONDS` after its last recall: what is kept are vectors and times, no text, but a
customer forgotten on another host should not stay in this one's memory. A forget in this process drops
the scope at once (:meth:`PgScopeCache.drop`). Calls come from Mem0's threads: one lock guards the map,
and recalls of one scope take turns (a lock per stripe of scopes), so the kept rows change one call at a
time; the arrays and lists handed out are never changed afterwards.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from core.memory.pg_vectors import VectorCodec
from core.memory.scope_rows import Row, ScopeRows
from core.memory.sqlite_scopes import MAX_ROWS, MIN_ROWS

IDLE_SECONDS = 600.0  # a scope not recalled for this long is dropped
_STRIPES = 16  # locks for the scopes' turns: recalls of different scopes rarely wait for each other

Key = tuple[str, tuple[tuple[str, str], ...]]
Where = tuple[sql.Composed, dict[str, Any]]  # a scope's WHERE clause and its named parameters

# A row's time for ranking, as the SQLite index reads it: when the memory was said, else when written.
_SAID_OR_WRITTEN = sql.SQL(
    "COALESCE(CASE WHEN jsonb_typeof(payload -> 'said_at') = 'string' THEN payload ->> 'said_at' END,"
    " created_at)"
)
# A row's source channel for ``ranking.source_code``, as the SQLite index reads it
# (``json_extract(payload, '$.source_channel')``): the text of a JSON string; NULL for anything else (a
# number, a boolean, null or no key, all of which code as unknown on SQLite too).
_SOURCE_CHANNEL = sql.SQL(
    "CASE WHEN jsonb_typeof(payload -> 'source_channel') = 'string' THEN payload ->> 'source_channel' END"
)
# Whether a row's text says when (``time_words.MENTIONS_TIME``), as SQLite reads it (true only for JSON true).
_SAYS_WHEN = sql.SQL("COALESCE(payload -> 'mentions_time' = 'true'::jsonb, false)")


def scope_columns(vectors: VectorCodec) -> sql.Composed:
    """What a scope read selects, as :data:`~core.memory.scope_rows.Row` (``as_rows`` makes the vector
    bytes): rid, id, time (said, else written), vector, source channel, whether its text says when."""
    return sql.SQL("rid, id, {}, {}, {}, {}").format(
        _SAID_OR_WRITTEN, vectors.read, _SOURCE_CHANNEL, _SAYS_WHEN
    )


def as_rows(rows: Sequence[Sequence[Any]], vectors: VectorCodec) -> list[Row]:
    """Selected rows with their vector as float32 bytes (as the bytea column holds it already)."""
    if vectors.kind == "bytea":
        return list(rows)
    return [(r[0], r[1], r[2], np.asarray(r[3], dtype="<f4").tobytes(), *r[4:]) for r in rows]


def scope_rids(conn: psycopg.Connection[Any], where: Where) -> NDArray[np.int64]:
    """The rids of the scope's rows now."""
    statement = sql.SQL("SELECT rid FROM memory_index_rows WHERE {}").format(where[0])
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(statement, where[1]).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def read_scope(
    conn: psycopg.Connection[Any], columns: sql.Composable, where: Where, rids: Sequence[int] | None
) -> list[Any]:
    """``columns`` of the scope's rows (those of ``rids`` only, when given); binary: vectors as bytes."""
    only = sql.SQL(" AND rid = ANY(%(rids)s::bigint[])") if rids is not None else sql.SQL("")
    statement = sql.SQL("SELECT {} FROM memory_index_rows WHERE {}{}").format(columns, where[0], only)
    params = where[1] if rids is None else {**where[1], "rids": list(rids)}
    with conn.cursor(binary=True) as cursor:
        return cursor.execute(statement, params).fetchall()


def scope_key(collection: str, scope: Mapping[str, str]) -> Key:
    return (collection, tuple(sorted(scope.items())))


@dataclass(slots=True)
class _Kept:
    rows: ScopeRows
    used_at: float


class PgScopeCache:
    """:class:`ScopeRows` of the large scopes of one PostgreSQL memory index (see the module)."""

    def __init__(
        self,
        *,
        min_rows: int = MIN_ROWS,
        max_rows: int = MAX_ROWS,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_rows = min_rows
        self._max_rows = max_rows
        self._idle = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        self._kept: OrderedDict[Key, _Kept] = OrderedDict()
        self._total = 0  # rows kept

    def __repr__(self) -> str:
        return f"PgScopeCache(scopes={len(self._kept)}, rows={self._total})"

    def rows(
        self,
        key: Key,
        *,
        rids: Callable[[], NDArray[np.int64]],
        read: Callable[[Sequence[int] | None], Sequence[Row]],
        dims: int,
    ) -> ScopeRows:
        """The rows of the scope ``key``: ``rids()`` reads the scope's rids now, ``read(None)`` every row
        of the scope and ``read(rids)`` those of ``rids`` still in it (as :data:`Row`)."""
        with self._stripes[zlib.crc32(repr(key).encode()) % _STRIPES]:
            with self._lock:
                self._expire()
                kept = self._kept.get(key)
            if kept is None:
                fresh = read(None)
                rows = ScopeRows.read(fresh, dims) if fresh else ScopeRows.empty(dims)
                if self._min_rows <= len(rows) <= self._max_rows:
                    with self._lock:
                        self._put(key, rows)
                return rows
            now = rids()
            gone = np.setdiff1d(kept.rows.rids, now, assume_unique=True)
            new = np.setdiff1d(now, kept.rows.rids, assume_unique=True)
            rows = kept.rows.changed(gone, read(new.tolist()) if len(new) else ())
            with self._lock:
                if len(rows) < self._min_rows:
                    self._pop(key)
                else:
                    self._put(key, rows)
            return rows

    def drop(self, collection: str, scope: Mapping[str, str]) -> None:
        """Forget every kept scope within ``scope`` (a forget or retention of it in this process)."""
        within = set(scope.items())
        with self._lock:
            for key in [k for k in self._kept if k[0] == collection and within <= set(k[1])]:
                self._pop(key)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._total = 0

    # ----- the map, under ``_lock`` ---------------------------------------------------------------

    def _put(self, key: Key, rows: ScopeRows) -> None:
        self._pop(key)
        self._kept[key] = _Kept(rows, self._clock())
        self._total += len(rows)
        while self._total > self._max_rows and len(self._kept) > 1:
            oldest = next(iter(self._kept))
            if oldest == key:
                break
            self._pop(oldest)

    def _pop(self, key: Key) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._total -= len(kept.rows)

    def _expire(self) -> None:
        cutoff = self._clock() - self._idle
        while self._kept:
            oldest = next(iter(self._kept))
            if self._kept[oldest].used_at >= cutoff:
                break
            self._pop(oldest)
