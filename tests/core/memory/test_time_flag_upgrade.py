"""Memories stored before the time flag (``core.memory.time_words``) get it once, when the index opens:
on SQLite (the file's ``user_version``) and on PostgreSQL (``memory_index_upgrades``)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from core.memory.pg_index import PostgresIndex
from core.memory.pg_scopes import PgScopeCache
from core.memory.time_words import MENTIONS_TIME
from core.memory.vectors import SQLiteVectorStore
from core.ports import MemoryIndex

DIMS = 4
VECTOR = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
ROWS = {
    "dated": "The router broke last week.",
    "plain": "The router broke.",
    "modal": "May I get a router?",
    "spanish": "El router se rompió la semana pasada.",
    "french": "Le technicien est passé hier.",
    "german": "Ich bin hier, der Router blinkt.",  # "hier" is "here": flagged by the rule before time_flag_3
    "sea": "Fuimos al mar y el router no tenía señal.",  # "mar", the sea: the same
}


def fill(index: MemoryIndex) -> None:
    index.insert(
        [VECTOR] * len(ROWS),
        payloads=[{"user_id": "a", "data": text, "turn_ids": [n]} for n, text in enumerate(ROWS.values())],
        ids=list(ROWS),
    )


def dated(index: MemoryIndex) -> dict[str, bool]:
    signals = index.scope_signals(VECTOR, ["router"], {"user_id": "a"})
    assert signals.dated is not None
    return dict(zip(signals.ids, signals.dated.tolist(), strict=True))


def dated_when_opened(open_index: Callable[[], MemoryIndex]) -> dict[str, bool]:
    """Each row's flag as an index opened now reads it (any upgrade done as it opens)."""
    index = open_index()
    try:
        return dated(index)
    finally:
        index.close()


def filled(open_index: Callable[[], MemoryIndex]) -> None:
    index = open_index()
    fill(index)
    index.close()


def sqlite_file(path: Path) -> Callable[[], MemoryIndex]:
    return functools.partial(SQLiteVectorStore, path, collection_name="m", embedding_model_dims=DIMS)


def postgresql(url: str) -> Callable[[], MemoryIndex]:
    return functools.partial(PostgresIndex, url, collection_name="m", embedding_model_dims=DIMS)


