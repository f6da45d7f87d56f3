"""A PostgreSQL memory index whose keyword terms PostgreSQL stemmed itself (English Snowball, before
``core.memory.lexemes``) is filed again once, when an index opens (the upgrade ``lexemes_1``); a scope
another process keeps reads the new terms. (The SQLite file: ``test_recall_signals.py``.)"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from core.memory import pg_keywords, pg_row_upgrades
from core.memory.pg_index import PostgresIndex
from core.memory.pg_scopes import PgScopeCache
from core.memory.ranking import keyword_terms

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

DIMS = 4
VECTOR = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
ROWS = {
    "de": "Zwei Rechnungen vom Mai wurden doppelt abgebucht",
    "fr": "Les commandes sont arrivées abîmées",
    "en": "I painted the fence myself",
    "long": "The key I was sent " + "QmFzZTY0" * 300 + " does not work",  # a word PostgreSQL refuses
}


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def found(index: PostgresIndex, query: str) -> set[str]:
    signals = index.scope_signals(VECTOR, keyword_terms(query), {"user_id": "a"})
    return {memory for memory, score in zip(signals.ids, signals.keyword.tolist(), strict=True) if score}


def stored(url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(plain(url)) as conn:
        rows = conn.execute("SELECT id, terms::text, words FROM memory_index_rows ORDER BY id").fetchall()
    return [(str(i), str(terms), int(words)) for i, terms, words in rows]


def test_terms_stemmed_by_postgresql_in_english_are_filed_again_once(database_url: str) -> None:
    running = PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=1)
    )
    try:
        running.insert(
            [VECTOR] * len(ROWS),
            payloads=[
                {"user_id": "a", "data": text, "turn_ids": [n]} for n, text in enumerate(ROWS.values())
            ],
            ids=list(ROWS),
        )
        filed = stored(database_url)
        assert found(running, "Wo ist die Rechnung?") == {"de"}
        with psycopg.connect(plain(database_url), autocommit=True) as conn:  # as the release before left them
            conn.execute(
                "UPDATE memory_index_rows SET terms = to_tsvector('english', payload ->> 'data'),"
                " words = 1 + length(to_tsvector('english', payload ->> 'data')), rid = DEFAULT"
            )
            conn.execute("DELETE FROM memory_index_upgrades WHERE name = 'lexemes_1'")
        assert found(running, "Wo ist die Rechnung?") == set()  # English stems: "rechnungen" alone
        assert found(running, "When did he paint it?") == {"en"}
        PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS).close()  # the upgrade
        assert stored(database_url) == filed  # the terms and lengths a write gives now
        assert found(running, "Wo ist die Rechnung?") == {"de"}  # the kept scope read them again (new rids)
        assert found(running, "Quand arrive-t-il ?") == {"fr"}
        with psycopg.connect(plain(database_url), autocommit=True) as conn:
            conn.execute("UPDATE memory_index_rows SET words = 99")  # a second open does not file again
            turns = conn.execute("SELECT count(*) FROM memory_index_turns").fetchone()
        PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS).close()
        assert {words for _, _, words in stored(database_url)} == {99}
        assert turns == (len(ROWS),)  # the turn index followed the new rids
    finally:
        running.close()


def make_old(url: str) -> None:
    """The rows as the release before left them: English stems by PostgreSQL, the upgrade not done."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        conn.execute(
            "UPDATE memory_index_rows SET terms = to_tsvector('english', payload ->> 'data'),"
            " words = 1 + length(to_tsvector('english', payload ->> 'data')), rid = DEFAULT"
        )
        conn.execute("DELETE FROM memory_index_upgrades WHERE name = 'lexemes_1'")


def test_an_upgrade_killed_midway_keeps_its_batches_and_the_next_open_finishes_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    index.insert(
        [VECTOR] * len(ROWS),
        payloads=[{"user_id": "a", "data": text} for text in ROWS.values()],
        ids=list(ROWS),
    )
    index.close()
    filed = stored(database_url)
    make_old(database_url)
    monkeypatch.setattr(pg_row_upgrades, "BATCH", 1)  # each row its own transaction
    calls = 0
    real = pg_keywords.terms_of

    def dies_on_the_third(text: str) -> tuple[str, int]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # as a kill would stop it: mid-upgrade, nothing after runs
        return real(text)

    monkeypatch.setattr(pg_keywords, "terms_of", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    half = stored(database_url)
    assert sum(row in filed for row in half) == 2  # the two batches before it committed
    monkeypatch.setattr(pg_keywords, "terms_of", real)
    with psycopg.connect(plain(database_url)) as conn:  # and its lock went with its session
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
    PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS).close()
    assert stored(database_url) == filed


def test_an_open_beside_a_running_upgrade_does_not_wait_for_it(database_url: str) -> None:
    index = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    index.insert([VECTOR], payloads=[{"user_id": "a", "data": ROWS["de"]}], ids=["de"])
    index.close()
    filed = stored(database_url)
    make_old(database_url)
    old = stored(database_url)
    with psycopg.connect(plain(database_url), autocommit=True) as upgrading:  # another process's upgrade
        upgrading.execute("SELECT pg_advisory_lock(%s)", (pg_row_upgrades.UPGRADE_LOCK,))
        beside = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
        try:
            assert stored(database_url) == old  # opened at once, the rows as they were
            assert found(beside, "Wo ist die Rechnung?") == set()  # English stems, not filed yet
        finally:
            beside.close()
    after = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)  # the lock is free
    try:
        assert stored(database_url) == filed
        assert found(after, "Wo ist die Rechnung?") == {"de"}
    finally:
        after.close()
