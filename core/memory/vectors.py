"""Mem0's vector store, on SQLite: one file in the data dir, partitioned by customer.

Why not Qdrant's local mode: it locks its folder to one process (the server and the CLI could not both
open it) and scores every point on a filtered search (about 200 ms at 20k points). Here every row
carries its ``user_id`` / ``agent_id`` / ``run_id`` in indexed columns; a search first selects the rows
of that one scope and only then scores them (numpy dot products over float32 blobs), so its cost
follows the customer's memory count, not the total.

- Strict scoping: a search, keyword search or list without a ``user_id``, ``agent_id`` or ``run_id``
  equality returns nothing; it never falls back to scanning everyone.
- Keyword search (Mem0's hybrid BM25 signal): an FTS5 table whose ``scope`` column holds one opaque
  token per scope key, so ``scope : "u…" AND body : (...)`` is answered from the index, then ``bm25()``.
  The text is stemmed (``porter``); a file indexed before that is re-indexed once when opened.
- Recall signals (:meth:`scope_signals`): one scope's rows in the order written, each with its cosine
  to the query and its BM25 score, for ``core.memory.ranking`` to rank.
- ``turn_ids`` from each payload go to an indexed side table: :meth:`covers_turns` is one index probe.
- The file is created 0600 (its ``-wal``/``-shm`` follow), a folder made for it 0700.
- Many processes may open the same file (WAL, ``busy_timeout``); within a process one connection is
  shared by Mem0's threads under a lock. ``secure_delete`` zeroes freed pages and :meth:`forget_scope`
  merges the FTS index, so deleted text does not linger in the file.

This class knows nothing of Mem0 beyond the shape of its ``VectorStoreBase`` interface (Mem0 is only
imported by ``core.memory.mem0_quirks``, which makes the subclass Mem0 sees).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from core.memory.filters import SCOPE_KEYS, matches, scope_of
from core.store.private_files import private_dir, private_sqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
_MAX_QUERY_TERMS = 64
_TERM = re.compile(r"\w+", re.UNICODE)

# Porter stemming (on unicode61): "painted" and "painting" meet at "paint". A file made before stemming is
# re-indexed once, when it is opened (``_Connection._migrate_fts``).
_FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"
_FTS_TABLE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(body, scope, tokenize='{_FTS_TOKENIZE}')"
)
_REINDEX_BATCH = 1000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS memory_collections (
        name TEXT PRIMARY KEY, dims INTEGER NOT NULL, distance TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS memory_vectors (
        rid INTEGER PRIMARY KEY,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        user_id TEXT, agent_id TEXT, run_id TEXT,
        created_at TEXT,
        vector BLOB NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (collection, id))""",
    "CREATE INDEX IF NOT EXISTS memory_vectors_user ON memory_vectors (collection, user_id)",
    "CREATE INDEX IF NOT EXISTS memory_vectors_agent ON memory_vectors (collection, agent_id)",
    "CREATE INDEX IF NOT EXISTS memory_vectors_run ON memory_vectors (collection, run_id)",
    """CREATE TABLE IF NOT EXISTS memory_turns (
        collection TEXT NOT NULL, user_id TEXT NOT NULL, turn_id INTEGER NOT NULL, rid INTEGER NOT NULL,
        PRIMARY KEY (collection, user_id, turn_id, rid)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS memory_turns_rid ON memory_turns (rid)",
    _FTS_TABLE,
)


@dataclass(frozen=True, slots=True)
class ScopeSignals:
    """Every row of one scope in the order written, with what recall ranks them by (aligned lists).

    ``dense``: cosine to the query vector; ``keyword``: BM25 (FTS5, higher is better) for the query's
    terms, 0 where no term matches.
    """

    ids: list[str]
    written: list[datetime | None]
    dense: NDArray[np.float32]
    keyword: NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One row as Mem0 reads it: ``id``, ``score`` (higher is closer; None for plain reads), ``payload``."""

    id: str
    score: float | None
    payload: dict[str, Any] = field(default_factory=dict)


def _scope_token(collection: str, key: str, value: str) -> str:
    digest = hashlib.sha256(f"{collection}\x1f{key}\x1f{value}".encode()).hexdigest()[:32]
    return f"{key[0]}{digest}"


def _scope_tokens(collection: str, payload: Mapping[str, Any]) -> str:
    return " ".join(
        _scope_token(collection, key, str(payload[key]))
        for key in SCOPE_KEYS
        if payload.get(key) not in (None, "")
    )


