"""The keyword side of the PostgreSQL memory index: a ``tsvector`` per row finds the candidates (GIN), and
BM25 is computed here, in numpy, as FTS5's ``bm25()`` computes it for the SQLite index.

- Lexemes: a row's ``terms`` are the lexemes ``core.memory.lexemes`` makes of its text (each word stemmed
  in the text's language, accents folded), the same the SQLite index stores, given to PostgreSQL as a
  ``tsvector`` literal (:func:`terms_of`) so that its parser and dictionaries never cut or stem them
  again; ``words`` is their count plus one per scope key, as FTS5 counts a row's length over its text and
  its scope tokens. A query's lexemes are made the same way (``lexemes.of_query``), without a round trip.
- A ``tsquery`` of quoted lexemes joined by ``|``: a message's ``OR``, ``&``, ``!``, ``<->``, ``:*`` or
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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from core.memory import lexemes
from core.memory.sqlite_keywords import MAX_QUERY_TERMS

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6  # FTS5's, for a word in more than half of the rows
MAX_POSITION = 16383  # a tsvector's last position: later words are counted there
MAX_POSITIONS = 256  # a tsvector keeps this many positions of a lexeme


def terms_of(text: str) -> tuple[str, int]:
    """The ``tsvector`` literal of ``text``'s lexemes (``lexemes.of_text``, each with its positions) and
    how many there are (what FTS5 counts for the text)."""
    found = lexemes.of_text(text)
    positions: dict[str, list[int]] = {}
    for at, lexeme in enumerate(found, start=1):
        held = positions.setdefault(lexeme, [])
        if len(held) < MAX_POSITIONS:
            held.append(min(at, MAX_POSITION))
    literal = " ".join(
        "'" + lex.replace("\\", "\\\\").replace("'", "''") + "':" + ",".join(map(str, dict.fromkeys(at)))
        for lex, at in positions.items()
    )
    return literal, len(found)


def query_words(terms: Sequence[str]) -> list[str]:
    """The words of a query's terms, lower-cased, de-duplicated, at most ``MAX_QUERY_TERMS``."""
    return list(dict.fromkeys(w for term in terms for w in lexemes.words(term)))[:MAX_QUERY_TERMS]


def tsquery(found: Sequence[str]) -> str:
    """Any of the lexemes ``found``, as ``tsquery`` text: each one quoted (quotes and backslashes doubled)."""
    return " | ".join("'" + lex.replace("\\", "\\\\").replace("'", "''") + "'" for lex in found)


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
