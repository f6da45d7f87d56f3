"""The keyword side of a kept PostgreSQL scope (``core.memory.pg_scopes``): BM25 from memory, no query.

For a kept scope, each row's length in words and its lexemes with their frequencies (read once per row:
``pg_scopes.ScopeReader``) and, per lexeme, the rows that hold it. A recall's keyword scores are
then :func:`core.memory.pg_keywords.bm25` over the rows holding any of the query's lexemes, with N and the
mean length of the scope: the numbers ``pg_keywords.matches`` computes in SQL, so the scores are the
same (``test_pg_scope_cache.py`` compares them through random writes). At 10,000 memories a query's
words match hundreds to thousands of rows, and that query (the scope's count and length sum, and each
matching row's lexemes) cost p50 12 ms, p95 28 ms.

Changed only under the kept scope's lock (``PgScopeCache``), as its rows are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.memory.pg_keywords import IDF_FLOOR, K1, B
from core.memory.scope_rows import ScopeRows

# A term row (``pg_scopes.ScopeReader.terms``): rid, length in words (as FTS5 counts it), lexemes and
# their counts.
TermRow = Sequence[Any]


class ScopeTerms:
    """Each kept row's length and term frequencies, and the rows of each lexeme."""

    __slots__ = ("_postings", "_rows", "total_words")

    def __init__(self) -> None:
        self._rows: dict[int, tuple[int, tuple[str, ...]]] = {}  # rid -> (length in words, its lexemes)
        self._postings: dict[str, dict[int, int]] = {}  # lexeme -> {rid: its frequency in that row}
        self.total_words = 0

    @classmethod
    def of(cls, rows: Sequence[TermRow]) -> ScopeTerms:
        terms = cls()
        terms.add(rows)
        return terms

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[TermRow]) -> None:
        """Term rows (replacing a row of the same rid).

        A first read of a large scope runs this over every lexeme of every row (105,000 at 10,000
        memories in ``bench/pg_recall_latency.py``'s corpus): one dictionary lookup per lexeme and no
        ``remove`` for a rid not held yet, 29 ms there against 39 ms with ``setdefault`` and a ``remove``
        per row (p50 of 15 each, alternating)."""
        kept, postings = self._rows, self._postings
        total = 0
        for row in rows:
            rid = int(row[0])
            if rid in kept:
                self.remove([rid])
            words = int(row[1] or 0)
            lexemes = tuple(map(str, row[2] or ()))
            kept[rid] = (words, lexemes)
            for lexeme, count in zip(lexemes, row[3] or (), strict=True):
                holding = postings.get(lexeme)
                if holding is None:
                    postings[lexeme] = {rid: int(count)}
                else:
                    holding[rid] = int(count)
            total += words
        self.total_words += total

    def remove(self, rids: Iterable[int]) -> None:
        for rid in rids:
            found = self._rows.pop(int(rid), None)
            if found is None:
                continue
            words, lexemes = found
            for lexeme in lexemes:
                holding = self._postings.get(lexeme)
                if holding is not None:
                    holding.pop(int(rid), None)
                    if not holding:
                        del self._postings[lexeme]
            self.total_words -= words

    def scores(self, rows: ScopeRows, lexemes: Sequence[str]) -> NDArray[np.float32]:
        """The BM25 score of each of ``rows`` (the same scope) for any of ``lexemes``; 0 where none.

        :func:`~core.memory.pg_keywords.bm25` in arrays, one lexeme at a time in the order a ``tsvector``
        stores lexemes (by their bytes), so each row's terms are added in the order that function adds
        them; the scores handed out (float32, as ranking takes them) equal the SQL path's."""
        count = len(self._rows)
        held = [self._postings[x] for x in sorted(set(lexemes), key=str.encode) if self._postings.get(x)]
        if not held or not count:
            return np.zeros(len(rows), dtype=np.float32)
        mean_length = self.total_words / count if self.total_words else 1.0
        total = np.zeros(len(rows), dtype=np.float64)
        matched = np.zeros(len(rows), dtype=np.bool_)
        for rows_of in held:
            n = len(rows_of)
            idf = value if (value := math.log((count - n + 0.5) / (n + 0.5))) > 0 else IDF_FLOOR
            rids = np.fromiter(rows_of, dtype=np.int64, count=n)
            tf = np.fromiter(rows_of.values(), dtype=np.float64, count=n)
            length = np.fromiter((self._rows[rid][0] for rid in rows_of), dtype=np.float64, count=n)
            norm = K1 * (1 - B + B * length / mean_length)
            at = rows.positions(rids)
            found = at >= 0
            total[at[found]] += (idf * (tf * (K1 + 1)) / (tf + norm))[found]
            matched[at[found]] = True
        keyword = np.zeros(len(rows), dtype=np.float32)
        hit = matched & (total > 0)
        keyword[hit] = total[hit]
        return keyword


def scored(rows: ScopeRows, matches: Sequence[tuple[int, float]]) -> NDArray[np.float32]:
    """Each of ``rows``'s keyword score from ``(rid, score)`` pairs (those > 0); 0 for the others."""
    keyword = np.zeros(len(rows), dtype=np.float32)
    if not matches:
        return keyword
    at = rows.positions(np.array([rid for rid, _ in matches], dtype=np.int64))
    scores = np.array([score for _, score in matches], dtype=np.float64)
    hit = (at >= 0) & (scores > 0)
    keyword[at[hit]] = scores[hit]
    return keyword
