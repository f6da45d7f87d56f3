"""The keyword side of the SQLite memory index: an FTS5 table scored by BM25, partitioned by scope.

Every row of ``memory_vectors`` has one row in ``memory_fts`` (same rowid): in ``body``, the lexemes of
its text (``core.memory.lexemes``: each word stemmed in the text's language, accents folded) and, in
``scope``, one opaque token per scope key (``user_id`` / ``agent_id`` / ``run_id``, hashed with the
collection), so ``scope : "u…" AND body : (...)`` is answered from the index before ``bm25()`` scores it.

- The lexemes are made in Python, as the PostgreSQL index makes them, so FTS5 only splits them at spaces
  (``unicode61`` with combining marks as part of a word, nothing folded again): "Rechnungen" and
  "Rechnung" meet at "rechnung", "painted" and "painting" at "paint". A file filed under older rules
  (FTS5's English ``porter`` before 2026-12-07) is filed again once, when it is opened (:func:`refile`).
- A query's lexemes are quoted one by one, so FTS5 syntax in a message (``OR``, ``NEAR``, ``*``, quotes)
  is searched as words, never run as an expression.
- Deleting a row deletes its index entry; ``compact`` (``'optimize'``) merges the index so deleted terms
  do not stay in the file's b-tree segments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.memory import lexemes
from core.memory.filters import SCOPE_KEYS

log = logging.getLogger(__name__)

MAX_QUERY_TERMS = 64
_TERM = re.compile(r"\w+", re.UNICODE)
_REINDEX_BATCH = 1000

# the lexemes are cut and folded already: FTS5 splits them at spaces and keeps a word's combining marks
TOKENIZE = "unicode61 remove_diacritics 0 categories 'L* N* Co M*'"
TABLE = f'CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(body, scope, tokenize="{TOKENIZE}")'


def scope_token(collection: str, key: str, value: str) -> str:
    digest = hashlib.sha256(f"{collection}\x1f{key}\x1f{value}".encode()).hexdigest()[:32]
    return f"{key[0]}{digest}"


def scope_tokens(collection: str, payload: Mapping[str, Any]) -> str:
    return " ".join(
        scope_token(collection, key, str(payload[key]))
        for key in SCOPE_KEYS
        if payload.get(key) not in (None, "")
    )


def body(payload: Mapping[str, Any]) -> str:
    """The text a row is found by: Mem0's lemmatised text when it wrote one, else the memory itself."""
    text = payload.get("text_lemmatized") or payload.get("data") or ""
    return text if isinstance(text, str) else str(text)


def terms(query: str) -> list[str]:
    """The query's words, lower-cased, de-duplicated, at most ``MAX_QUERY_TERMS``."""
    return list(dict.fromkeys(t.lower() for t in _TERM.findall(query)))[:MAX_QUERY_TERMS]


def index(conn: sqlite3.Connection, collection: str, rid: int, payload: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO memory_fts (rowid, body, scope) VALUES (?, ?, ?)",
        (rid, lexemes.index_text(body(payload)), scope_tokens(collection, payload)),
    )


def unindex(conn: sqlite3.Connection, rid: int) -> None:
    conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (rid,))


def match(collection: str, scope: Mapping[str, str], query: Sequence[str]) -> str | None:
    """The FTS5 expression for the lexemes of the words ``query`` (any of them, ``lexemes.of_query``)
    within ``scope``; None when either is empty."""
    found = lexemes.of_query(query)
    if not scope or not found:
        return None
    scope_match = " AND ".join(f'"{scope_token(collection, k, v)}"' for k, v in scope.items())
    body_match = " OR ".join('"' + lexeme.replace('"', '""') + '"' for lexeme in found)
    return f"scope : ({scope_match}) AND body : ({body_match})"


def scores(
    db: sqlite3.Connection, collection: str, scope: Mapping[str, str], words: Sequence[str]
) -> list[tuple[int, float]]:
    """``(rid, -bm25)`` of every row of ``scope`` whose text holds a lexeme of ``words`` (each one split)."""
    expression = match(collection, scope, words)
    if expression is None:
        return []
    rows = db.execute(
        "SELECT rowid, -bm25(memory_fts, 1.0, 0.0) FROM memory_fts WHERE memory_fts MATCH ?", (expression,)
    ).fetchall()
    return [(int(rid), float(score)) for rid, score in rows]


def score_arrays(
    db: sqlite3.Connection, collection: str, scope: Mapping[str, str], words: Sequence[str]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """:func:`scores` as two aligned arrays: the rowids and their ``-bm25``."""
    found = scores(db, collection, scope, words)
    rids = np.fromiter((rid for rid, _ in found), dtype=np.int64, count=len(found))
    values = np.fromiter((score for _, score in found), dtype=np.float64, count=len(found))
    return rids, values


def compact(conn: sqlite3.Connection) -> None:
    """Merge the index: entries of deleted rows are dropped from its segments, not just marked."""
    conn.execute("INSERT INTO memory_fts (memory_fts) VALUES ('optimize')")


def current(db: sqlite3.Connection) -> bool:
    """Whether the file's keyword table is the one :data:`TABLE` makes (not one of another tokenizer)."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'memory_fts'").fetchone()
    return row is not None and f'tokenize="{TOKENIZE}"' in str(row[0])


def refile(db: sqlite3.Connection) -> None:
    """File every stored row again under the lexemes of ``core.memory.lexemes`` (an index made with
    another tokenizer, FTS5's ``porter`` before, or under older rules): the table is made again and filled
    from the rows' payloads, in one transaction with the caller's."""
    db.execute("DROP TABLE IF EXISTS memory_fts")
    db.execute(TABLE)
    last = count = 0
    while True:
        batch = db.execute(
            "SELECT rid, collection, payload FROM memory_vectors WHERE rid > ? ORDER BY rid LIMIT ?",
            (last, _REINDEX_BATCH),
        ).fetchall()
        if not batch:
            break
        for rid, collection, raw in batch:
            index(db, collection, rid, json.loads(raw))
        last = batch[-1][0]
        count += len(batch)
    if count:
        log.info("vector store: keyword index filed again (lexemes v%d, %d rows)", lexemes.VERSION, count)
