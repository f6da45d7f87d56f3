"""The keyword side of the PostgreSQL memory index: a ``tsvector`` per row finds the candidates (GIN), and
BM25 is computed here, in numpy, as FTS5's ``bm25()`` computes it for the SQLite index.

- Words: a text and a query are cut into runs of letters and digits (NFC first) before PostgreSQL parses
  them, as FTS5's ``unicode61`` cuts them, so PostgreSQL's parser never makes one token of an email, a
  URL, a path or a decimal that the words of a query could not match.
- Stemming: the ``memory_index_text`` configuration (``core.memory.pg_schema``): English Snowball ("painted"
  and "painting" meet at "paint"), no stop words (FTS5 indexes every word too; ``core.memory.ranking``
  drops them from queries), accents folded where ``unaccent`` is installed.
- A query's words become lexemes through PostgreSQL's own ``to_tsvector`` (cached per word), then a
  ``tsquery`` of quoted lexemes joined by ``|``: a message's ``OR``, ``&``, ``!``, ``<->``, ``:*`` or
  quotes are words, never query syntax.
- BM25 (k1 = 1.2, b = 0.75, IDF = log((N - n + 0.5) / (n + 0.5)) floored at 1e-6, term frequencies from
  the ``tsvector``'s positions, a row's length counted as FTS5 counts it) with N, n and the mean length
  over the rows of the scope: on a table of one scope the scores are FTS5's (``test_pg_bm25.py``). FTS5
  takes them over its whole table, which in a database shared by every host and tenant would make one
  customer's scores depend on everyone's rows (and cost reads of everyone's). Either way a row's score is
  > 0 when a word matches, and the order of a scope's rows for one word follows its frequency and length.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from core.memory.sqlite_keywords import MAX_QUERY_TERMS

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6  # FTS5's, for a word in more than half of the rows
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CACHED_WORDS = 4096

# The tsvector of a text and its length for BM25, for an INSERT ... SELECT: its words (positions) plus one
# per scope key the row has, as FTS5 counts a row's length over both of its columns (text and scope tokens).
TERMS_OF_TEXT = sql.SQL(
    "(SELECT v.terms, %(scope_words)s"
    " + (SELECT coalesce(sum(coalesce(cardinality(u.positions), 1)), 0) FROM unnest(v.terms) AS u) AS words"
    " FROM (SELECT to_tsvector('memory_index_text', %(text)s) AS terms) AS v) AS t"
)


def words(text: str) -> list[str]:
    """The words of ``text`` as both indexes cut them: runs of letters and digits."""
    return _WORD.findall(unicodedata.normalize("NFC", text))


def index_text(text: str) -> str:
    """What PostgreSQL indexes for ``text``: its words, space-separated."""
    return " ".join(words(text))


def query_words(terms: Sequence[str]) -> list[str]:
    """The words of a query's terms, lower-cased, de-duplicated, at most ``MAX_QUERY_TERMS``."""
    return list(dict.fromkeys(w.lower() for term in terms for w in words(term)))[:MAX_QUERY_TERMS]


def tsquery(lexemes: Sequence[str]) -> str:
    """Any of ``lexemes``, as ``tsquery`` text: each one quoted (quotes and backslashes doubled)."""
    return " | ".join("'" + lex.replace("\\", "\\\\").replace("'", "''") + "'" for lex in lexemes)


class Lexemes:
    """Query words as the index's lexemes, asked of PostgreSQL once per word (bounded cache)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def __call__(self, conn: psycopg.Connection[Any], query: Sequence[str]) -> list[str]:
        with self._lock:
            missing = [w for w in query if w not in self._known]
        if missing:
            rows = conn.execute(
                "SELECT w.word,"
                " ARRAY(SELECT t.lexeme FROM unnest(to_tsvector('memory_index_text', w.word)) AS t)"
                " FROM unnest(%s::text[]) AS w(word)",
                (missing,),
            ).fetchall()
            with self._lock:
                if len(self._known) > _CACHED_WORDS:
                    self._known.clear()
                self._known.update((str(word), tuple(lexemes)) for word, lexemes in rows)
        with self._lock:
            found = [lex for w in query for lex in self._known.get(w, ())]
        return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Match:
    """A row of the scope that holds at least one query lexeme, with its BM25 score (> 0)."""

    rid: int
    id: str
    payload: dict[str, Any] | None  # read only when asked for
    score: float


def bm25(
    frequencies: Sequence[Mapping[str, int]], lengths: Sequence[int], rows: int, total_words: int
) -> NDArray[np.float64]:
    """FTS5's BM25 of each matching row (its lexemes' frequencies and its length in words), with ``rows``
    and ``total_words`` those of the whole scope (N and the mean length); each lexeme's n is how many of
    the matching rows hold it."""
    df = Counter(lexeme for frequency in frequencies for lexeme in frequency)
    idf = {
        lexeme: value if (value := math.log((rows - n + 0.5) / (n + 0.5))) > 0 else IDF_FLOOR
        for lexeme, n in df.items()
    }
    mean_length = total_words / rows if rows and total_words else 1.0
    scores = np.zeros(len(frequencies), dtype=np.float64)
    for i, (frequency, length) in enumerate(zip(frequencies, lengths, strict=True)):
        norm = K1 * (1 - B + B * length / mean_length)
        scores[i] = sum(idf[lex] * (tf * (K1 + 1)) / (tf + norm) for lex, tf in frequency.items())
    return scores


def matches(
    conn: psycopg.Connection[Any],
    scope: sql.Composed,
    params: Mapping[str, Any],
    lexemes: Sequence[str],
    *,
    payloads: bool,
) -> list[Match]:
    """The rows of ``scope`` (a WHERE clause on ``memory_index_rows``, named parameters ``params``) that
    hold any of ``lexemes``, scored; in the order stored. The GIN index of ``terms`` finds them."""
    if not lexemes:
        return []
    statement = sql.SQL(
        "SELECT r.rid, r.id, {payload}, r.words, m.lexemes, m.counts, s.n, s.total"
        " FROM (SELECT count(*) AS n, coalesce(sum(words), 0) AS total FROM memory_index_rows WHERE {scope})"
        " AS s, memory_index_rows AS r,"
        " LATERAL (SELECT array_agg(u.lexeme) AS lexemes,"
        " array_agg(coalesce(cardinality(u.positions), 1)) AS counts"
        " FROM unnest(r.terms) AS u WHERE u.lexeme = ANY(%(lexemes)s)) AS m"
        " WHERE {scope} AND r.terms @@ %(query)s::tsquery ORDER BY r.rid"
    ).format(payload=sql.SQL("r.payload" if payloads else "NULL"), scope=scope)
    params = {**params, "lexemes": list(lexemes), "query": tsquery(lexemes)}
    with conn.cursor(binary=True) as cursor:  # binary: the arrays arrive without text parsing
        rows = cursor.execute(statement, params).fetchall()
    if not rows:
        return []
    frequencies = [dict(zip(r[4] or (), r[5] or (), strict=True)) for r in rows]
    scores = bm25(frequencies, [int(r[3]) for r in rows], int(rows[0][6]), int(rows[0][7]))
    return [
        Match(rid=int(r[0]), id=str(r[1]), payload=r[2], score=float(score))
        for r, score in zip(rows, scores, strict=True)
        if score > 0
    ]
