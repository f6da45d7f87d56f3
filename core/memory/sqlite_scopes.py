"""What recall reads of one scope of the SQLite memory index, kept in memory between recalls.

Recall scores every memory of a customer (``core.memory.ranking``), so it needs all of their vectors,
ids and times. Read from the file, that is every row of the scope (about 2 KB each with the payload
beside the vector) and a datetime parsed per row: 30 ms and more at 10,000 memories, growing with the
customer. :class:`ScopeCache` keeps, per scope of a large customer, :class:`ScopeRows`: the rows in the
order written, their vectors as one contiguous float32 matrix, and their rowids sorted for lookups, so a
recall is one matrix-vector product and a keyword query.

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

The rows come out exactly as a read from the file orders them (by written time, then rowid) and the
matrix holds the same float32 values in the same order, so the signals computed from it are identical.
Only scopes of at least :data:`MIN_ROWS` rows are kept (a small one reads in well under a millisecond),
and at most :data:`MAX_ROWS` rows in all, least recently used first out. Callers hold the connection's
lock; the arrays and lists handed out are never changed afterwards (a change makes new ones).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.memory.ranking import WrittenTimes, source_code
from core.memory.rows import written_at

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
Row = Sequence[Any]  # rid, id, created_at, vector (float32 bytes), source channel (or None)

# what a scope read selects: the source channel splits conversations in ranking (``WrittenTimes.sources``)
SCOPE_COLUMNS = "rid, id, created_at, vector, json_extract(payload, '$.source_channel')"


class _Buffer:
    """The storage behind the matrices of one kept scope, with room to append: a recall after a new memory
    then copies only the new rows, not the whole matrix. ``used`` rows are taken; only the newest
    :class:`ScopeRows` (the one whose matrix ends at ``used``) may append, so a matrix once handed out
    never changes."""

    __slots__ = ("array", "used")

    def __init__(self, array: NDArray[np.float32], used: int) -> None:
        self.array = array
        self.used = used

    @classmethod
    def holding(cls, matrix: NDArray[np.float32], extra: int) -> _Buffer:
        """A new buffer with ``matrix`` in it and room for ``extra`` rows and a quarter more."""
        rows, dims = matrix.shape
        array = np.empty((rows + extra + max(16, rows // 4), dims), dtype=np.float32)
        array[:rows] = matrix
        return cls(array, rows)


@dataclass(frozen=True, slots=True)
class ScopeRows:
    """One scope's rows, oldest first (by written time, then rowid): what recall ranks. Read-only."""

    rids: NDArray[np.int64]
    ids: list[str]
    written: list[datetime | None]
    stamps: NDArray[np.float64]  # the sort key: the written time in seconds, -inf when unknown
    sources: NDArray[np.int64]  # the channel each row came from, as :func:`~core.memory.ranking.source_code`
    matrix: NDArray[np.float32]  # (rows, dims), C-contiguous, one unit vector per row
    by_rid: NDArray[np.int64]  # positions in rowid order, for :meth:`positions`
    buffer: _Buffer | None = None  # where ``matrix`` lives when rows may be appended in place

    @classmethod
    def empty(cls, dims: int) -> ScopeRows:
        return cls._ordered(
            np.zeros(0, np.int64),
            [],
            [],
            np.zeros(0, np.float64),
            np.zeros(0, np.int64),
            np.zeros((0, dims), np.float32),
        )

    @classmethod
    def read(cls, rows: Sequence[Row], dims: int) -> ScopeRows:
        """Rows as selected from ``memory_vectors`` (:data:`SCOPE_COLUMNS`), in any order."""
        written = [written_at(r[2]) for r in rows]
        stamps = np.array([w.timestamp() if w is not None else -np.inf for w in written], dtype=np.float64)
        rids = np.array([int(r[0]) for r in rows], dtype=np.int64)
        sources = np.array([source_code(r[4] if len(r) > 4 else None) for r in rows], dtype=np.int64)
        order = np.lexsort((rids, stamps)).tolist()
        matrix = np.frombuffer(b"".join([rows[i][3] for i in order]), dtype=np.float32)
        return cls._ordered(
            rids[order],
            [str(rows[i][1]) for i in order],
            [written[i] for i in order],
            stamps[order],
            sources[order],
            matrix.reshape(len(order), dims),
        )

    @classmethod
    def _ordered(
        cls,
        rids: NDArray[np.int64],
        ids: list[str],
        written: list[datetime | None],
        stamps: NDArray[np.float64],
        sources: NDArray[np.int64],
        matrix: NDArray[np.float32],
    ) -> ScopeRows:
        by_rid = np.argsort(rids, kind="stable").astype(np.int64)
        timed = WrittenTimes(written, stamps, sources)  # ranking splits conversations from these
        return cls(
            rids=rids, ids=ids, written=timed, stamps=stamps, sources=sources, matrix=matrix, by_rid=by_rid
        )

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, rids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Where each of ``rids`` is in these rows; -1 for a rowid that is not here."""
        if len(self.rids) == 0:
            return np.full(len(rids), -1, dtype=np.int64)
        sorted_rids = self.rids[self.by_rid]
        at = np.searchsorted(sorted_rids, rids).clip(0, len(sorted_rids) - 1)
        found = sorted_rids[at] == rids
        return np.where(found, self.by_rid[at], -1).astype(np.int64)

    def _appended(self, added: ScopeRows) -> ScopeRows | None:
        """These rows with ``added`` after them, when those are all newer (the common change: new memories),
        copying only the new rows' vectors; None when they would not go at the end."""
        if len(self) and len(added) and (added.stamps[0], added.rids[0]) <= (self.stamps[-1], self.rids[-1]):
            return None
        count, extra = len(self), len(added)
        buffer = self.buffer
        if buffer is None or buffer.used != count or buffer.array.shape[0] < count + extra:
            buffer = _Buffer.holding(self.matrix, extra)
        buffer.array[count : count + extra] = added.matrix
        buffer.used = count + extra
        rids = np.concatenate([self.rids, added.rids])
        stamps = np.concatenate([self.stamps, added.stamps])
        sources = np.concatenate([self.sources, added.sources])
        rows = ScopeRows._ordered(
            rids,
            self.ids + added.ids,
            [*self.written, *added.written],
            stamps,
            sources,
            buffer.array[: count + extra],
        )
        return ScopeRows(
            rids=rows.rids,
            ids=rows.ids,
            written=rows.written,
            stamps=rows.stamps,
            sources=rows.sources,
            matrix=rows.matrix,
            by_rid=rows.by_rid,
            buffer=buffer,
        )

    def changed(self, gone: NDArray[np.int64], fresh: Sequence[Row]) -> ScopeRows:
        """These rows without the rowids ``gone``, with the rows ``fresh`` (read again), in written order.

        The common change (new memories are the newest) copies the matrix once; the rest of it is as
        :meth:`read` would make it from the file.
        """
        keep = np.flatnonzero(~np.isin(self.rids, gone))
        if not fresh and len(keep) == len(self.rids):
            return self
        if fresh and len(keep) == len(self.rids):
            appended = self._appended(ScopeRows.read(fresh, self.matrix.shape[1]))
            if appended is not None:
                return appended
        prefix = bool(np.array_equal(keep, np.arange(len(keep))))
        kept_matrix = self.matrix[: len(keep)] if prefix else self.matrix[keep]
        if fresh:
            added = ScopeRows.read(fresh, self.matrix.shape[1])
            rids = np.concatenate([self.rids[keep], added.rids])
            stamps = np.concatenate([self.stamps[keep], added.stamps])
            sources = np.concatenate([self.sources[keep], added.sources])
            ids = [self.ids[i] for i in keep.tolist()] + added.ids
            written = [self.written[i] for i in keep.tolist()] + list(added.written)
            matrix = np.concatenate([kept_matrix, added.matrix])
        else:
            rids, stamps, matrix = self.rids[keep], self.stamps[keep], kept_matrix
            sources = self.sources[keep]
            ids = [self.ids[i] for i in keep.tolist()]
            written = [self.written[i] for i in keep.tolist()]
        order = np.lexsort((rids, stamps))
        if np.array_equal(order, np.arange(len(order))):
            return ScopeRows._ordered(rids, ids, written, stamps, sources, np.ascontiguousarray(matrix))
        listed = order.tolist()
        return ScopeRows._ordered(
            rids[order],
            [ids[i] for i in listed],
            [written[i] for i in listed],
            stamps[order],
            sources[order],
            np.ascontiguousarray(matrix[order]),
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
