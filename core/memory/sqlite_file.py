"""The SQLite file under the embedded memory index: its schema, its one shared connection, transactions.

- ``memory_vectors``: one row per memory (``collection``, ``id``, the scope columns ``user_id`` /
  ``agent_id`` / ``run_id`` indexed, ``created_at``, a float32 unit vector, the JSON payload).
- ``memory_turns``: the ``turn_ids`` of each payload, indexed per user, so a provenance lookup is one probe.
- ``memory_fts``: the keyword index (``core.memory.sqlite_keywords``).
- The file is created 0600 (its ``-wal``/``-shm`` follow), a folder made for it 0700.
- Many processes may open the same file (WAL, ``busy_timeout``); within a process one connection is
  shared by Mem0's threads under a lock. ``secure_delete`` zeroes the pages of deleted rows.
- The connection keeps the large scopes recall reads in memory (``core.memory.sqlite_scopes``), told of
  its own writes by TEMP triggers and of other processes' by ``PRAGMA data_version``.

A row spans the three tables: :func:`write_row`, :func:`reindex_row` and :func:`delete_rows` keep them
consistent (call them inside :meth:`SharedConnection.writing`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.memory import sqlite_keywords
from core.memory.filters import SCOPE_KEYS
from core.memory.sqlite_scopes import TEMP_SCHEMA, ScopeCache
from core.memory.time_words import MENTIONS_TIME, says_when, with_time_flag
from core.store.private_files import private_dir, private_sqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
# how long opening the file waits for another process's write transaction: the one-time upgrades below
# (``_upgrade``) hold it for as long as they run, about 9 s per 100,000 memories, past the busy timeout
OPEN_BUSY_TIMEOUT_MS = 120_000
# The file's user_version counts the one-time upgrades of its rows that are done, in order (``_upgrade``):
# 1 the time flags of the English rule, 2 since it reads five more languages, 3 since French "hier" needs
# a French text and English month abbreviations a date (each row's flag set as the rule says now), 4 the
# keyword index filed under ``core.memory.lexemes`` (stems in each text's language, instead of FTS5's
# English ``porter``). A file behind runs the upgrades it has not had, once, when opened.
_TIME_FLAGGED = 3
_LEXEMES_FILED = 4
_BACKFILL_BATCH = 500

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
    sqlite_keywords.TABLE,
)


class SharedConnection:
    """One SQLite connection shared by the collections of a file, used by Mem0's threads under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        private_dir(path.parent, tighten=False)
        private_sqlite(path)  # 0600 before SQLite opens it: its -wal and -shm get the same mode
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={OPEN_BUSY_TIMEOUT_MS}")  # see OPEN_BUSY_TIMEOUT_MS
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
        self._conn: sqlite3.Connection | None = conn
        self._depth = 0  # nesting of ``writing`` in the thread that holds the lock
        opening = time.monotonic()
        with self.writing() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            _upgrade(db)
        waited = time.monotonic() - opening
        if waited * 1000 > BUSY_TIMEOUT_MS:
            log.info(
                "memory index opened after %.1f s (another process held the file, or it was upgraded)", waited
            )
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        for statement in TEMP_SCHEMA:  # this connection's own: other connections do not see them
            conn.execute(statement)
        self.scopes = ScopeCache()

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

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it (nothing deleted lingers in the log). A reader
        of another process on an older snapshot is waited for (the busy timeout); one still there after
        it leaves the rest to the next checkpoint."""
        with self.lock:
            (busy, _, _) = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("memory index: the WAL checkpoint stayed busy; the next checkpoint completes it")

    def rewrite(self) -> None:
        """Rewrite the file (``VACUUM``), then checkpoint. ``secure_delete`` zeroes a deleted row, but not
        the copies SQLite leaves in a page's free gap when it moves rows between pages (rebalancing after a
        delete or a shrinking update): only a rewrite drops those. It holds the file's write lock while it
        runs: the whole file is copied, about 0.2 s for 20,000 memories (47 MB)."""
        with self.lock:
            self.db.execute("VACUUM")
        self.checkpoint()

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self.scopes.clear()


# ----- one row across the tables ------------------------------------------------------------------


def _turn_ids(payload: Mapping[str, Any]) -> list[int]:
    raw = payload.get("turn_ids")
    if not isinstance(raw, list):
        return []
    return [int(t) for t in raw if isinstance(t, int) and not isinstance(t, bool)]


def _index_row(conn: sqlite3.Connection, collection: str, rid: int, payload: Mapping[str, Any]) -> None:
    sqlite_keywords.index(conn, collection, rid, payload)
    user_id = payload.get("user_id")
    if user_id not in (None, ""):
        conn.executemany(
            "INSERT OR IGNORE INTO memory_turns (collection, user_id, turn_id, rid) VALUES (?, ?, ?, ?)",
            [(collection, str(user_id), turn, rid) for turn in _turn_ids(payload)],
        )


def _unindex_row(conn: sqlite3.Connection, rid: int) -> None:
    sqlite_keywords.unindex(conn, rid)
    conn.execute("DELETE FROM memory_turns WHERE rid = ?", (rid,))


def rids_of(conn: sqlite3.Connection, collection: str, vector_id: str) -> list[int]:
    rows = conn.execute(
        "SELECT rid FROM memory_vectors WHERE collection = ? AND id = ?", (collection, vector_id)
    )
    return [r[0] for r in rows]


def delete_rows(conn: sqlite3.Connection, rids: Sequence[int]) -> None:
    """Delete rows and their index entries (keyword, turns)."""
    for rid in rids:
        _unindex_row(conn, rid)
    conn.executemany("DELETE FROM memory_vectors WHERE rid = ?", [(rid,) for rid in rids])


def _upgrade(db: sqlite3.Connection) -> None:
    """Run the one-time upgrades the file has not had (``PRAGMA user_version`` says which it has), in
    order, in the caller's transaction."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if int(version) < _TIME_FLAGGED:
        _flag_times(db)
        db.execute(f"PRAGMA user_version = {_TIME_FLAGGED}")
    if int(version) < _LEXEMES_FILED or not sqlite_keywords.current(db):  # or a keyword table of another make
        sqlite_keywords.refile(db)
        db.execute(f"PRAGMA user_version = {max(int(version), _LEXEMES_FILED)}")


