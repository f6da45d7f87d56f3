"""What recall reads of one scope of the PostgreSQL memory index, kept in memory between recalls.

Recall scores every memory of a customer (``core.memory.ranking``), so it needs all of their vectors,
ids and times. Read from PostgreSQL that is every row of the scope, 1.5 KB of vector each: about 70 ms at
10,000 memories on the 2-core machine, growing with the customer. :class:`PgScopeCache` keeps, per scope
of a large customer, the same :class:`~core.memory.scope_rows.ScopeRows` the SQLite index keeps
(``core.memory.sqlite_scopes``): the rows in the order written, their vectors in one contiguous float32
matrix, their rids sorted for lookups; and the rows' BM25 terms (``core.memory.pg_scope_terms``), so a
kept scope's keyword scores need no query either. The terms are not read by the recall that first reads a
scope (it has PostgreSQL score its keywords, as every recall does until they are read): the caller is told
to have them read after it (:meth:`PgScopeCache.load_terms`, about 100 ms at 10,000 rows, read and
indexed), so a large customer's first recall costs the read of their rows, not of their terms too.

Kept exact, never stale, with any number of processes and hosts writing. The index gives every written
row a new rid (an insert, and a replacement too: ``rid = DEFAULT`` in ``core.memory.pg_rows``; the time
flag's upgrade in ``core.memory.pg_schema`` as well), a deleted row's rid is gone, and a row moved to
another customer leaves this scope's rids and arrives in the other's (with its rid). So a kept scope
changed exactly by the rids that are new (read, and only those) and the ones that are gone (dropped:
``ScopeRows.changed`` leaves their vectors' slots behind, no copy of the matrix). A recall of a kept
customer's scope checks, in one statement (:meth:`ScopeReader.check`, about 1 ms at 10,000 rows):

- the customer's counter (``memory_index_scopes``, kept by triggers in every writer's transaction: how
  many rows they have, how many have left), and the rids above the highest one kept (an index range
  scan: the new rows only);
- when no row has left and the count grew by exactly those new rids, nothing else changed: no row kept is
  gone, and no row came in below the highest rid kept (a row committed late with an older rid, a row
  moved in from another customer, either of which the count shows);
- when rows have left (a delete, a replacement, a move out), a second statement reads their departures
  since the counter kept (``memory_index_departures``, logged by the same triggers, the last
  ``pg_schema.DEPARTURES_KEPT`` per customer) and which of those rows are in the scope again (a row
  changed in place, one moved back): those are dropped and read again. If the count then shows a row
  that none of these holds (a late commit, a move in), every rid is read after all (about 1 ms at 10,000
  rows after a delete, where every rid took 3.8-4.9 ms);
- otherwise (more departures than the log keeps, a database from before it), and once after a scope is
  first read (its counter not yet known), every rid of the scope (an index-only scan of
  ``(collection, user_id, rid)``, sent as one bytea: 2-4 ms at 10,000 rows), compared with the rids kept.
  A scope of another kind (an agent's, a run's) is checked that way every time.

Each statement sees the rows committed when it starts, as a fresh read does; the counter is read in the
same statement as the rids, so they agree. The departures' statement reads only those the first
statement's counter counted; a row that changes between the two is seen by the next recall (its departure
comes after the counter kept, and the count of the kept rows, not the counter kept, is what is compared).

Only scopes of at least :data:`MIN_ROWS` rows are kept (a small one is read, and its keyword matches
scored by PostgreSQL, in about a millisecond, as before), at most :data:`MAX_ROWS` rows in all, least
recently used first out, and none longer than :data:`IDLE_SECONDS` after its last recall: what is kept
are vectors, times and word stems, no text, but a customer forgotten on another host should not stay in
this one's memory. A forget in this process drops
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

from core.memory.pg_scope_terms import ScopeTerms, TermRow
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


# A row's length and its lexemes with their frequencies, in the order its tsvector stores them, as
# ``pg_keywords.matches`` reads them (``pg_scope_terms.TermRow``).
# (``{}``: what else is selected after the term row, where the rows come from, the scope's WHERE clause;
# the scope's columns are the row's, the lateral holds none of them.)
_TERMS = sql.SQL(
    "SELECT r.rid, r.words, t.lexemes, t.counts{} FROM {} AS r,"
    " LATERAL (SELECT array_agg(u.lexeme) AS lexemes, array_agg(coalesce(cardinality(u.positions), 1))"
    " AS counts FROM unnest(r.terms) AS u) AS t WHERE {}"
)
# The scope's rids as one bytea of big-endian int8s (one value to send and decode, not a row per rid).
_RIDS = sql.SQL("SELECT string_agg(int8send(rid), ''::bytea) FROM memory_index_rows WHERE {}")
# A customer's kept scope's check, one statement: their counter (``pg_schema``: how many rows, how many
# have left) and the rids above the highest kept (an index range scan: new rows only); and, only when the
# counter is not known, every rid of the scope (the second scan is skipped by its one-time filter
# otherwise). When rows left, :data:`_DEPARTED` tells which. ``{0}``: the scope's WHERE clause.
_CHECK = sql.SQL(
    "WITH c AS (SELECT s.rows, s.removed FROM (VALUES (1)) AS one (x) LEFT JOIN memory_index_scopes AS s"
    " ON s.collection = %(collection)s AND s.user_id = %(user_id)s),"
    " n AS (SELECT count(*) AS n, string_agg(int8send(rid), ''::bytea) AS rids FROM memory_index_rows"
    " WHERE {0} AND rid > %(kept_max)s),"
    " v AS (SELECT c.rows, c.removed, n.rids, coalesce(%(known)s AND c.removed = %(kept_removed)s"
    " AND c.rows = %(kept_rows)s + n.n, false) AS only_new FROM c, n)"
    " SELECT v.rows, v.removed, v.rids, v.only_new, (SELECT string_agg(int8send(rid), ''::bytea)"
    " FROM memory_index_rows WHERE {0} AND NOT v.only_new AND NOT %(known)s) FROM v"
)
# After rows left a kept scope whose counter was known: the departures logged between the two counts
# (``memory_index_departures``) and, when they are all there (as many as the removals), which of those rows
# are in the scope (again: updated in place, moved back) at or below the highest rid kept; when they are
# not (pruned, or made before the log), every rid of the scope. ``{0}``: the scope's WHERE clause.
_DEPARTED = sql.SQL(
    "WITH d AS (SELECT count(*) AS n, array_agg(rid) AS rids FROM memory_index_departures"
    " WHERE collection = %(collection)s AND user_id = %(user_id)s"
    " AND removed > %(kept_removed)s AND removed <= %(now_removed)s),"
    " w AS (SELECT d.rids, d.n = %(now_removed)s - %(kept_removed)s AS logged FROM d)"
    " SELECT w.logged, (SELECT string_agg(int8send(x), ''::bytea) FROM unnest(w.rids) AS x WHERE w.logged),"
    " (SELECT string_agg(int8send(rid), ''::bytea) FROM memory_index_rows"
    " WHERE {0} AND w.logged AND rid <= %(kept_max)s AND rid = ANY(w.rids)),"
    " (SELECT string_agg(int8send(rid), ''::bytea) FROM memory_index_rows WHERE {0} AND NOT w.logged) FROM w"
)
# Rows by rid, found through the primary key first (OFFSET 0 keeps the planner from reading the scope's
# index and filtering every row of a large scope), then checked against the scope.
_BY_RID = sql.SQL("(SELECT * FROM memory_index_rows WHERE rid = ANY(%(rids)s::bigint[]) OFFSET 0)")


def as_rows(rows: Sequence[Sequence[Any]], vectors: VectorCodec) -> list[Row]:
    """Selected rows with their vector as float32 bytes (as the bytea column holds it already)."""
    if vectors.kind == "bytea":
        return list(rows)
    return [(r[0], r[1], r[2], np.asarray(r[3], dtype="<f4").tobytes(), *r[4:]) for r in rows]


@dataclass(frozen=True, slots=True)
class ScopeReader:
    """Reads of one scope on one connection, for :meth:`PgScopeCache.rows` (binary: vectors as bytes)."""

    conn: psycopg.Connection[Any]
    columns: sql.Composable  # :func:`scope_columns`
    where: Where
    vectors: VectorCodec

    def _fetch(self, statement: sql.Composed, rids: Sequence[int] | None = None) -> list[Any]:
        params = self.where[1] if rids is None else {**self.where[1], "rids": list(rids)}
        with self.conn.cursor(binary=True) as cursor:
            return cursor.execute(statement, params).fetchall()

    def rids(self) -> NDArray[np.int64]:
        """The rids of the scope's rows now."""
        found = self._fetch(_RIDS.format(self.where[0]))
        return _unpacked(found[0][0] if found else None)

    def check(self, kept_max: int, counts: Counts | None) -> Check:
        """What the scope holds now, against the rids kept (the highest: ``kept_max``) whose :data:`Counts`
        were ``counts`` (None: not known). For a customer's scope, their counter and the new rids are read,
        the departures logged since when rows left, and every rid only when those do not tell (or the
        counts are not known); for any other scope, every rid."""
        if set(self.where[1]) != {"collection", "user_id"}:
            return Check(new=None, now=self.rids(), counts=None)
        rows, removed = counts if counts is not None else (0, 0)
        params = {
            **self.where[1],
            "kept_max": kept_max,
            "known": counts is not None,
            "kept_rows": rows,
            "kept_removed": removed,
        }
        with self.conn.cursor(binary=True) as cursor:
            found = cursor.execute(_CHECK.format(self.where[0]), params).fetchone()
            assert found is not None  # one row of a join with one row
            now_rows, now_removed, new, only_new, every = found
            now_counts = None if now_rows is None else (int(now_rows), int(now_removed))
            if only_new:
                return Check(new=_unpacked(new), now=None, counts=now_counts)
            if counts is None:
                return Check(new=None, now=_unpacked(every), counts=now_counts)
            if now_counts is None:  # no counter (any more): nothing tells
                return Check(new=None, now=self.rids(), counts=None)
            departures = cursor.execute(
                _DEPARTED.format(self.where[0]), {**params, "now_removed": now_counts[1]}
            ).fetchone()
        assert departures is not None  # one row of an aggregate
        logged, departed, back, every = departures
        if logged:
            again = np.concatenate([_unpacked(back), _unpacked(new)])
            return Check(new=again, now=None, counts=now_counts, departed=_unpacked(departed))
        return Check(new=None, now=_unpacked(every), counts=now_counts)

    def rows(self) -> list[Row]:
        """Every row of the scope."""
        statement = sql.SQL("SELECT {} FROM memory_index_rows WHERE {}").format(self.columns, self.where[0])
        return as_rows(self._fetch(statement), self.vectors)

    def terms(self) -> list[TermRow]:
        """Every row's term row."""
        return self._fetch(_TERMS.format(sql.SQL(""), sql.SQL("memory_index_rows"), self.where[0]))

    def fresh(self, rids: Sequence[int]) -> tuple[list[Row], list[TermRow]]:
        """The rows of ``rids`` still in the scope and their term rows, in one statement."""
        found = self._fetch(_TERMS.format(sql.SQL(", {}").format(self.columns), _BY_RID, self.where[0]), rids)
        return as_rows([r[4:] for r in found], self.vectors), [r[:4] for r in found]


