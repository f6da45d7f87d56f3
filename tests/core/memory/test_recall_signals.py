"""What recall ranks by, read from the SQLite store: one scope's rows in written order, cosine and BM25;
the stemmed keyword index, and the one-time re-index of a file made before stemming."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.memory import sqlite_keywords
from core.memory.vectors import SQLiteVectorStore

DIMS = 384


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def payload(user: str, text: str, **extra: object) -> dict[str, object]:
    return {"user_id": user, "data": text, **extra}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteVectorStore]:
    vectors = SQLiteVectorStore(tmp_path / "vectors.sqlite3")
    yield vectors
    vectors.close()


def at(hour: int) -> str:
    return f"2026-01-05T{hour:02d}:00:00-08:00"


def test_scope_signals_are_one_scope_in_written_order(store: SQLiteVectorStore) -> None:
    store.insert(
        [unit(1), unit(2), unit(3), unit(4)],
        payloads=[
            payload("a", "second: I painted the fence", created_at=at(11)),
            payload("a", "first: the router drops", created_at=at(9)),
            payload("b", "someone else painted a fence", created_at=at(10)),
            payload("a", "third: refund please", created_at=at(12)),
        ],
        ids=["second", "first", "theirs", "third"],
    )
    signals = store.scope_signals(unit(2), ["painting", "fence"], {"user_id": "a"})
    assert signals.ids == ["first", "second", "third"]
    assert [w.hour if w else None for w in signals.written] == [9, 11, 12]
    assert signals.dense[0] == pytest.approx(1.0, abs=1e-5)  # "first" was stored with unit(2)
    assert abs(float(signals.dense[1])) < 0.3
    # stemmed: "painting" finds "painted"; the other customer's row is not there at all
    assert signals.keyword[1] > 0 and signals.keyword[0] == 0 and signals.keyword[2] == 0


def test_scope_signals_refuse_a_read_without_a_scope(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("a", "router")], ids=["x"])
    for filters in ({}, None, {"category": "profile"}):
        signals = store.scope_signals(unit(1), ["router"], filters)
        assert signals.ids == [] and len(signals.dense) == 0 and len(signals.keyword) == 0
    assert store.scope_signals(unit(1), [], {"user_id": "a"}).keyword.tolist() == [0.0]


def test_payloads_by_id(store: SQLiteVectorStore) -> None:
    store.insert([unit(1), unit(2)], payloads=[payload("a", "one"), payload("a", "two")], ids=["1", "2"])
    found = store.payloads(["2", "missing", "1"])
    assert {k: v["data"] for k, v in found.items()} == {"1": "one", "2": "two"}


@pytest.mark.parametrize(
    ("tokenize", "version"),
    [
        pytest.param("porter unicode61 remove_diacritics 2", 3, id="porter-release"),
        pytest.param("unicode61", 0, id="release-before-stemming"),
        pytest.param("unicode61", 4, id="table-of-another-make"),
    ],
)
def test_a_file_indexed_by_fts5_itself_is_filed_again_when_opened(
    tmp_path: Path, tokenize: str, version: int
) -> None:
    path = tmp_path / "vectors.sqlite3"
    first = SQLiteVectorStore(path)
    first.insert(
        [unit(1), unit(2)],
        payloads=[payload("a", "she was painting sunsets"), payload("a", "Meine Rechnungen sind falsch")],
        ids=["m", "de"],
    )
    first.close()
    # make it look like a file of an earlier release: FTS5 tokenizing (and stemming) the text itself
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE memory_fts")
        conn.execute(f"CREATE VIRTUAL TABLE memory_fts USING fts5(body, scope, tokenize='{tokenize}')")
        conn.execute(
            "INSERT INTO memory_fts (rowid, body, scope)"
            " SELECT rid, json_extract(payload, '$.data'), '' FROM memory_vectors"
        )
        conn.execute(f"PRAGMA user_version = {version}")
    reopened = SQLiteVectorStore(path)
    try:
        assert [h.id for h in reopened.keyword_search("painted", top_k=5, filters={"user_id": "a"})] == ["m"]
        assert [h.id for h in reopened.keyword_search("sunset", top_k=5, filters={"user_id": "b"})] == []
        assert [h.id for h in reopened.keyword_search("Rechnung?", top_k=5, filters={"user_id": "a"})] == [
            "de"
        ]
        signals = reopened.scope_signals(unit(1), ["paint"], {"user_id": "a"})
        assert signals.keyword.tolist()[0] > 0
    finally:
        reopened.close()
    with sqlite3.connect(path) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'memory_fts'").fetchone()
        assert conn.execute("PRAGMA user_version").fetchone() == (4,)
    assert "porter" not in sql and sqlite_keywords.TOKENIZE in sql


def test_extra_filters_narrow_the_scope(store: SQLiteVectorStore) -> None:
    store.insert(
        [unit(1), unit(2)],
        payloads=[payload("a", "tea", category="profile"), payload("a", "tea", category="other")],
        ids=["p", "o"],
    )
    signals = store.scope_signals(unit(1), ["tea"], {"user_id": "a", "category": "profile"})
    assert signals.ids == ["p"] and np.all(signals.keyword > 0)
