"""BM25 of the PostgreSQL memory index against FTS5's (the SQLite index): the same scores where the scope
is the whole table, and one customer's scores untouched by other customers' rows (``pg_keywords``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.memory.pg_index import PostgresIndex
from core.memory.vectors import SQLiteVectorStore

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

DIMS = 8
WORDS = ["router", "wifi", "invoice", "refund", "painting", "painted", "fence", "the"]
QUERIES = ("router wifi painting", "the fence was painted", "invoice refund w1 w2", "w3")
# words of other languages and scripts, accents, apostrophes and underscores: both indexes file them alike
OTHER_WORDS = [
    *("Rechnungen", "Rechnung", "die", "Straße", "café", "cafe", "l'été", "o'brien", "x_y", "3.5"),
    *("Ελλάδα", "ελλαδα", "हिन्दी", "भाषा", "счёт", "счета", "factures", "facturas", "bollette"),
]
OTHER_QUERIES = ("Rechnung café", "счёт Ελλάδα", "हिन्दी l'été o'brien", "x_y 3.5 facture bolletta")


def texts(seed: int, count: int, words: list[str] = WORDS) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(60)] + words
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 25))) for _ in range(count)]


def fill(index: SQLiteVectorStore | PostgresIndex, user: str, rows: list[str], prefix: str) -> None:
    index.insert(
        [np.ones(DIMS, dtype=np.float32)] * len(rows),
        payloads=[{"user_id": user, "data": text} for text in rows],
        ids=[f"{prefix}{i}" for i in range(len(rows))],
    )


@pytest.fixture
def both(database_url: str, tmp_path: Path) -> Iterator[tuple[PostgresIndex, SQLiteVectorStore]]:
    pg = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    lite = SQLiteVectorStore(tmp_path / "v.sqlite3", collection_name="m", embedding_model_dims=DIMS)
    yield pg, lite
    pg.close()
    lite.close()


def scores(index: SQLiteVectorStore | PostgresIndex, query: str, user: str = "c") -> dict[str, float]:
    return {h.id: float(h.score or 0) for h in index.keyword_search(query, 1000, {"user_id": user})}


@pytest.mark.parametrize(
    ("words", "queries"), [(WORDS, QUERIES), (OTHER_WORDS, OTHER_QUERIES)], ids=["english", "other-languages"]
)
def test_on_a_table_of_one_customer_the_scores_are_fts5s(
    both: tuple[PostgresIndex, SQLiteVectorStore], words: list[str], queries: tuple[str, ...]
) -> None:
    pg, lite = both
    rows = texts(1, 200, words)
    fill(pg, "c", rows, "r")
    fill(lite, "c", rows, "r")
    for query in queries:
        ours, fts5 = scores(pg, query), scores(lite, query)
        assert ours and ours == pytest.approx(fts5, rel=1e-9), query
        terms = query.split()
        signals = pg.scope_signals(np.ones(DIMS), terms, {"user_id": "c"})
        expected = lite.scope_signals(np.ones(DIMS), terms, {"user_id": "c"})
        assert signals.ids == expected.ids
        assert signals.keyword.tolist() == pytest.approx(expected.keyword.tolist(), rel=1e-6)


def test_a_customers_scores_do_not_depend_on_other_customers_rows(
    both: tuple[PostgresIndex, SQLiteVectorStore],
) -> None:
    pg, _ = both
    fill(pg, "c", texts(1, 100), "c")
    alone = {query: scores(pg, query) for query in QUERIES}
    fill(pg, "others", texts(2, 300), "o")
    assert {query: scores(pg, query) for query in QUERIES} == alone