def _body(payload: Mapping[str, Any]) -> str:
    text = payload.get("text_lemmatized") or payload.get("data") or ""
    return text if isinstance(text, str) else str(text)


def _turn_ids(payload: Mapping[str, Any]) -> list[int]:
    raw = payload.get("turn_ids")
    if not isinstance(raw, list):
        return []
    return [int(t) for t in raw if isinstance(t, int) and not isinstance(t, bool)]


def _fts_terms(query: str) -> list[str]:
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(query)))
    return terms[:_MAX_QUERY_TERMS]


def _written(value: Any) -> datetime | None:
    """A row's ``created_at`` (ISO 8601, as Mem0 writes it) as an aware datetime; None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class _Connection:
    """One SQLite connection shared by the collections of a store, used by Mem0's threads under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        private_dir(path.parent, tighten=False)
        private_sqlite(path)  # 0600 before SQLite opens it: its -wal and -shm get the same mode
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
        self._conn: sqlite3.Connection | None = conn
        self._depth = 0  # nesting of ``writing`` in the thread that holds the lock
        with self.writing() as db:
            self._migrate_fts(db)
            for statement in _SCHEMA:
                db.execute(statement)

    @staticmethod
    def _migrate_fts(db: sqlite3.Connection) -> None:
        """Rebuild a keyword index made with another tokenizer (before stemming) from the stored rows."""
        row = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'memory_fts'"
        ).fetchone()
        if row is None or _FTS_TOKENIZE in str(row[0]):
            return
        db.execute("DROP TABLE memory_fts")
        db.execute(_FTS_TABLE)
        last = count = 0
        while True:
            batch = db.execute(
                "SELECT rid, collection, payload FROM memory_vectors WHERE rid > ? ORDER BY rid LIMIT ?",
                (last, _REINDEX_BATCH),
            ).fetchall()
            if not batch:
                break
            for rid, collection, raw in batch:
                payload = json.loads(raw)
                db.execute(
                    "INSERT INTO memory_fts (rowid, body, scope) VALUES (?, ?, ?)",
                    (rid, _body(payload), _scope_tokens(collection, payload)),
                )
            last = batch[-1][0]
            count += len(batch)
        log.info("vector store: keyword index rebuilt with stemming (%d rows)", count)

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the vector store is closed")
        return self._conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``BEGIN IMMEDIATE`` so another process waits instead of failing mid-way.

        Re-entrant: inside another ``writing`` of the same thread (the lock is an ``RLock``) it joins the
        outer transaction, which commits or rolls back the whole.
        """
        with self.lock:
            db = self.db
            if self._depth:
                self._depth += 1
                try:
                    yield db
                finally:
                    self._depth -= 1
                return
            db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield db
            except BaseException:
                self._depth = 0
                db.execute("ROLLBACK")
                raise
            self._depth = 0
            db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SQLiteVectorStore:
    """A Mem0 vector store in one SQLite file; several collections (Mem0's memories and entities) share it."""

    def __init__(
        self,
        path: Path | str,
        *,
        collection_name: str = "threadline",
        embedding_model_dims: int = 384,
    ) -> None:
        self._init(_Connection(Path(path)), collection_name, embedding_model_dims)

    def _init(self, shared: _Connection, collection_name: str, embedding_model_dims: int) -> None:
        self._shared = shared
        self.path = shared.path
        self.collection_name = collection_name
        self.embedding_model_dims = embedding_model_dims
        self.create_col(collection_name, embedding_model_dims, "cosine")

    def with_collection(self, collection_name: str) -> Self:
        """Another collection in the same file, on the same connection (closing one closes both)."""
        other = type(self).__new__(type(self))
        other._init(self._shared, collection_name, self.embedding_model_dims)
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection_name!r})"

    @property
    def _lock(self) -> threading.RLock:
        return self._shared.lock

    @property
    def _db(self) -> sqlite3.Connection:
        return self._shared.db

    def _writing(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._shared.writing()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction around several calls, on every collection of this file (they share it)."""
        return self._shared.writing()

    def close(self) -> None:
        self._shared.close()

    # ----- collections -------------------------------------------------------------------------

    def create_col(self, name: str, vector_size: int, distance: str = "cosine") -> None:
        with self._writing() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO memory_collections (name, dims, distance) VALUES (?, ?, ?)",
                (name, int(vector_size), str(distance)),
            )

    def list_cols(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT name FROM memory_collections ORDER BY name")]

    def delete_col(self) -> None:
        with self._writing() as conn:
            rids = [
                r[0]
                for r in conn.execute(
                    "SELECT rid FROM memory_vectors WHERE collection = ?", (self.collection_name,)
                )
            ]
            self._delete_rids(conn, rids)
            conn.execute("DELETE FROM memory_collections WHERE name = ?", (self.collection_name,))

    def col_info(self) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute(
                "SELECT dims, distance FROM memory_collections WHERE name = ?", (self.collection_name,)
            ).fetchone()
            (count,) = self._db.execute(
                "SELECT count(*) FROM memory_vectors WHERE collection = ?", (self.collection_name,)
            ).fetchone()
        dims, distance = row if row else (self.embedding_model_dims, "cosine")
        return {"name": self.collection_name, "dims": dims, "distance": distance, "count": count}

    def reset(self) -> None:
        self.delete_col()
        self.create_col(self.collection_name, self.embedding_model_dims, "cosine")

    # ----- writes ------------------------------------------------------------------------------

    def _as_blob(self, vector: Any) -> bytes:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != self.embedding_model_dims:
            raise ValueError(
                f"vector has {array.shape[0]} dimensions, the collection {self.embedding_model_dims}"
            )
        norm = float(np.linalg.norm(array))
        if norm > 0:
            array = array / norm
        return array.astype(np.float32).tobytes()

    def _index_row(self, conn: sqlite3.Connection, rid: int, payload: Mapping[str, Any]) -> None:
        conn.execute(
            "INSERT INTO memory_fts (rowid, body, scope) VALUES (?, ?, ?)",
            (rid, _body(payload), _scope_tokens(self.collection_name, payload)),
        )
        user_id = payload.get("user_id")
        if user_id not in (None, ""):
            conn.executemany(
                "INSERT OR IGNORE INTO memory_turns (collection, user_id, turn_id, rid) VALUES (?, ?, ?, ?)",
                [(self.collection_name, str(user_id), turn, rid) for turn in _turn_ids(payload)],
            )

    @staticmethod
    def _unindex_rids(conn: sqlite3.Connection, rids: Sequence[int]) -> None:
        for rid in rids:
            conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (rid,))
            conn.execute("DELETE FROM memory_turns WHERE rid = ?", (rid,))

    def _delete_rids(self, conn: sqlite3.Connection, rids: Sequence[int]) -> None:
        self._unindex_rids(conn, rids)
        conn.executemany("DELETE FROM memory_vectors WHERE rid = ?", [(rid,) for rid in rids])

    def _insert_one(
        self, conn: sqlite3.Connection, vector_id: str, blob: bytes, payload: Mapping[str, Any]
    ) -> None:
        old = conn.execute(
            "SELECT rid FROM memory_vectors WHERE collection = ? AND id = ?",
            (self.collection_name, vector_id),
        ).fetchone()
        if old is not None:
            self._delete_rids(conn, [old[0]])
        cursor = conn.execute(
            "INSERT INTO memory_vectors"
            " (collection, id, user_id, agent_id, run_id, created_at, vector, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.collection_name,
                vector_id,
                *(None if payload.get(k) in (None, "") else str(payload[k]) for k in SCOPE_KEYS),
                payload.get("created_at"),
                blob,
                json.dumps(payload, default=str),
            ),
        )
        rid = cursor.lastrowid
        if rid is None:  # pragma: no cover - sqlite always sets it for a rowid table
            raise sqlite3.DatabaseError("insert returned no rowid")
        self._index_row(conn, rid, payload)

    def insert(
        self,
        vectors: Sequence[Any],
        payloads: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Insert (or replace, by id) rows. ``ids`` default to new UUIDs, ``payloads`` to ``{}``."""
        count = len(vectors)
        ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in range(count)]
        payloads = list(payloads) if payloads is not None else [{} for _ in range(count)]
        if not len(ids) == len(payloads) == count:
            raise ValueError("vectors, payloads and ids differ in length")
        blobs = [self._as_blob(v) for v in vectors]
        with self._writing() as conn:
            for vector_id, blob, payload in zip(ids, blobs, payloads, strict=True):
                self._insert_one(conn, str(vector_id), blob, payload)

    def update(self, vector_id: str, vector: Any = None, payload: Mapping[str, Any] | None = None) -> None:
        with self._writing() as conn:
            row = conn.execute(
                "SELECT rid, vector, payload FROM memory_vectors WHERE collection = ? AND id = ?",
                (self.collection_name, str(vector_id)),
            ).fetchone()
            if row is None:
                raise KeyError(f"no vector {vector_id}")
            blob = self._as_blob(vector) if vector is not None else row[1]
            new_payload = dict(payload) if payload is not None else json.loads(row[2])
            self._insert_one(conn, str(vector_id), blob, new_payload)

    def delete(self, vector_id: str) -> None:
        with self._writing() as conn:
            rids = [
                r[0]
                for r in conn.execute(
                    "SELECT rid FROM memory_vectors WHERE collection = ? AND id = ?",
                    (self.collection_name, str(vector_id)),
                )
            ]
            self._delete_rids(conn, rids)

    def reassign(self, from_user: str, to_user: str, *, where: Mapping[str, Any] | None = None) -> list[str]:
        """Give the rows of ``from_user`` that match ``where`` (all when None) to ``to_user``, in place.

        Ids, vectors and every other payload field stay; the ``user_id`` column, the payload's
        ``user_id``, the FTS scope tokens and the turn index follow, all in one transaction.
        Returns the ids moved (none when the users are the same).
        """
        if from_user == to_user:
            return []
        moved: list[str] = []
        with self._writing() as conn:
            rows = conn.execute(
                "SELECT rid, id, payload FROM memory_vectors WHERE collection = ? AND user_id = ?",
                (self.collection_name, from_user),
            ).fetchall()
            for rid, vector_id, raw in rows:
                payload = json.loads(raw)
                if not matches(payload, where):
                    continue
                payload["user_id"] = to_user
                conn.execute(
                    "UPDATE memory_vectors SET user_id = ?, payload = ? WHERE rid = ?",
                    (to_user, json.dumps(payload, default=str), rid),
                )
                self._unindex_rids(conn, [rid])
                self._index_row(conn, rid, payload)
                moved.append(vector_id)
        return moved

    def forget_scope(self, filters: Mapping[str, Any]) -> list[str]:
        """Delete every row of one scope, then merge the FTS index so no deleted term stays in the file.

        Returns the ids deleted. Refuses an empty scope (that would be everyone).
        """
        where, params = self._scope_sql(filters)
        if not where:
            raise ValueError("forget_scope needs a user_id, agent_id or run_id")
        with self._writing() as conn:
            rows = conn.execute(f"SELECT rid, id FROM memory_vectors WHERE {where}", params).fetchall()  # noqa: S608
            self._delete_rids(conn, [r[0] for r in rows])
        self.compact()
        return [r[1] for r in rows]

    def forget_written_before(self, filters: Mapping[str, Any], cutoff: datetime) -> list[str]:
        """Delete the scope's rows written before ``cutoff`` (retention); returns their ids.

        A row whose ``created_at`` cannot be read is kept. Refuses an empty scope, like ``forget_scope``.
        """
        where, params = self._scope_sql(filters)
        if not where:
            raise ValueError("forget_written_before needs a user_id, agent_id or run_id")
        with self._writing() as conn:
            sql = f"SELECT rid, id, created_at FROM memory_vectors WHERE {where}"  # noqa: S608
            rows = conn.execute(sql, params).fetchall()
            old = [
                (rid, vector_id)
                for rid, vector_id, written in rows
                if (w := _written(written)) and w < cutoff
            ]
            self._delete_rids(conn, [rid for rid, _ in old])
        if old:
            self.compact()
        return [vector_id for _, vector_id in old]

    def compact(self) -> None:
        """Merge the FTS index (drops deleted entries) and checkpoint the WAL into the main file."""
        with self._writing() as conn:
            conn.execute("INSERT INTO memory_fts (memory_fts) VALUES ('optimize')")
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ----- reads -------------------------------------------------------------------------------

    def _scope_sql(self, filters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        scope = scope_of(filters)
        if not scope:
            return "", []
        clauses = ["collection = ?"] + [f"{key} = ?" for key in scope]
        return " AND ".join(clauses), [self.collection_name, *scope.values()]

    @staticmethod
    def _extra_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
        scope = scope_of(filters)
        return {k: v for k, v in (filters or {}).items() if k not in scope}

    def get(self, vector_id: str) -> VectorHit | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, payload FROM memory_vectors WHERE collection = ? AND id = ?",
                (self.collection_name, str(vector_id)),
            ).fetchone()
        return VectorHit(id=row[0], score=None, payload=json.loads(row[1])) if row else None

    def get_vector(self, vector_id: str) -> NDArray[np.float32] | None:
        """The stored (unit-length) vector of one row."""
        with self._lock:
            row = self._db.execute(
                "SELECT vector FROM memory_vectors WHERE collection = ? AND id = ?",
                (self.collection_name, str(vector_id)),
            ).fetchone()
        return np.frombuffer(row[0], dtype=np.float32).copy() if row else None

    def search(
        self, query: str, vectors: Any, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> list[VectorHit]:
        """The ``top_k`` rows of the filters' scope closest to ``vectors`` (cosine, clipped to [0, 1])."""
        where, params = self._scope_sql(filters)
        if not where or top_k <= 0:
            if not where:
                log.warning("vector search without a user_id/agent_id/run_id refused")
            return []
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, vector, payload FROM memory_vectors WHERE {where}",  # noqa: S608
                params,
            ).fetchall()
        extra = self._extra_filters(filters)
        candidates: list[tuple[str, bytes, dict[str, Any] | str]] = [(r[0], r[1], r[2]) for r in rows]
        if extra:
            parsed = [(vid, blob, json.loads(raw)) for vid, blob, raw in rows]
            candidates = [(vid, blob, payload) for vid, blob, payload in parsed if matches(payload, extra)]
        if not candidates:
            return []
        matrix: NDArray[np.float32] = np.frombuffer(
            b"".join(c[1] for c in candidates), dtype=np.float32
        ).reshape(len(candidates), self.embedding_model_dims)
        query_vector = np.asarray(vectors, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query_vector))
        if norm > 0:
            query_vector = query_vector / norm
        scores = matrix @ query_vector
        order = np.argsort(-scores, kind="stable")[:top_k]
        hits = []
        for i in (int(j) for j in order):
            vector_id, _, payload = candidates[i]
            hits.append(
                VectorHit(
                    id=vector_id,
                    score=min(max(float(scores[i]), 0.0), 1.0),
                    payload=json.loads(payload) if isinstance(payload, str) else payload,
                )
            )
        return hits

    def keyword_search(
        self, query: str, top_k: int = 5, filters: Mapping[str, Any] | None = None
    ) -> list[VectorHit]:
        """BM25 (FTS5) over the text of the filters' scope; ``score`` is ``-bm25()``, higher is better."""
        scope = scope_of(filters)
        terms = _fts_terms(query)
        if not scope or not terms or top_k <= 0:
            return []
        scope_match = " AND ".join(f'"{_scope_token(self.collection_name, k, v)}"' for k, v in scope.items())
        body_match = " OR ".join(f'"{t}"' for t in terms)
        expression = f"scope : ({scope_match}) AND body : ({body_match})"
        extra = self._extra_filters(filters)
        limit = -1 if extra else top_k
        with self._lock:
            rows = self._db.execute(
                "SELECT v.id, v.payload, -bm25(memory_fts, 1.0, 0.0) AS score"
                " FROM memory_fts JOIN memory_vectors AS v ON v.rid = memory_fts.rowid"
                " WHERE memory_fts MATCH ? AND v.collection = ?"
                " ORDER BY bm25(memory_fts, 1.0, 0.0) LIMIT ?",
                (expression, self.collection_name, limit),
            ).fetchall()
        hits = []
        for vector_id, raw, score in rows:
            payload = json.loads(raw)
            if all(str(payload.get(k)) == v for k, v in scope.items()) and matches(payload, extra):
                hits.append(VectorHit(id=vector_id, score=float(score), payload=payload))
        return hits[:top_k]

    def scope_signals(
        self, vectors: Any, terms: Sequence[str], filters: Mapping[str, Any] | None
    ) -> ScopeSignals:
        """Every row of the filters' scope, oldest first, with its cosine to ``vectors`` and its BM25 score
        for ``terms`` (any of them; 0 where none matches). Nothing without a scope.

        What recall ranks by (``core.memory.ranking``). The rows are read once, from the scope's index;
        the keyword scores come from the FTS index, limited to the scope's token, and only rows of the
        scope read here are kept.
        """
        empty = ScopeSignals(
            ids=[], written=[], dense=np.zeros(0, np.float32), keyword=np.zeros(0, np.float32)
        )
        where, params = self._scope_sql(filters)
        if not where:
            log.warning("scope read without a user_id/agent_id/run_id refused")
            return empty
        extra = self._extra_filters(filters)
        columns = "rid, id, created_at, vector" + (", payload" if extra else "")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {columns} FROM memory_vectors WHERE {where} ORDER BY rid",  # noqa: S608
                params,
            ).fetchall()
        if extra:
            rows = [r for r in rows if matches(json.loads(r[4]), extra)]
        if not rows:
            return empty
        written = [_written(r[2]) for r in rows]
        order = sorted(
            range(len(rows)),
            key=lambda i: (w.timestamp() if (w := written[i]) is not None else float("-inf"), rows[i][0]),
        )
        rows = [rows[i] for i in order]
        written = [written[i] for i in order]
        matrix: NDArray[np.float32] = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(
            len(rows), self.embedding_model_dims
        )
        query_vector = np.asarray(vectors, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query_vector))
        if norm > 0:
            query_vector = query_vector / norm
        dense: NDArray[np.float32] = (matrix @ query_vector).astype(np.float32)
        keyword = np.zeros(len(rows), dtype=np.float32)
        position = {int(r[0]): i for i, r in enumerate(rows)}
        for rid, score in self._keyword_scores(terms, scope_of(filters)):
            i = position.get(rid)
            if i is not None and score > 0:
                keyword[i] = score
        return ScopeSignals(ids=[str(r[1]) for r in rows], written=written, dense=dense, keyword=keyword)

    def _keyword_scores(self, terms: Sequence[str], scope: Mapping[str, str]) -> list[tuple[int, float]]:
        """``(rid, -bm25)`` of every row of ``scope`` whose text holds any of ``terms``."""
        words = list(dict.fromkeys(t for term in terms for t in _fts_terms(term)))[:_MAX_QUERY_TERMS]
        if not scope or not words:
            return []
        scope_match = " AND ".join(f'"{_scope_token(self.collection_name, k, v)}"' for k, v in scope.items())
        body_match = " OR ".join(f'"{w}"' for w in words)
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, -bm25(memory_fts, 1.0, 0.0) FROM memory_fts WHERE memory_fts MATCH ?",
                (f"scope : ({scope_match}) AND body : ({body_match})",),
            ).fetchall()
        return [(int(rid), float(score)) for rid, score in rows]

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of the rows ``ids`` of this collection (missing ids are left out)."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            with self._lock:
                rows = self._db.execute(
                    f"SELECT id, payload FROM memory_vectors WHERE collection = ? AND id IN ({marks})",  # noqa: S608
                    [self.collection_name, *chunk],
                ).fetchall()
            found.update((str(r[0]), json.loads(r[1])) for r in rows)
        return found

    def list(
        self, filters: Mapping[str, Any] | None = None, top_k: int | None = None
    ) -> list[list[VectorHit]]:
        """The scope's rows, newest first, wrapped in one more list as Mem0 expects (``list(...)[0]``)."""
        where, params = self._scope_sql(filters)
        if not where:
            log.warning("vector list without a user_id/agent_id/run_id refused")
            return [[]]
        extra = self._extra_filters(filters)
        limit = -1 if (top_k is None or extra) else int(top_k)
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, payload FROM memory_vectors WHERE {where}"  # noqa: S608
                " ORDER BY created_at DESC, rid DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        hits = [VectorHit(id=r[0], score=None, payload=json.loads(r[1])) for r in rows]
        if extra:
            hits = [h for h in hits if matches(h.payload, extra)]
        if top_k is not None:
            hits = hits[: int(top_k)]
        return [hits]

    def count(self, filters: Mapping[str, Any]) -> int:
        """How many rows the filters' scope holds (0 without a scope)."""
        where, params = self._scope_sql(filters)
        if not where:
            return 0
        with self._lock:
            sql = f"SELECT count(*) FROM memory_vectors WHERE {where}"  # noqa: S608
            (count,) = self._db.execute(sql, params).fetchone()
        return int(count)

    def covers_turns(self, user_id: str, turn_ids: Sequence[int]) -> bool:
        """True when any row of ``user_id`` was made from one of ``turn_ids`` (its payload's ``turn_ids``)."""
        wanted = [int(t) for t in turn_ids]
        if not wanted:
            return False
        marks = ", ".join("?" for _ in wanted)
        with self._lock:
            sql = f"SELECT 1 FROM memory_turns WHERE collection = ? AND user_id = ? AND turn_id IN ({marks})"  # noqa: S608
            row = self._db.execute(sql, [self.collection_name, user_id, *wanted]).fetchone()
        return row is not None