Counts = tuple[int, int]  # a customer's counter (``pg_schema``): rows, removed


@dataclass(frozen=True, slots=True)
class Check:
    """What a kept scope's check found (:meth:`ScopeReader.check`): either the rids to read (``new``) and
    the ones that left (``departed``: none when only rows came), or the scope's rids ``now``."""

    new: NDArray[np.int64] | None  # rids to read: above the highest kept, and departed ones back in the scope
    now: NDArray[np.int64] | None  # every rid of the scope, when the rest does not tell
    counts: Counts | None  # the customer's counter as read with them (None: none, or not a customer)
    # the rids that left the scope (or were changed in it) since the counts kept, when every one is logged
    departed: NDArray[np.int64] | None = None


def _unpacked(packed: bytes | None) -> NDArray[np.int64]:
    """Rids sent as one bytea of big-endian int8s."""
    return np.frombuffer(packed or b"", dtype=">i8").astype(np.int64)


def scope_key(collection: str, scope: Mapping[str, str]) -> Key:
    return (collection, tuple(sorted(scope.items())))


@dataclass(slots=True)
class _Kept:
    rows: ScopeRows
    terms: ScopeTerms | None  # None until :meth:`PgScopeCache.load_terms` has read them
    used_at: float
    counts: Counts | None  # the customer's counter when ``rows`` were as the database held them
    loading: bool = False  # a load of the terms is handed out (``rows`` said so) and not done


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
        self, key: Key, read: ScopeReader, *, dims: int, lexemes: Sequence[str]
    ) -> tuple[ScopeRows, NDArray[np.float32] | None, bool]:
        """The rows of the scope ``key`` (``read`` reads it); when it is kept and its terms are read, each
        row's BM25 score for any of ``lexemes`` (None: the caller asks PostgreSQL); and whether the caller
        is to have the terms read now (:meth:`load_terms`, off the recall's path: a first read of a
        large scope is its rows only)."""
        with self._stripes[zlib.crc32(repr(key).encode()) % _STRIPES]:
            with self._lock:
                self._expire()
                kept = self._kept.get(key)
            if kept is None:
                fresh = read.rows()
                rows = ScopeRows.read(fresh, dims) if fresh else ScopeRows.empty(dims)
                if not self._min_rows <= len(fresh) <= self._max_rows:
                    return rows, None, False
                with self._lock:
                    self._put(key, rows, None, None, loading=True)
                return rows, None, True
            check = read.check(int(kept.rows.rids.max(initial=0)), kept.counts)
            now = check.now
            gone = np.zeros(0, np.int64)
            if now is None and check.departed is not None:  # rows left, each one logged
                gone = np.intersect1d(kept.rows.rids, check.departed)  # a rid may leave twice (a move)
                assert check.new is not None and check.counts is not None
                if len(kept.rows) - len(gone) + len(check.new) != check.counts[0]:
                    now = read.rids()  # a row came in below the highest kept (a late commit, a move)
            if now is None:  # only the rows of ``new`` to read (again), the departed ones to drop
                new = [] if check.new is None else check.new.tolist()
            else:
                gone = np.setdiff1d(kept.rows.rids, now, assume_unique=True)
                new = np.setdiff1d(now, kept.rows.rids, assume_unique=True).tolist()
            fresh, held = read.fresh(new) if new else ([], [])
            # the rows kept now are the ones counted, unless a new one left before it was read
            counts = check.counts if len(fresh) == len(new) else None
            terms = kept.terms
            try:
                rows = kept.rows.changed(gone, fresh)
                if terms is not None:
                    terms.remove(gone.tolist())
                    terms.add(held)
            except BaseException:  # the rows and their terms may no longer agree: keep neither
                with self._lock:
                    self._pop(key)
                raise
            load = terms is None and not kept.loading  # a load handed out before failed: again
            with self._lock:
                if len(rows) < self._min_rows:
                    self._pop(key)
                    load = False
                else:
                    self._put(key, rows, terms, counts, loading=kept.loading or load)
            return rows, None if terms is None else terms.scores(rows, lexemes), load

    def load_terms(self, key: Key, read: ScopeReader) -> None:
        """Read the BM25 terms of the kept scope ``key`` (when :meth:`rows` said to): every row's, in one
        statement (about 70 ms at 10,000 rows, and 30 ms to index them), which a first read leaves out of
        the recall that made it; that recall and any before this is done have PostgreSQL score the
        keywords. The terms kept are those of the rows kept: a row written since is read with its terms
        by the next check, one deleted since leaves the rows there too (its rid has no term row here)."""
        with self._stripes[zlib.crc32(repr(key).encode()) % _STRIPES]:
            with self._lock:
                kept = self._kept.get(key)
            if kept is None or kept.terms is not None:
                return
            try:
                held = read.terms()
                wanted = set(kept.rows.rids.tolist())
                kept.terms = ScopeTerms.of([t for t in held if int(t[0]) in wanted])
            finally:
                kept.loading = False

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

    def _put(
        self, key: Key, rows: ScopeRows, terms: ScopeTerms | None, counts: Counts | None, *, loading: bool
    ) -> None:
        self._pop(key)
        self._kept[key] = _Kept(rows, terms, self._clock(), counts, loading)
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
