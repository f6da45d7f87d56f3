"""The memory index (``core.ports.MemoryIndex``) on PostgreSQL: what every host of a scale setup shares.

In scale mode several processes on several hosts share one PostgreSQL, each with its own data dir; the
memories live in the database, so a memory written on one host is recalled on every other, and forget,
export, retention and moves act on them all. Same semantics as the SQLite index of the embedded default
(``core.memory.vectors``), checked by the same conformance suite:

- Strict scoping: a read without a ``user_id``, ``agent_id`` or ``run_id`` equality returns nothing; the
  scope's rows are selected by their indexed scope columns, then Mem0's other filters
  (``core.memory.filters``) are applied to them in Python, then they are scored (numpy cosines over the
  float32 unit vectors), so a read costs what the customer has, not what the table holds
  (``core.memory.pg_where``).
- Keyword search and BM25: ``core.memory.pg_keywords`` (a ``tsvector`` column, GIN); tables, their
  creation on open and the advisory lock around it: ``core.memory.pg_schema``; how vectors are stored:
  ``core.memory.pg_vectors``; the URL and the pool: ``core.memory.pg_connect``.
- Every method is one transaction on a connection of a ``psycopg_pool.ConnectionPool``: blocking, safe
  from Mem0's threads. A replaced row gets a new ``rid`` (the order written), as in SQLite.
- :meth:`reassign` is one ``UPDATE`` of the rows (and of their turn index) in one transaction; a
  concurrent move of the same rows on another host waits for it, then finds them gone from the source.
- Forgetting deletes the rows: the payload, the vector and the keyword index (a column) go with them,
  the turn index by cascade. Deleted row versions stay in the table's pages, unreadable, until
  PostgreSQL's (auto)vacuum reclaims them: it has no ``secure_delete``.

Log lines carry ids and counts only; the URL (it holds the password) is never shown.
"""

from __future__ import annotations

import builtins
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from core.memory import lexemes, pg_keywords, pg_row_upgrades, pg_rows, pg_schema, pg_scopes, pg_where
from core.memory.background import Background
from core.memory.filters import beyond_scope, matches, scope_of
from core.memory.pg_connect import open_pool
from core.memory.pg_scope_terms import scored
from core.memory.rows import ScopeSignals, Vector, VectorHit, rows_to_insert, unit_vector, written_at
from core.memory.scope_rows import ScopeRows
from core.memory.sqlite_keywords import terms

__all__ = ["PostgresIndex"]

log = logging.getLogger(__name__)

# Connections per process: Mem0's calls are short and each process's memory calls are few at a time, while
# every host's processes share the server's ``max_connections`` with the store's own pools.
DEFAULT_POOL_SIZE = 4

_NEWEST_FIRST = sql.SQL(" ORDER BY created_at DESC NULLS LAST, rid DESC")