def _flag_times(db: sqlite3.Connection) -> None:
    """Give every row the time flag the rule of ``time_words`` gives its text now (rows stored before the
    flag, or flagged under an earlier rule, which also flagged some texts the rule no longer does)."""
    last = flagged = unflagged = 0
    while True:
        batch = db.execute(
            "SELECT rid, json_extract(payload, '$.data'), json_extract(payload, ?) IS 1 FROM memory_vectors"
            " WHERE rid > ? ORDER BY rid LIMIT ?",
            (f"$.{MENTIONS_TIME}", last, _BACKFILL_BATCH),
        ).fetchall()
        if not batch:
            break
        rule = [(int(rid), was == 1, isinstance(text, str) and says_when(text)) for rid, text, was in batch]
        dated = [rid for rid, was, now in rule if now and not was]
        undated = [rid for rid, was, now in rule if was and not now]
        db.executemany(
            "UPDATE memory_vectors SET payload = json_set(payload, ?, json('true')) WHERE rid = ?",
            [(f"$.{MENTIONS_TIME}", rid) for rid in dated],
        )
        db.executemany(
            "UPDATE memory_vectors SET payload = json_remove(payload, ?) WHERE rid = ?",
            [(f"$.{MENTIONS_TIME}", rid) for rid in undated],
        )
        flagged, unflagged = flagged + len(dated), unflagged + len(undated)
        last = int(batch[-1][0])
    if flagged or unflagged:
        log.info("vector store: %d memories flagged as saying when, %d no longer", flagged, unflagged)


def write_row(
    conn: sqlite3.Connection, collection: str, vector_id: str, blob: bytes, payload: Mapping[str, Any]
) -> None:
    """Store one row (replacing the row of the same id) with its index entries; the payload gets whether
    its text says when (``time_words.with_time_flag``)."""
    payload = with_time_flag(payload)
    delete_rows(conn, rids_of(conn, collection, vector_id))
    cursor = conn.execute(
        "INSERT INTO memory_vectors"
        " (collection, id, user_id, agent_id, run_id, created_at, vector, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            collection,
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
    _index_row(conn, collection, rid, payload)


def reindex_row(conn: sqlite3.Connection, collection: str, rid: int, payload: Mapping[str, Any]) -> None:
    """Rebuild a row's index entries from its (changed) payload, e.g. after a change of scope."""
    _unindex_row(conn, rid)
    _index_row(conn, collection, rid, payload)