def plain(url: str) -> str:
    """The URL as libpq takes it (the store's URLs name their SQLAlchemy driver)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


EXPECTED = {
    "dated": True,
    "plain": False,
    "modal": False,
    "spanish": True,
    "french": True,
    "german": False,
    "sea": False,
}
# what the rule of time_flag_2 (user_version 2) flagged that the rule now does not
FLAGGED_BEFORE = ("german", "sea")


def test_a_sqlite_file_stored_before_the_flag_gets_it_once(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite3"
    filled(sqlite_file(path))
    with sqlite3.connect(path) as db:  # as a file written before the flag existed
        db.execute("UPDATE memory_vectors SET payload = json_remove(payload, ?)", (f"$.{MENTIONS_TIME}",))
        db.execute("PRAGMA user_version = 0")
    assert dated_when_opened(sqlite_file(path)) == EXPECTED
    with sqlite3.connect(path) as db:
        # the time flags (3), then the keyword index (4)
        assert db.execute("PRAGMA user_version").fetchone() == (4,)
        # done once: a flag removed now stays removed on the next open
        db.execute("UPDATE memory_vectors SET payload = json_remove(payload, ?)", (f"$.{MENTIONS_TIME}",))
    assert dated_when_opened(sqlite_file(path)) == dict.fromkeys(ROWS, False)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_postgresql_index_stored_before_the_flag_gets_it_once(database_url: str) -> None:
    filled(postgresql(database_url))
    with psycopg.connect(plain(database_url), autocommit=True) as conn:  # as rows stored before the flag
        conn.execute("UPDATE memory_index_rows SET payload = payload - %s", (MENTIONS_TIME,))
        conn.execute("DELETE FROM memory_index_upgrades WHERE name LIKE 'time_flag%'")
    assert dated_when_opened(postgresql(database_url)) == EXPECTED
    with psycopg.connect(plain(database_url), autocommit=True) as conn:
        assert conn.execute("SELECT name FROM memory_index_upgrades ORDER BY name").fetchall() == [
            ("lexemes_1",),
            ("scope_counts",),
            ("scope_departures",),
            ("time_flag_3",),
        ]
        conn.execute("UPDATE memory_index_rows SET payload = payload - %s", (MENTIONS_TIME,))
    assert dated_when_opened(postgresql(database_url)) == dict.fromkeys(ROWS, False)


def test_a_sqlite_file_flagged_under_the_english_rule_is_read_again_once(tmp_path: Path) -> None:
    path = tmp_path / "vectors.sqlite3"
    filled(sqlite_file(path))
    with sqlite3.connect(path) as db:  # as the English-only rule left it
        db.execute(
            "UPDATE memory_vectors SET payload = json_remove(payload, ?)"
            " WHERE json_extract(payload, '$.data') = ?",
            (f"$.{MENTIONS_TIME}", ROWS["spanish"]),
        )
        db.execute("PRAGMA user_version = 1")
    assert dated_when_opened(sqlite_file(path)) == EXPECTED
    with sqlite3.connect(path) as db:
        # the time flags (3), then the keyword index (4)
        assert db.execute("PRAGMA user_version").fetchone() == (4,)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_postgresql_index_flagged_under_the_english_rule_is_read_again_once(database_url: str) -> None:
    filled(postgresql(database_url))
    with psycopg.connect(plain(database_url), autocommit=True) as conn:  # as the English-only rule left it
        conn.execute(
            "UPDATE memory_index_rows SET payload = payload - %s WHERE payload ->> 'data' = %s",
            (MENTIONS_TIME, ROWS["spanish"]),
        )
        conn.execute("UPDATE memory_index_upgrades SET name = 'time_flag' WHERE name = 'time_flag_3'")
    assert dated_when_opened(postgresql(database_url)) == EXPECTED
    with psycopg.connect(plain(database_url), autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM memory_index_upgrades").fetchall()}
        assert names == {"lexemes_1", "scope_counts", "scope_departures", "time_flag", "time_flag_3"}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_scope_kept_by_a_running_process_sees_the_flags_an_upgrade_gives(database_url: str) -> None:
    """The upgrade is a write: a row it flags gets a new rid, so a scope another process keeps
    (``core.memory.pg_scopes``) reads it again instead of ranking by the flag it had."""
    running = PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=1)
    )
    try:
        fill(running)
        with psycopg.connect(plain(database_url), autocommit=True) as conn:  # rows from before the flag
            conn.execute(
                "UPDATE memory_index_rows SET payload = payload - %s, rid = DEFAULT", (MENTIONS_TIME,)
            )
            conn.execute("DELETE FROM memory_index_upgrades WHERE name LIKE 'time_flag%'")
        assert dated(running) == dict.fromkeys(ROWS, False)  # kept now
        assert dated_when_opened(postgresql(database_url)) == EXPECTED  # another process opens: the upgrade
        assert dated(running) == EXPECTED
        with psycopg.connect(plain(database_url), autocommit=True) as conn:
            turns = conn.execute(
                "SELECT count(*) FROM memory_index_turns AS t JOIN memory_index_rows AS r USING (rid)"
            ).fetchone()
            rows = conn.execute("SELECT count(*) FROM memory_index_turns").fetchone()
        assert turns == rows == (len(ROWS),)  # the turn index followed the new rids
    finally:
        running.close()


def test_a_sqlite_file_flagged_under_the_rule_before_loses_the_flags_the_rule_no_longer_gives(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vectors.sqlite3"
    filled(sqlite_file(path))
    with sqlite3.connect(path) as db:  # as the rule of user_version 2 left it: German "hier", the sea flagged
        for name in FLAGGED_BEFORE:
            db.execute(
                "UPDATE memory_vectors SET payload = json_set(payload, ?, json('true'))"
                " WHERE json_extract(payload, '$.data') = ?",
                (f"$.{MENTIONS_TIME}", ROWS[name]),
            )
        db.execute("PRAGMA user_version = 2")
    assert dated_when_opened(sqlite_file(path)) == EXPECTED
    with sqlite3.connect(path) as db:
        # the time flags (3), then the keyword index (4)
        assert db.execute("PRAGMA user_version").fetchone() == (4,)
        flags = db.execute(
            "SELECT count(*) FROM memory_vectors WHERE json_type(payload, ?) IS NOT NULL",
            (f"$.{MENTIONS_TIME}",),
        ).fetchone()
    assert flags == (sum(EXPECTED.values()),)  # the key is gone from the rows no longer flagged


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_scope_kept_by_a_running_process_loses_the_flags_the_rule_no_longer_gives(
    database_url: str,
) -> None:
    running = PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=1)
    )
    try:
        fill(running)
        with psycopg.connect(plain(database_url), autocommit=True) as conn:  # as time_flag_2 left them
            conn.execute(
                "UPDATE memory_index_rows SET payload = payload || jsonb_build_object(%s::text, true),"
                " rid = DEFAULT WHERE payload ->> 'data' = ANY(%s)",
                (MENTIONS_TIME, [ROWS[name] for name in FLAGGED_BEFORE]),
            )
            conn.execute("UPDATE memory_index_upgrades SET name = 'time_flag_2' WHERE name = 'time_flag_3'")
        assert dated(running) == {**EXPECTED, **dict.fromkeys(FLAGGED_BEFORE, True)}  # kept now
        assert dated_when_opened(postgresql(database_url)) == EXPECTED  # another process opens: the upgrade
        assert dated(running) == EXPECTED  # the rows whose flag went were read again (new rids)
        with psycopg.connect(plain(database_url), autocommit=True) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM memory_index_upgrades").fetchall()}
            keys = conn.execute("SELECT count(*) FROM memory_index_rows WHERE payload ? %s", (MENTIONS_TIME,))
            assert keys.fetchone() == (sum(EXPECTED.values()),)
        assert names == {"lexemes_1", "scope_counts", "scope_departures", "time_flag_2", "time_flag_3"}
    finally:
        running.close()