class PostgresIndex:
    """The memory index in PostgreSQL tables (made on open when missing); one collection per object."""

    def __init__(
        self,
        url: str,
        *,
        collection_name: str = "threadline",
        embedding_model_dims: int = 384,
        pool_size: int = DEFAULT_POOL_SIZE,
        pgvector: bool = True,
        scopes: pg_scopes.PgScopeCache | None = None,
        later: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        """``url``: the store's SQLAlchemy URL (``postgresql+asyncpg://...``) or a libpq one. ``pgvector``:
        a table made now gets a pgvector column where the extension can be installed (``pg_vectors``).
        ``scopes``: what recall keeps of large scopes (``pg_scopes``; by default its own). ``later``: runs
        the reads a recall leaves for after it (a kept scope's terms, ``PgScopeCache.load_terms``); by
        default one thread of this index's own."""
        self.collection_name = collection_name
        self.embedding_model_dims = embedding_model_dims
        lexemes.load()
        self._pool = open_pool(url, max_size=pool_size)
        try:
            with self._pool.connection() as conn:
                self._vectors = pg_schema.ensure(
                    conn, collection_name, embedding_model_dims, pgvector=pgvector
                )
                pg_row_upgrades.run(conn)
        except BaseException:
            self._pool.close()
            raise
        self._scopes = scopes if scopes is not None else pg_scopes.PgScopeCache()
        self._columns = pg_scopes.scope_columns(self._vectors)
        self._background = Background("pg-scope-terms")
        self._later = later if later is not None else self._background
        log.info("memory index on PostgreSQL: collection %s, %s vectors", collection_name, self._vectors.kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection_name!r}, vectors={self._vectors.kind!r})"

    def close(self) -> None:
        self._background.close()  # a read handed out and not started is dropped, one running ends
        self._pool.close()

    def _load_terms(self, key: pg_scopes.Key, where: pg_where.Where) -> None:
        try:
            with self._pool.connection() as conn:
                self._scopes.load_terms(key, pg_scopes.ScopeReader(conn, self._columns, where, self._vectors))
        except Exception as exc:  # recall goes on scoring keywords in PostgreSQL; the next one tries again
            log.warning("memory index: reading a kept scope's terms failed: %s", type(exc).__name__)

    def _scope(self, filters: Mapping[str, Any] | None) -> pg_where.Where | None:
        return pg_where.scope_where(self.collection_name, filters)

    def _scope_rows(
        self,
        conn: psycopg.Connection[Any],
        columns: sql.Composable,
        filters: Mapping[str, Any] | None,
        what: str,
    ) -> list[Any]:
        return pg_where.scope_rows(conn, self.collection_name, columns, filters, what)

    # ----- writes ------------------------------------------------------------------------------

    def _unit(self, vector: Vector) -> NDArray[np.float32]:
        array = unit_vector(vector)
        if array.shape[0] != self.embedding_model_dims:
            raise ValueError(
                f"vector has {array.shape[0]} dimensions, the collection {self.embedding_model_dims}"
            )
        return array

    def insert(
        self,
        vectors: Sequence[Vector],
        payloads: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Insert (or replace, by id) rows. ``ids`` default to new UUIDs, ``payloads`` to ``{}``."""
        ids, payloads = rows_to_insert(len(vectors), payloads, ids)
        encoded = [self._vectors.param(self._unit(v)) for v in vectors]
        with self._pool.connection() as conn:
            for vector_id, vector, payload in zip(ids, encoded, payloads, strict=True):
                pg_rows.write_row(conn, self.collection_name, self._vectors, str(vector_id), vector, payload)

    def update(
        self, vector_id: str, vector: Vector | None = None, payload: Mapping[str, Any] | None = None
    ) -> None:
        """Replace a row's vector and/or payload (what is None stays). ``KeyError`` for an unknown id."""
        new_vector = None if vector is None else self._vectors.param(self._unit(vector))
        statement = sql.SQL(
            "SELECT {}, payload FROM memory_index_rows WHERE collection = %s AND id = %s FOR UPDATE"
        ).format(self._vectors.read)
        with self._pool.connection() as conn:
            row = conn.execute(statement, (self.collection_name, str(vector_id))).fetchone()
            if row is None:
                raise KeyError(f"no vector {vector_id}")
            if new_vector is None:
                new_vector = self._vectors.param(self._vectors.matrix([row[0]], self.embedding_model_dims)[0])
            new_payload = dict(payload) if payload is not None else row[1]
            pg_rows.write_row(
                conn, self.collection_name, self._vectors, str(vector_id), new_vector, new_payload
            )

    def delete(self, vector_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "DELETE FROM memory_index_rows WHERE collection = %s AND id = %s",
                (self.collection_name, str(vector_id)),
            )

    def reassign(
        self, from_user: str, to_user: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        """Give the rows of ``from_user`` whose ``source_handle`` is in ``handles`` (all when None) to
        ``to_user`` in one transaction; returns the ids moved (in the order stored).

        Ids, vectors and every other payload field stay; the ``user_id`` column, the payload's ``user_id``
        and the turn index follow (the keyword index holds no scope).
        """
        if from_user == to_user or (handles is not None and not handles):
            return []
        with self._pool.connection() as conn:
            moved = pg_rows.move_rows(conn, self.collection_name, from_user, to_user, handles)
        return [str(vector_id) for _, vector_id in sorted(moved)]

    def forget_scope(self, filters: Mapping[str, Any]) -> builtins.list[str]:
        """Delete every row of one scope (their text, vectors and keyword index with them); returns the ids
        deleted. Refuses an empty scope (that would be everyone)."""
        where = self._scope(filters)
        if where is None:
            raise ValueError("forget_scope needs a user_id, agent_id or run_id")
        statement = sql.SQL("DELETE FROM memory_index_rows WHERE {} RETURNING rid, id").format(where[0])
        with self._pool.connection() as conn:
            deleted = conn.execute(statement, where[1]).fetchall()
        self._scopes.drop(self.collection_name, scope_of(filters))  # nothing of theirs stays kept here
        return [str(vector_id) for _, vector_id in sorted(deleted)]

    def forget_written_before(self, filters: Mapping[str, Any], cutoff: datetime) -> builtins.list[str]:
        """Delete the scope's rows written before ``cutoff`` (retention); returns their ids.

        A row whose ``created_at`` cannot be read is kept. Refuses an empty scope, like ``forget_scope``.
        """
        where = self._scope(filters)
        if where is None:
            raise ValueError("forget_written_before needs a user_id, agent_id or run_id")
        statement = sql.SQL(
            "SELECT rid, id, created_at FROM memory_index_rows WHERE {} ORDER BY rid FOR UPDATE"
        ).format(where[0])
        with self._pool.connection() as conn:
            rows = conn.execute(statement, where[1]).fetchall()
            old = [
                (rid, vector_id)
                for rid, vector_id, written in rows
                if (w := written_at(written)) and w < cutoff
            ]
            if old:
                conn.execute("DELETE FROM memory_index_rows WHERE rid = ANY(%s)", ([rid for rid, _ in old],))
        if old:
            self._scopes.drop(self.collection_name, scope_of(filters))
        return [str(vector_id) for _, vector_id in old]

    # ----- reads -------------------------------------------------------------------------------

    def get(self, vector_id: str) -> VectorHit | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT id, payload FROM memory_index_rows WHERE collection = %s AND id = %s",
                (self.collection_name, str(vector_id)),
            ).fetchone()
        return VectorHit(id=str(row[0]), score=None, payload=row[1]) if row else None

    def search(
        self, query: str, vectors: Vector, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> builtins.list[VectorHit]:
        """The ``top_k`` rows of the filters' scope closest to ``vectors`` (cosine, clipped to [0, 1]).

        The scope's vectors are read, then the payloads of the best ``top_k`` only, still within the scope
        (a row moved away in between is left out)."""
        if top_k <= 0:
            return []
        where = self._scope(filters)
        columns = sql.SQL("id, {}").format(self._vectors.read)
        with self._pool.connection() as conn:
            rows = self._scope_rows(conn, columns, filters, "vector search")
            if not rows or where is None:
                return []
            scores = self._vectors.matrix([r[1] for r in rows], self.embedding_model_dims) @ unit_vector(
                vectors
            )
            best = [(str(rows[i][0]), float(scores[i])) for i in np.argsort(-scores, kind="stable")[:top_k]]
            statement = sql.SQL("SELECT id, payload FROM memory_index_rows WHERE {} AND id = ANY(%(ids)s)")
            found = conn.execute(statement.format(where[0]), {**where[1], "ids": [i for i, _ in best]})
            payloads = {str(r[0]): r[1] for r in found.fetchall()}
        return [
            VectorHit(id=vector_id, score=min(max(score, 0.0), 1.0), payload=payloads[vector_id])
            for vector_id, score in best
            if vector_id in payloads
        ]

    def keyword_search(
        self, query: str, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> builtins.list[VectorHit]:
        """BM25 over the text of the filters' scope (``pg_keywords``); higher is better, always > 0."""
        where = self._scope(filters)
        words = pg_keywords.query_words(terms(query))
        if where is None or not words or top_k <= 0:
            return []
        extra = beyond_scope(filters)
        with self._pool.connection() as conn:
            found = pg_keywords.matches(conn, where[0], where[1], lexemes.of_query(words), payloads=True)
        ranked = sorted(found, key=lambda m: (-m.score, m.rid))
        hits = [
            VectorHit(id=m.id, score=m.score, payload=m.payload or {})
            for m in ranked
            if matches(m.payload or {}, extra)
        ]
        return hits[:top_k]

    def scope_signals(
        self, vectors: Vector, terms: Sequence[str], filters: Mapping[str, Any] | None
    ) -> ScopeSignals:
        """Every row of the filters' scope, oldest first, with its cosine to ``vectors`` and its BM25 score
        for ``terms`` (any of them; 0 where none matches). Nothing without a scope.

        What recall ranks by (``core.memory.ranking``), as on SQLite: the scope's rows (with when each was
        said, whether its text says when and its source channel: ``pg_scopes.scope_columns``) come from
        the :class:`~core.memory.pg_scopes.PgScopeCache` (a large scope is read once and kept, checked
        against the scope's rids on every recall, with its BM25 terms, which are read after the recall
        that first read it, by ``later``; until they are, and with Mem0's metadata filters, the keywords
        are scored by ``pg_keywords.matches``); the cosines are one matrix-vector product. The lists
        handed out are read-only.
        """
        where = self._scope(filters)
        if where is None:
            log.warning("scope read without a user_id/agent_id/run_id refused")
            return ScopeSignals.empty()
        dims, query = self.embedding_model_dims, lexemes.of_query(terms)
        load_terms = False
        with self._pool.connection() as conn:
            keyword: NDArray[np.float32] | None = None
            if beyond_scope(filters):  # BM25 over the whole scope, of the rows filtered: in SQL
                fresh = pg_scopes.as_rows(
                    self._scope_rows(conn, self._columns, filters, "scope read"), self._vectors
                )
                scoped = ScopeRows.read(fresh, dims) if fresh else ScopeRows.empty(dims)
            else:
                key = pg_scopes.scope_key(self.collection_name, scope_of(filters))
                scoped, keyword, load = self._scopes.rows(
                    key,
                    pg_scopes.ScopeReader(conn, self._columns, where, self._vectors),
                    dims=dims,
                    lexemes=query,
                )
                load_terms = load
            if keyword is None:  # not kept (or its terms not read yet): PostgreSQL scores the matching rows
                found = pg_keywords.matches(conn, *where, query, payloads=False) if len(scoped) else []
                keyword = scored(scoped, [(m.rid, m.score) for m in found])
        if load_terms:  # kept, its terms not read yet: read after this recall, off its path
            self._later(functools.partial(self._load_terms, key, where))
        if not len(scoped):
            return ScopeSignals.empty()
        return ScopeSignals(
            ids=scoped.ids,
            written=scoped.written,
            dense=scoped.cosines(unit_vector(vectors)),
            keyword=keyword,
            dated=scoped.dated,
        )

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the rows ``ids`` of this collection (missing ids are left out)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        if not wanted:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, payload FROM memory_index_rows WHERE collection = %s AND id = ANY(%s)",
                (self.collection_name, wanted),
            ).fetchall()
        return {str(r[0]): r[1] for r in rows}

    def list(
        self, filters: Mapping[str, Any] | None = None, top_k: int | None = None
    ) -> builtins.list[VectorHit]:
        """The scope's rows, newest first (by ``created_at``, then by when they were stored)."""
        where = self._scope(filters)
        if where is None:
            log.warning("vector list without a user_id/agent_id/run_id refused")
            return []
        extra = beyond_scope(filters)
        limit = None if (top_k is None or extra) else int(top_k)
        statement = sql.SQL("SELECT id, payload FROM memory_index_rows WHERE {}{} LIMIT %(limit)s").format(
            where[0], _NEWEST_FIRST
        )
        with self._pool.connection() as conn:
            rows = conn.execute(statement, {**where[1], "limit": limit}).fetchall()
        hits = [VectorHit(id=str(r[0]), score=None, payload=r[1]) for r in rows]
        if extra:
            hits = [h for h in hits if matches(h.payload, extra)]
        return hits if top_k is None else hits[: int(top_k)]

    def count(self, filters: Mapping[str, Any]) -> int:
        """How many rows the filters' scope holds (0 without a scope)."""
        where = self._scope(filters)
        if where is None:
            return 0
        if beyond_scope(filters):
            with self._pool.connection() as conn:
                return len(self._scope_rows(conn, sql.SQL("id"), filters, "count"))
        statement = sql.SQL("SELECT count(*) FROM memory_index_rows WHERE {}").format(where[0])
        with self._pool.connection() as conn:
            row = conn.execute(statement, where[1]).fetchone()
        return int(row[0]) if row else 0

    def covers_turns(self, user_id: str, turn_ids: Sequence[int]) -> bool:
        """True when any row of ``user_id`` was made from one of ``turn_ids`` (its payload's ``turn_ids``)."""
        wanted = [int(t) for t in turn_ids]
        if not wanted:
            return False
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM memory_index_turns"
                " WHERE collection = %s AND user_id = %s AND turn_id = ANY(%s::bigint[]))",
                (self.collection_name, user_id, wanted),
            ).fetchone()
        return bool(row and row[0])
