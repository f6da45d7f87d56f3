"""The embedded memory index (``core.ports.MemoryIndex``) on SQLite: one file in the data dir.

Why not Qdrant's local mode: it locks its folder to one process (the server and the CLI could not both
open it) and scores every point on a filtered search (about 200 ms at 20k points). Here every row
carries its ``user_id`` / ``agent_id`` / ``run_id`` in indexed columns; a search first selects the rows
of that one scope and only then scores them (numpy dot products over float32 unit vectors), so its cost
follows the customer's memory count, not the total.

- Strict scoping: a search, keyword search, list, count or signal read without a ``user_id``,
  ``agent_id`` or ``run_id`` equality returns nothing; it never falls back to scanning everyone. Other
  keys of the filters are Mem0 filters (``core.memory.filters``) applied to the scope's rows.
- Keyword search and BM25: ``core.memory.sqlite_keywords``; the file, its schema and its shared
  connection: ``core.memory.sqlite_file``.
- Recall signals (:meth:`scope_signals`): one scope's rows in the order written, each with its cosine
  to the query and its BM25 score, for ``core.memory.ranking`` to rank; a large scope's rows are kept in
  memory between recalls (``core.memory.sqlite_scopes``), so a recall does not read them all again.
- ``turn_ids`` from each payload go to an indexed side table: :meth:`covers_turns` is one index probe.
- :meth:`forget_scope` (erasure) merges the keyword index and rewrites the file (``VACUUM``), so no copy of
  a deleted row lingers in it; :meth:`forget_written_before` (retention) merges the index and checkpoints
  the WAL (deleted rows are zeroed; copies left by page rebalancing wait for the next erasure's rewrite).

Several collections may share one file (``with_collection``). Nothing here knows Mem0: Mem0 reaches this
store through ``core.memory.mem0_oss``'s adapter, as it would reach any other implementation of the port.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from core.memory import lexemes, sqlite_file, sqlite_keywords
from core.memory.filters import beyond_scope, matches, scope_of
from core.memory.rows import ScopeSignals, Vector, VectorHit, rows_to_insert, unit_vector, written_at
from core.memory.scope_rows import ScopeRows
from core.memory.sqlite_file import SharedConnection
from core.memory.sqlite_scopes import SCOPE_COLUMNS

__all__ = ["SQLiteVectorStore", "ScopeSignals", "VectorHit"]

log = logging.getLogger(__name__)


class SQLiteVectorStore:
    """The memory index in one SQLite file; several collections may share the file and its connection."""

    def __init__(
        self,
        path: Path | str,
        *,
        collection_name: str = "threadline",
        embedding_model_dims: int = 384,
    ) -> None:
        self._init(SharedConnection(Path(path)), collection_name, embedding_model_dims)

    def _init(self, shared: SharedConnection, collection_name: str, embedding_model_dims: int) -> None:
        lexemes.load()
        self._shared = shared
        self.path = shared.path
        self.collection_name = collection_name
        self.embedding_model_dims = embedding_model_dims
        with shared.writing() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO memory_collections (name, dims, distance) VALUES (?, ?, 'cosine')",
                (collection_name, int(embedding_model_dims)),
            )

    def with_collection(self, collection_name: str) -> Self:
        """Another collection in the same file, on the same connection (closing one closes both)."""
        other = type(self).__new__(type(self))
        other._init(self._shared, collection_name, self.embedding_model_dims)
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection_name!r})"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._shared.db

    def close(self) -> None:
        self._shared.close()

    # ----- collections -------------------------------------------------------------------------

    def list_cols(self) -> list[str]:
        with self._shared.lock:
            return [row[0] for row in self._db.execute("SELECT name FROM memory_collections ORDER BY name")]

    def delete_col(self) -> None:
        """Delete this collection: its rows, their index entries, its registration."""
        with self._shared.writing() as conn:
            rids = [
                r[0]
                for r in conn.execute(
                    "SELECT rid FROM memory_vectors WHERE collection = ?", (self.collection_name,)
                )
            ]
            sqlite_file.delete_rows(conn, rids)
            conn.execute("DELETE FROM memory_collections WHERE name = ?", (self.collection_name,))
        self.compact()

    # ----- writes ------------------------------------------------------------------------------

    def _as_blob(self, vector: Vector) -> bytes:
        array = unit_vector(vector)
        if array.shape[0] != self.embedding_model_dims:
            raise ValueError(
                f"vector has {array.shape[0]} dimensions, the collection {self.embedding_model_dims}"
            )
        return array.tobytes()

    def insert(
        self,
        vectors: Sequence[Vector],
        payloads: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Insert (or replace, by id) rows. ``ids`` default to new UUIDs, ``payloads`` to ``{}``."""
        ids, payloads = rows_to_insert(len(vectors), payloads, ids)
        blobs = [self._as_blob(v) for v in vectors]
        with self._shared.writing() as conn:
            for vector_id, blob, payload in zip(ids, blobs, payloads, strict=True):
                sqlite_file.write_row(conn, self.collection_name, str(vector_id), blob, payload)

    def update(
        self, vector_id: str, vector: Vector | None = None, payload: Mapping[str, Any] | None = None
    ) -> None:
        """Replace a row's vector and/or payload (what is None stays). ``KeyError`` for an unknown id."""
        with self._shared.writing() as conn:
            row = conn.execute(
                "SELECT vector, payload FROM memory_vectors WHERE collection = ? AND id = ?",
                (self.collection_name, str(vector_id)),
            ).fetchone()
            if row is None:
                raise KeyError(f"no vector {vector_id}")
            blob = self._as_blob(vector) if vector is not None else row[0]
            new_payload = dict(payload) if payload is not None else json.loads(row[1])
            sqlite_file.write_row(conn, self.collection_name, str(vector_id), blob, new_payload)

    def delete(self, vector_id: str) -> None:
        with self._shared.writing() as conn:
            sqlite_file.delete_rows(conn, sqlite_file.rids_of(conn, self.collection_name, str(vector_id)))

    def reassign(
        self, from_user: str, to_user: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        """Give the rows of ``from_user`` whose ``source_handle`` is in ``handles`` (all when None) to
        ``to_user``, in place, in one transaction; returns the ids moved.

        Ids, vectors and every other payload field stay; the ``user_id`` column, the payload's
        ``user_id``, the keyword index's scope tokens and the turn index follow.
        """
        if from_user == to_user or (handles is not None and not handles):
            return []
        wanted = None if handles is None else frozenset(handles)
        moved: list[str] = []
        with self._shared.writing() as conn:
            rows = conn.execute(
                "SELECT rid, id, payload FROM memory_vectors WHERE collection = ? AND user_id = ?",
                (self.collection_name, from_user),
            ).fetchall()
            for rid, vector_id, raw in rows:
                payload = json.loads(raw)
                if wanted is not None and payload.get("source_handle") not in wanted:
                    continue
                payload["user_id"] = to_user
                conn.execute(
                    "UPDATE memory_vectors SET user_id = ?, payload = ? WHERE rid = ?",
                    (to_user, json.dumps(payload, default=str), rid),
                )
                sqlite_file.reindex_row(conn, self.collection_name, rid, payload)
                moved.append(vector_id)
        return moved

    def forget_scope(self, filters: Mapping[str, Any]) -> builtins.list[str]:
        """Delete every row of one scope (erasure), merge the keyword index so no deleted term stays in
        its segments, and rewrite the file so no copy of a deleted row stays anywhere in it. Returns the
        ids deleted. Refuses an empty scope (that would be everyone)."""
        where, params = self._scope_sql(filters)
        if not where:
            raise ValueError("forget_scope needs a user_id, agent_id or run_id")
        with self._shared.writing() as conn:
            rows = conn.execute(f"SELECT rid, id FROM memory_vectors WHERE {where}", params).fetchall()  # noqa: S608
            sqlite_file.delete_rows(conn, [r[0] for r in rows])
        with self._shared.writing() as conn:
            sqlite_keywords.compact(conn)
        self._shared.rewrite()  # no copy left in a page's free gap either (``SharedConnection.rewrite``)
        return [r[1] for r in rows]

    def forget_written_before(self, filters: Mapping[str, Any], cutoff: datetime) -> builtins.list[str]:
        """Delete the scope's rows written before ``cutoff`` (retention); returns their ids.

        A row whose ``created_at`` cannot be read is kept. Refuses an empty scope, like ``forget_scope``.
        """
        where, params = self._scope_sql(filters)
        if not where:
            raise ValueError("forget_written_before needs a user_id, agent_id or run_id")
        with self._shared.writing() as conn:
            sql = f"SELECT rid, id, created_at FROM memory_vectors WHERE {where}"  # noqa: S608
            rows = conn.execute(sql, params).fetchall()
            old = [
                (rid, vector_id)
                for rid, vector_id, written in rows
                if (w := written_at(written)) and w < cutoff
            ]
            sqlite_file.delete_rows(conn, [rid for rid, _ in old])
        if old:
            self.compact()
        return [vector_id for _, vector_id in old]

    def compact(self) -> None:
        """Merge the keyword index (drops deleted entries) and checkpoint the WAL into the main file."""
        with self._shared.writing() as conn:
            sqlite_keywords.compact(conn)
        self._shared.checkpoint()

    # ----- reads -------------------------------------------------------------------------------

    def _scope_sql(self, filters: Mapping[str, Any] | None) -> tuple[str, builtins.list[Any]]:
        scope = scope_of(filters)
        if not scope:
            return "", []
        clauses = ["collection = ?"] + [f"{key} = ?" for key in scope]
        return " AND ".join(clauses), [self.collection_name, *scope.values()]

    def _scope_rows(self, columns: str, filters: Mapping[str, Any] | None, what: str) -> builtins.list[Any]:
        """``columns`` of the rows of the filters' scope, in the order stored, metadata filters applied
        (the payload is read only for those: a row may then carry it as one more column)."""
        where, params = self._scope_sql(filters)
        if not where:
            log.warning("%s without a user_id/agent_id/run_id refused", what)
            return []
        extra = beyond_scope(filters)
        selected = f"{columns}, payload" if extra else columns
        with self._shared.lock:
            rows = self._db.execute(
                f"SELECT {selected} FROM memory_vectors WHERE {where} ORDER BY rid",  # noqa: S608
                params,
            ).fetchall()
        return [r for r in rows if matches(json.loads(r[-1]), extra)] if extra else rows

    def get(self, vector_id: str) -> VectorHit | None:
        with self._shared.lock:
            row = self._db.execute(
                "SELECT id, payload FROM memory_vectors WHERE collection = ? AND id = ?",
                (self.collection_name, str(vector_id)),
            ).fetchone()
        return VectorHit(id=row[0], score=None, payload=json.loads(row[1])) if row else None

    def _matrix(self, blobs: Sequence[bytes]) -> NDArray[np.float32]:
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), self.embedding_model_dims)

    def search(
        self, query: str, vectors: Vector, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> builtins.list[VectorHit]:
        """The ``top_k`` rows of the filters' scope closest to ``vectors`` (cosine, clipped to [0, 1])."""
        if top_k <= 0:
            return []
        rows = self._scope_rows("id, vector, payload", filters, "vector search")
        if not rows:
            return []
        scores = self._matrix([r[1] for r in rows]) @ unit_vector(vectors)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [
            VectorHit(
                id=rows[i][0], score=min(max(float(scores[i]), 0.0), 1.0), payload=json.loads(rows[i][2])
            )
            for i in (int(j) for j in order)
        ]

    def keyword_search(
        self, query: str, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> builtins.list[VectorHit]:
        """BM25 over the text of the filters' scope; ``score`` is ``-bm25()``, higher is better."""
        scope = scope_of(filters)
        expression = sqlite_keywords.match(self.collection_name, scope, sqlite_keywords.terms(query))
        if expression is None or top_k <= 0:
            return []
        extra = beyond_scope(filters)
        with self._shared.lock:
            rows = self._db.execute(
                "SELECT v.id, v.payload, -bm25(memory_fts, 1.0, 0.0) AS score"
                " FROM memory_fts JOIN memory_vectors AS v ON v.rid = memory_fts.rowid"
                " WHERE memory_fts MATCH ? AND v.collection = ?"
                " ORDER BY bm25(memory_fts, 1.0, 0.0) LIMIT ?",
                (expression, self.collection_name, -1 if extra else top_k),
            ).fetchall()
        hits = []
        for vector_id, raw, score in rows:
            payload = json.loads(raw)
            if all(str(payload.get(k)) == v for k, v in scope.items()) and matches(payload, extra):
                hits.append(VectorHit(id=vector_id, score=float(score), payload=payload))
        return hits[:top_k]

    def scope_signals(
        self, vectors: Vector, terms: Sequence[str], filters: Mapping[str, Any] | None
    ) -> ScopeSignals:
        """Every row of the filters' scope, oldest first, with its cosine to ``vectors`` and its BM25 score
        for ``terms`` (any of them; 0 where none matches). Nothing without a scope.

        What recall ranks by (``core.memory.ranking``). The scope's rows come from the connection's
        :class:`~core.memory.sqlite_scopes.ScopeCache` (a large scope is read from the file once and kept,
        exactly as the file holds it; with Mem0's metadata filters, from the file every time); the cosines
        are one matrix-vector product; the keyword scores come from the keyword index, limited to the
        scope's token, and only rows of the scope are kept. The lists handed out are read-only.
        """
        where, params = self._scope_sql(filters)
        if not where:
            log.warning("scope read without a user_id/agent_id/run_id refused")
            return ScopeSignals.empty()
        scope = scope_of(filters)
        dims = self.embedding_model_dims
        with self._shared.lock:
            if beyond_scope(filters):
                rows = self._scope_rows(SCOPE_COLUMNS, filters, "scope read")
                scoped = ScopeRows.read(rows, dims) if rows else ScopeRows.empty(dims)
            else:
                scoped = self._shared.scopes.rows(self._db, self.collection_name, scope, where, params, dims)
            if len(scoped) == 0:
                return ScopeSignals.empty()
            rids, scores = sqlite_keywords.score_arrays(self._db, self.collection_name, scope, terms)
        dense = scoped.cosines(unit_vector(vectors))
        keyword = np.zeros(len(scoped), dtype=np.float32)
        at = scoped.positions(rids)
        hit = (at >= 0) & (scores > 0)
        keyword[at[hit]] = scores[hit]
        return ScopeSignals(
            ids=scoped.ids, written=scoped.written, dense=dense, keyword=keyword, dated=scoped.dated
        )

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the rows ``ids`` of this collection (missing ids are left out)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            with self._shared.lock:
                rows = self._db.execute(
                    f"SELECT id, payload FROM memory_vectors WHERE collection = ? AND id IN ({marks})",  # noqa: S608
                    [self.collection_name, *chunk],
                ).fetchall()
            found.update((str(r[0]), json.loads(r[1])) for r in rows)
        return found

    def list(
        self, filters: Mapping[str, Any] | None = None, top_k: int | None = None
    ) -> builtins.list[VectorHit]:
        """The scope's rows, newest first (by ``created_at``, then by when they were stored)."""
        where, params = self._scope_sql(filters)
        if not where:
            log.warning("vector list without a user_id/agent_id/run_id refused")
            return []
        extra = beyond_scope(filters)
        limit = -1 if (top_k is None or extra) else int(top_k)
        with self._shared.lock:
            rows = self._db.execute(
                f"SELECT id, payload FROM memory_vectors WHERE {where}"  # noqa: S608
                " ORDER BY created_at DESC, rid DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        hits = [VectorHit(id=r[0], score=None, payload=json.loads(r[1])) for r in rows]
        if extra:
            hits = [h for h in hits if matches(h.payload, extra)]
        return hits if top_k is None else hits[: int(top_k)]

    def count(self, filters: Mapping[str, Any]) -> int:
        """How many rows the filters' scope holds (0 without a scope)."""
        where, params = self._scope_sql(filters)
        if not where:
            return 0
        extra = beyond_scope(filters)
        if extra:
            return len(self._scope_rows("id", filters, "count"))
        with self._shared.lock:
            sql = f"SELECT count(*) FROM memory_vectors WHERE {where}"  # noqa: S608
            (count,) = self._db.execute(sql, params).fetchone()
        return int(count)

    def covers_turns(self, user_id: str, turn_ids: Sequence[int]) -> bool:
        """True when any row of ``user_id`` was made from one of ``turn_ids`` (its payload's ``turn_ids``)."""
        wanted = [int(t) for t in turn_ids]
        if not wanted:
            return False
        marks = ", ".join("?" for _ in wanted)
        with self._shared.lock:
            sql = f"SELECT 1 FROM memory_turns WHERE collection = ? AND user_id = ? AND turn_id IN ({marks})"  # noqa: S608
            row = self._db.execute(sql, [self.collection_name, user_id, *wanted]).fetchone()
        return row is not None
