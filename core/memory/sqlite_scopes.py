"""What recall reads of one scope of the SQLite memory index, kept in memory between recalls.

Recall scores every memory of a customer (``core.memory.ranking``), so it needs all of their vectors,
ids and times. Read from the file, that is every row of the scope (about 2 KB each with the payload
beside the vector) and a datetime parsed per row: 30 ms and more at 10,000 memories, growing with the
customer. :class:`ScopeCache` keeps, per scope of a large customer,
:class:`~core.memory.scope_rows.ScopeRows`: the rows in the order written, their vectors in one
contiguous float32 matrix, and their rowids sorted for lookups, so a recall is one matrix-vector product
and a keyword query.

A conversation writes between recalls, and a change costs what changed, not the customer's size: a new
memory (the newest) is appended into room kept after the matrix; a deleted one (undo, supersession,
forget) leaves its row of the matrix behind, skipped through ``ScopeRows.slots``, until over a quarter is
left behind and the matrix is copied once without them. Before this, a delete and a write between two
recalls copied the whole matrix and rebuilt every per-row list: at 10,000 memories a recall after a write
took p95 33 ms against 24 ms steady (``bench/recall_latency.py``).

Kept exact, never stale:

- Writes of this connection (every writer of the file in this process shares it) are logged by TEMP
  triggers on ``memory_vectors`` (insert, update, delete: any code path, rolled back with its
  transaction) into the connection's own ``temp.memory_changed``. A scope read takes the log; a kept
  scope that saw any of those rowids drops them and reads them again, if they are still (or now) in the
  scope. A rowid can be reused after a delete (SQLite hands out ``max(rowid) + 1``): the reused one is in
  the log as deleted and inserted, so it is read afresh.
- Writes of other connections (another process: the CLI beside the server) change ``PRAGMA
  data_version``: everything kept is dropped.
- Inside an open transaction nothing is kept (what it wrote may yet be rolled back).

The rows come out exactly as a read from the file orders them (by written time, then rowid) and
``ScopeRows.matrix`` holds the same float32 values in the same order. The cosines equal a fresh read's
to float32 rounding, not bit for bit: the product runs over the slots (left-behind rows included), and BLAS
may sum a row in another order when the matrix has another shape.

Only scopes of at least :data:`MIN_ROWS` rows are kept (a small one reads in well under a millisecond),
and at most :data:`MAX_ROWS` rows in all, least recently used first out. Callers hold the connection's
lock; the arrays and lists handed out are never changed afterwards (a change makes new ones).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.memory.scope_rows import Row, ScopeRows

MIN_ROWS = 256  # smaller scopes are read from the file every time
MAX_ROWS = 50_000  # rows kept in all: about 80 MB at 384 dimensions
MAX_LOG = 20_000  # changed rowids waiting for kept scopes; past it everything is dropped instead
_FETCH_CHUNK = 500  # rowids per ``IN (...)`` (SQLite's bound-parameter limit)

TEMP_SCHEMA = (
    "CREATE TEMP TABLE IF NOT EXISTS memory_changed (rid INTEGER NOT NULL)",
    "CREATE TEMP TRIGGER IF NOT EXISTS memory_vectors_inserted AFTER INSERT ON memory_vectors"
    " BEGIN INSERT INTO memory_changed (rid) VALUES (new.rid); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS memory_vectors_updated AFTER UPDATE ON memory_vectors"
    " BEGIN INSERT INTO memory_changed (rid) VALUES (old.rid), (new.rid); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS memory_vectors_deleted AFTER DELETE ON memory_vectors"
    " BEGIN INSERT INTO memory_changed (rid) VALUES (old.rid); END",
)

Scope = Mapping[str, str]

# what a scope read selects: the memory's time is when it was said (``said_at``, a backfill's turn time),
# else when it was written; the source channel splits conversations in ranking (``WrittenTimes.sources``);
# whether its text says when (``time_words.MENTIONS_TIME``) is the time prior's side of the memory
SCOPE_COLUMNS = (
    "rid, id, COALESCE(CASE WHEN json_type(payload, '$.said_at') = 'text'"
    " THEN json_extract(payload, '$.said_at') END, created_at), vector,"
    " json_extract(payload, '$.source_channel'), json_extract(payload, '$.mentions_time') IS 1"
)


@dataclass(slots=True)
class _Kept:
    rows: ScopeRows
    synced: int  # the position in the change log up to which ``rows`` are current


class ScopeCache:
    """:class:`ScopeRows` of the large scopes of one connection's memory index (see the module).

    ``rows`` is called with the connection's lock held; ``db`` must be that connection, with
    :data:`TEMP_SCHEMA` made on it.
    """

    def __init__(self, *, min_rows: int = MIN_ROWS, max_rows: int = MAX_ROWS) -> None:
        self._min_rows = min_rows
        self._max_rows = max_rows
        self._kept: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], _Kept] = OrderedDict()
        self._total = 0  # rows kept
        self._log: list[int] = []  # changed rowids, oldest first
        self._log_start = 0  # the position of ``_log[0]``
        self._data_version: int | None = None
        self._changes = -1  # ``total_changes`` of the connection when the log was last taken

    def __repr__(self) -> str:
        return f"ScopeCache(scopes={len(self._kept)}, rows={self._total})"

    def clear(self) -> None:
        self._kept.clear()
        self._total = 0
        self._log_start += len(self._log)
        self._log = []

    def rows(
        self,
        db: sqlite3.Connection,
        collection: str,
        scope: Scope,
        where: str,
        params: Sequence[Any],
        dims: int,
    ) -> ScopeRows:
        """The rows of ``scope`` (``where`` / ``params``: its SQL, as the index writes it)."""
        if db.in_transaction:  # what this transaction wrote may yet be rolled back: keep nothing
            return self._read(db, where, params, dims)
        self._sync(db)
        key = (collection, tuple(sorted(scope.items())))
        kept = self._kept.get(key)
        end = self._log_start + len(self._log)
        if kept is None:
            rows = self._read(db, where, params, dims)
            if self._min_rows <= len(rows) <= self._max_rows:
                self._kept[key] = _Kept(rows, end)
                self._total += len(rows)
                self._evict(keep=key)
            return rows
        self._kept.move_to_end(key)
        if kept.synced < end:
            changed = np.unique(np.array(self._log[kept.synced - self._log_start :], dtype=np.int64))
            fresh = _fetch(db, where, params, changed)
            before = len(kept.rows)
            kept.rows = kept.rows.changed(changed, fresh)
            kept.synced = end
            self._total += len(kept.rows) - before
            self._trim_log()
            if len(kept.rows) < self._min_rows:
                self._forget(key)
            self._evict(keep=key)
        return kept.rows

    def _read(self, db: sqlite3.Connection, where: str, params: Sequence[Any], dims: int) -> ScopeRows:
        rows = db.execute(
            f"SELECT {SCOPE_COLUMNS} FROM memory_vectors WHERE {where}",  # noqa: S608
            list(params),
        ).fetchall()
        return ScopeRows.read(rows, dims) if rows else ScopeRows.empty(dims)

    def _sync(self, db: sqlite3.Connection) -> None:
        """Drop everything after another connection's commit; take this connection's change log."""
        (version,) = db.execute("PRAGMA data_version").fetchone()
        if version != self._data_version:
            self._data_version = int(version)
            self.clear()
        if db.total_changes == self._changes:
            return
        changed = [int(r[0]) for r in db.execute("SELECT rid FROM temp.memory_changed").fetchall()]
        if changed:
            db.execute("DELETE FROM temp.memory_changed")
            if self._kept:
                self._log.extend(changed)
            else:
                self._log_start += len(self._log) + len(changed)
                self._log = []
        self._changes = db.total_changes
        if len(self._log) > MAX_LOG:
            self.clear()

    def _trim_log(self) -> None:
        oldest = min((kept.synced for kept in self._kept.values()), default=self._log_start + len(self._log))
        if oldest > self._log_start:
            del self._log[: oldest - self._log_start]
            self._log_start = oldest

    def _forget(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._total -= len(kept.rows)

    def _evict(self, *, keep: tuple[str, tuple[tuple[str, str], ...]]) -> None:
        while self._total > self._max_rows and len(self._kept) > 1:
            oldest = next(iter(self._kept))
            if oldest == keep:
                break
            self._forget(oldest)
        self._trim_log()


def _fetch(db: sqlite3.Connection, where: str, params: Sequence[Any], rids: NDArray[np.int64]) -> list[Row]:
    """The rows among ``rids`` that are in the scope now."""
    found: list[Row] = []
    wanted = rids.tolist()
    for start in range(0, len(wanted), _FETCH_CHUNK):
        chunk = wanted[start : start + _FETCH_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found.extend(
            db.execute(
                f"SELECT {SCOPE_COLUMNS} FROM memory_vectors WHERE {where} AND rid IN ({marks})",  # noqa: S608
                [*params, *chunk],
            ).fetchall()
        )
    return found
