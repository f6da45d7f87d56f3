"""Recall's kept scopes on PostgreSQL (``core.memory.pg_scopes``): exactly what a fresh read gives, through
every kind of write by this host and by another one (inserts, replacements, deletes, moves, retention,
forget), a change read as what changed only, and nothing kept past its idle time or a forget."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from numpy.typing import NDArray
from psycopg import sql

from core.memory import lexemes, pg_keywords, pg_schema, pg_scopes
from core.memory.pg_index import PostgresIndex
from core.memory.pg_scopes import PgScopeCache
from core.memory.pg_vectors import ByteaVectors, PgvectorVectors
from core.memory.rows import ScopeSignals

on_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

DIMS = 32
WORDS = ["router", "refund", "invoice", "fence", "painted", "wifi", "billing", "delivery"]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SCOPE = {"user_id": "ana"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unit(rng: np.random.Generator) -> NDArray[np.float32]:
    vector = rng.standard_normal(DIMS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def payload(user: str, rng: random.Random) -> dict[str, Any]:
    said = (T0 + timedelta(minutes=rng.randint(0, 60 * 24 * 30))).isoformat()
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
    if rng.random() < 0.2:
        text += " yesterday"  # says when: the time prior's flag
    return {
        "user_id": user,
        "data": text,
        "created_at": T0.isoformat(),
        "said_at": said,
        "source_channel": rng.choice(["sms", "email", "telegram"]),
        "source_handle": rng.choice(["sms:+15550001", "email:ana@example.com"]),
    }


@pytest.fixture
def indexes(database_url: str) -> Iterator[tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock]]:
    """This host's index (scopes of 8+ rows kept), another host's on the same tables, and one that keeps
    nothing (the reference: a fresh read every time)."""
    clock = Clock()
    here = PostgresIndex(
        database_url,
        collection_name="m",
        embedding_model_dims=DIMS,
        scopes=PgScopeCache(min_rows=8, clock=clock),
        later=lambda job: job(),  # a kept scope's terms read as soon as the recall that kept it is done
    )
    there = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    fresh = PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=10**9)
    )
    try:
        yield here, there, fresh, clock
    finally:
        for index in (here, there, fresh):
            index.close()


def sql_bm25(index: PostgresIndex, terms: list[str], scope: dict[str, str]) -> dict[str, float]:
    """Each matching row's BM25 as ``pg_keywords.matches`` computes it in SQL (what kept terms replace)."""
    where = index._scope(scope)
    assert where is not None
    with index._pool.connection() as conn:
        query = lexemes.of_query(terms)
        found = pg_keywords.matches(conn, where[0], where[1], query, payloads=False)
    return {m.id: float(np.float32(m.score)) for m in found}


def same_keywords(
    signals: ScopeSignals, index: PostgresIndex, terms: list[str], scope: dict[str, str]
) -> None:
    expected = sql_bm25(index, terms, scope)
    got = {
        memory_id: float(score)
        for memory_id, score in zip(signals.ids, signals.keyword, strict=True)
        if score
    }
    assert got == expected


def same(kept: ScopeSignals, read: ScopeSignals) -> None:
    assert kept.ids == read.ids
    if not read.ids:
        return
    assert list(kept.written) == list(read.written)
    assert np.array_equal(kept.written.sources, read.written.sources)
    assert np.array_equal(kept.dated, read.dated)
    assert np.array_equal(kept.keyword, read.keyword)
    assert np.allclose(kept.dense, read.dense, atol=1e-6)


@pytest.mark.postgres
@on_postgres
def test_kept_scopes_match_a_fresh_read_through_every_write(
    indexes: tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there, fresh, _ = indexes
    rng, nrng = random.Random(7), np.random.default_rng(7)
    ids: list[str] = []  # the rows that exist (of either user)
    serial = iter(range(10**6))

    def add(index: PostgresIndex, n: int, user: str = "ana") -> None:
        new = [f"m{next(serial)}" for _ in range(n)]
        index.insert([unit(nrng) for _ in new], payloads=[payload(user, rng) for _ in new], ids=new)
        ids.extend(new)

    add(here, 40)
    read_rows: list[int] = []  # rows read (with vectors), by read
    real_rows, real_fresh = pg_scopes.ScopeReader.rows, pg_scopes.ScopeReader.fresh

    def counting_rows(reader: pg_scopes.ScopeReader) -> list[Any]:
        rows = real_rows(reader)
        read_rows.append(len(rows))
        return rows

    def counting_fresh(reader: pg_scopes.ScopeReader, rids: Any) -> tuple[list[Any], list[Any]]:
        rows, terms = real_fresh(reader, rids)
        read_rows.append(len(rows))
        return rows, terms

    monkeypatch.setattr(pg_scopes.ScopeReader, "rows", counting_rows)
    monkeypatch.setattr(pg_scopes.ScopeReader, "fresh", counting_fresh)
    query = unit(nrng)
    terms = ["router", "invoice"]
    same(here.scope_signals(query, terms, SCOPE), fresh.scope_signals(query, terms, SCOPE))
    assert "scopes=1, rows=40" in repr(here._scopes)
    read_rows.clear()
    kept = here.scope_signals(query, terms, SCOPE)
    assert read_rows == []  # nothing changed: the rids alone were read
    same(kept, fresh.scope_signals(query, terms, SCOPE))

    add(there, 1)  # another host writes one memory: only it is read here
    read_rows.clear()
    kept = here.scope_signals(query, terms, SCOPE)
    assert read_rows == [1]
    same(kept, fresh.scope_signals(query, terms, SCOPE))

    def delete() -> None:
        gone = rng.choice(ids)
        rng.choice([here, there]).delete(gone)
        ids.remove(gone)

    steps = [
        lambda: add(rng.choice([here, there]), rng.randint(1, 3)),
        delete,
        lambda: rng.choice([here, there]).update(rng.choice(ids), vector=unit(nrng)),
        lambda: rng.choice([here, there]).update(rng.choice(ids), payload=payload("ana", rng)),
        lambda: add(there, 2, user="tom"),  # another scope: changes nothing here
        lambda: there.reassign("ana", "tom", handles={"email:ana@example.com"}),  # some leave
        lambda: there.reassign("tom", "ana"),  # they come back (same ids and vectors, same rids)
    ]
    for step in range(120):
        rng.choice(steps)()
        query, terms = unit(nrng), rng.sample(WORDS, rng.randint(1, 6))  # 3+: the order of the sum counts
        kept, read = here.scope_signals(query, terms, SCOPE), fresh.scope_signals(query, terms, SCOPE)
        same(kept, read)
        same_keywords(kept, fresh, terms, SCOPE)  # the kept terms' BM25 is the SQL's, float for float
        assert len(kept.ids) > 0 and kept.keyword.any(), step

    assert counters(here) == row_counts(here)  # the triggers counted every write of either host

    there.forget_written_before(SCOPE, datetime(2100, 1, 1, tzinfo=UTC))  # another host's retention
    same(here.scope_signals(query, terms, SCOPE), fresh.scope_signals(query, terms, SCOPE))
    assert here.scope_signals(query, terms, SCOPE).ids == []
    assert "scopes=0" in repr(here._scopes)
    assert counters(here) == {**row_counts(here), "ana": 0}


def counters(index: PostgresIndex) -> dict[str, int]:
    """Each customer's ``rows`` in ``memory_index_scopes`` (kept by the triggers)."""
    with index._pool.connection() as conn:
        found = conn.execute("SELECT user_id, rows FROM memory_index_scopes WHERE collection = 'm'")
        return {str(user): int(rows) for user, rows in found.fetchall()}


def row_counts(index: PostgresIndex) -> dict[str, int]:
    with index._pool.connection() as conn:
        found = conn.execute(
            "SELECT user_id, count(*) FROM memory_index_rows WHERE collection = 'm' GROUP BY user_id"
        )
        return {str(user): int(rows) for user, rows in found.fetchall()}


@pytest.mark.postgres
@on_postgres
def test_a_kept_scope_reads_its_counter_new_rids_and_departures_not_every_rid(
    indexes: tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check reads the customer's counter, the rids above the highest kept and, when rows left, their
    logged departures (and reads the departed rows still in the scope again): not every rid. Every rid is
    read once after the scope is read, when a row came in below the highest rid kept (a move back, a late
    commit: the count tells), and when more rows left than the log keeps. Each recall is what a fresh
    read gives."""
    here, there, fresh, _ = indexes
    rng, nrng = random.Random(11), np.random.default_rng(11)
    every: list[bool] = []  # per check: were all the scope's rids read?
    real_check, real_rids = pg_scopes.ScopeReader.check, pg_scopes.ScopeReader.rids

    def recording(reader: pg_scopes.ScopeReader, kept_max: int, counts: Any) -> pg_scopes.Check:
        found = real_check(reader, kept_max, counts)
        every.append(found.now is not None)
        return found

    def reading(reader: pg_scopes.ScopeReader) -> Any:
        every.append(True)
        return real_rids(reader)

    monkeypatch.setattr(pg_scopes.ScopeReader, "check", recording)
    monkeypatch.setattr(pg_scopes.ScopeReader, "rids", reading)

    def recall() -> bool:
        query, terms = unit(nrng), rng.sample(WORDS, 2)
        every.clear()
        same(here.scope_signals(query, terms, SCOPE), fresh.scope_signals(query, terms, SCOPE))
        assert 1 <= len(every) <= 2
        return any(every)

    ids = [f"a{i}" for i in range(30)]
    here.insert([unit(nrng) for _ in ids], payloads=[payload("ana", rng) for _ in ids], ids=ids)
    here.scope_signals(unit(nrng), ["router"], SCOPE)  # read and kept
    assert recall() is True  # the counts kept are not known yet
    assert recall() is False
    there.insert([unit(nrng) for _ in range(3)], payloads=[payload("ana", rng) for _ in range(3)])
    assert recall() is False  # only rows came: read by their rids alone
    there.insert([unit(nrng)], payloads=[payload("tom", rng)])  # someone else's
    assert recall() is False
    for leave in (
        lambda: there.delete(ids.pop()),
        lambda: there.update(ids[0], payload=payload("ana", rng)),  # replaced: a new rid
        lambda: there.update(ids[1], vector=unit(nrng)),
        lambda: there.reassign("ana", "tom", handles={"email:ana@example.com"}),
    ):
        leave()
        assert recall() is False  # the departures tell which rows left
        assert recall() is False
    with there._pool.connection() as conn:  # changed in place (when said): it departs and is read again
        conn.execute(
            'UPDATE memory_index_rows SET payload = payload || \'{"said_at": "2020-01-02T03:04:05+00:00"}\''
            " WHERE collection = 'm' AND id = %s",
            (ids[2],),
        )
    assert recall() is False
    there.reassign("tom", "ana")  # rows come back with their old rids, below the highest kept
    assert recall() is True
    assert recall() is False
    # out, back and out again between two recalls: the same rids leave twice
    there.reassign("ana", "tom", handles={"email:ana@example.com"})
    there.reassign("tom", "ana")
    there.reassign("ana", "tom", handles={"email:ana@example.com"})
    assert recall() is False
    there.reassign("tom", "ana")
    assert recall() is True
    assert recall() is False
    # one row leaves and an older one comes in: as many rows as before and no new rid; the count of the
    # departures tells
    there.insert([unit(nrng)], payloads=[payload("tom", rng)])
    there.insert([unit(nrng)], payloads=[payload("ana", rng)])
    assert recall() is False
    there.delete(ids.pop())
    there.reassign("tom", "ana")
    assert recall() is True
    assert recall() is False
    # more rows leave than the log keeps: the oldest departures are pruned, so every rid is read
    many = [f"b{i}" for i in range(pg_schema.DEPARTURES_KEPT + 5)]
    there.insert([unit(nrng) for _ in many], payloads=[payload("ana", rng) for _ in many], ids=many)
    assert recall() is False
    for gone in many:
        there.delete(gone)
    assert recall() is True
    assert recall() is False
    # and in one statement: no more than the log keeps is ever written
    more = [f"c{i}" for i in range(pg_schema.DEPARTURES_KEPT + 40)]
    there.insert([unit(nrng) for _ in more], payloads=[payload("ana", rng) for _ in more], ids=more)
    assert recall() is False
    with there._pool.connection() as conn:
        conn.execute("DELETE FROM memory_index_rows WHERE collection = 'm' AND id = ANY(%s)", (more,))
        logged = conn.execute(
            "SELECT count(*), min(removed), max(removed) FROM memory_index_departures"
            " WHERE collection = 'm' AND user_id = 'ana'"
        ).fetchone()
        counter = conn.execute(
            "SELECT removed FROM memory_index_scopes WHERE collection = 'm' AND user_id = 'ana'"
        ).fetchone()
    assert recall() is True
    assert counter is not None and logged is not None
    kept = pg_schema.DEPARTURES_KEPT
    assert tuple(logged) == (kept, counter[0] - kept + 1, counter[0])  # the last ones, numbered as counted


@pytest.mark.postgres
@on_postgres
def test_a_row_committed_late_with_a_lower_rid_is_read(
    indexes: tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock],
) -> None:
    """A rid is taken when a row is written and seen when its transaction commits, so a row can appear
    below the highest rid a scope keeps; the counter says a row came that the new rids do not hold."""
    here, there, fresh, _ = indexes
    rng, nrng = random.Random(13), np.random.default_rng(13)
    here.insert([unit(nrng) for _ in range(20)], payloads=[payload("ana", rng) for _ in range(20)])
    query = unit(nrng)
    here.scope_signals(query, ["router"], SCOPE)
    here.scope_signals(query, ["router"], SCOPE)  # kept, its counts known
    with there._pool.connection() as late:
        row = late.execute("SELECT nextval('memory_index_rows_rid_seq')").fetchone()
        assert row is not None
        rid = int(row[0])  # taken now, committed below
        there.insert([unit(nrng)], payloads=[payload("ana", rng)])  # a higher rid, committed first
        kept = here.scope_signals(query, ["router"], SCOPE)
        same(kept, fresh.scope_signals(query, ["router"], SCOPE))
        late.execute(
            "INSERT INTO memory_index_rows (rid, collection, id, user_id, created_at, vector, payload, terms,"
            " words) SELECT %s, collection, 'late', user_id, created_at, vector, payload, terms, words"
            " FROM memory_index_rows WHERE user_id = 'ana' ORDER BY rid LIMIT 1",
            (rid,),
        )
    kept = here.scope_signals(query, ["router"], SCOPE)
    assert "late" in kept.ids and len(kept.ids) == 22
    same(kept, fresh.scope_signals(query, ["router"], SCOPE))


@pytest.mark.postgres
@on_postgres
def test_a_truncate_empties_every_kept_scope(
    indexes: tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock],
) -> None:
    here, there, _, _ = indexes
    rng, nrng = random.Random(17), np.random.default_rng(17)
    here.insert([unit(nrng) for _ in range(20)], payloads=[payload("ana", rng) for _ in range(20)])
    query = unit(nrng)
    for _ in range(3):
        assert len(here.scope_signals(query, ["router"], SCOPE).ids) == 20
    with there._pool.connection() as conn:
        conn.execute("TRUNCATE memory_index_rows CASCADE")
    assert here.scope_signals(query, ["router"], SCOPE).ids == []
    assert counters(here) == {"ana": 0}


@on_postgres
def test_an_older_database_gets_its_counters_from_its_rows(database_url: str) -> None:
    """A database made before the counters gets them, counted from the rows it holds, and the triggers that
    keep them, when opened; made once."""
    first = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    rng, nrng = random.Random(19), np.random.default_rng(19)
    for user, n in (("ana", 12), ("bo", 5)):
        first.insert([unit(nrng) for _ in range(n)], payloads=[payload(user, rng) for _ in range(n)])
    with first._pool.connection() as conn:  # as the index was before
        for event in ("insert", "update", "delete", "truncate"):
            conn.execute(f"DROP TRIGGER memory_index_scopes_{event} ON memory_index_rows")
        conn.execute("DROP FUNCTION memory_index_count_scopes()")
        conn.execute("DROP TABLE memory_index_scopes")
        conn.execute("DELETE FROM memory_index_upgrades WHERE name = 'scope_counts'")
    first.insert([unit(nrng)], payloads=[payload("ana", rng)])  # uncounted: made before
    first.close()
    index = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    try:
        assert counters(index) == row_counts(index) == {"ana": 13, "bo": 5}
        index.insert([unit(nrng)], payloads=[payload("bo", rng)])
        again = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
        again.close()  # a second open counts nothing twice
        assert counters(index) == row_counts(index) == {"ana": 13, "bo": 6}
    finally:
        index.close()


@on_postgres
def test_an_older_database_gets_the_departures_log_when_opened(database_url: str) -> None:
    """A database made before the departures were logged gets their table, and triggers that log them,
    once, when opened."""
    first = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    rng, nrng = random.Random(23), np.random.default_rng(23)
    first.insert([unit(nrng) for _ in range(4)], payloads=[payload("ana", rng) for _ in range(4)])
    with first._pool.connection() as conn:  # as the index was before
        conn.execute("DROP TABLE memory_index_departures")
        conn.execute("DELETE FROM memory_index_upgrades WHERE name = 'scope_departures'")
    first.close()
    index = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    try:
        [hit, *_] = index.list({"user_id": "ana"}, top_k=10)
        index.delete(hit.id)
        again = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
        again.close()  # a second open makes nothing twice
        with index._pool.connection() as conn:
            logged = conn.execute(
                "SELECT d.user_id, d.removed, s.removed FROM memory_index_departures AS d"
                " JOIN memory_index_scopes AS s USING (collection, user_id)"
            ).fetchall()
            upgrades = conn.execute(
                "SELECT count(*) FROM memory_index_upgrades WHERE name = 'scope_departures'"
            ).fetchone()
        assert logged == [("ana", 1, 1)] and upgrades == (1,)
    finally:
        index.close()


@pytest.mark.postgres
@on_postgres
def test_nothing_is_kept_past_its_idle_time_or_a_forget(
    indexes: tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock],
) -> None:
    here, _, _, clock = indexes
    rng, nrng = random.Random(3), np.random.default_rng(3)
    for user in ("ana", "tom"):
        here.insert([unit(nrng) for _ in range(12)], payloads=[payload(user, rng) for _ in range(12)])
    query = unit(nrng)
    here.scope_signals(query, ["router"], {"user_id": "ana"})
    here.scope_signals(query, ["router"], {"user_id": "tom"})
    assert "scopes=2, rows=24" in repr(here._scopes)
    here.forget_scope({"user_id": "ana"})
    assert "scopes=1, rows=12" in repr(here._scopes)
    clock.now += pg_scopes.IDLE_SECONDS + 1
    assert here.scope_signals(query, ["router"], {"user_id": "ana"}).ids == []
    assert "scopes=0" in repr(here._scopes)


@pytest.mark.postgres
@on_postgres
def test_filters_beyond_the_scope_are_read_every_time(
    indexes: tuple[PostgresIndex, PostgresIndex, PostgresIndex, Clock],
) -> None:
    here, _, fresh, _ = indexes
    rng, nrng = random.Random(5), np.random.default_rng(5)
    payloads = [{**payload("ana", rng), "category": "billing" if i % 2 else "account"} for i in range(20)]
    here.insert([unit(nrng) for _ in payloads], payloads=payloads)
    query, filters = unit(nrng), {"user_id": "ana", "category": "billing"}
    kept = here.scope_signals(query, ["invoice"], filters)
    same(kept, fresh.scope_signals(query, ["invoice"], filters))
    assert len(kept.ids) == 10 and "scopes=0" in repr(here._scopes)


def test_pgvector_rows_become_float32_bytes() -> None:
    vector = [0.25, -0.5, 1.0]
    row = (1, "a", "2026-01-01", vector, "sms", True)
    [made] = pg_scopes.as_rows([row], PgvectorVectors())
    assert np.frombuffer(made[3], dtype="<f4").tolist() == vector and made[4:] == ("sms", True)
    assert pg_scopes.as_rows([row], ByteaVectors()) == [row]


class Held:
    """A ``later`` for an index that holds the jobs handed to it until the test runs them."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None]] = []

    def __call__(self, job: Callable[[], None]) -> None:
        self.jobs.append(job)

    def run(self) -> None:
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job()


def holding(database_url: str, held: Held) -> PostgresIndex:
    """An index keeping scopes of 8+ rows whose later work (the terms' loads) ``held`` holds."""
    scopes = PgScopeCache(min_rows=8)
    return PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=scopes, later=held
    )


@pytest.mark.postgres
@on_postgres
def test_a_first_read_leaves_the_terms_for_after_the_recall_and_every_score_stays_the_sqls(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recall that first reads a large scope reads its rows only and has PostgreSQL score the keywords
    (as every recall does until the terms are read); the terms are read after it, by ``later``, and then
    score the keywords from memory, the same floats, through rows written and deleted in between."""
    held = Held()
    here = holding(database_url, held)
    fresh = PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=10**9)
    )
    sql_scored: list[int] = []
    real_matches = pg_keywords.matches

    def counting(*args: Any, **kwargs: Any) -> Any:
        sql_scored.append(1)
        return real_matches(*args, **kwargs)

    monkeypatch.setattr(pg_keywords, "matches", counting)
    terms_read: list[int] = []
    real_terms = pg_scopes.ScopeReader.terms

    def counting_terms(reader: pg_scopes.ScopeReader) -> list[Any]:
        found = real_terms(reader)
        terms_read.append(len(found))
        return found

    monkeypatch.setattr(pg_scopes.ScopeReader, "terms", counting_terms)
    rng, nrng = random.Random(11), np.random.default_rng(11)
    try:
        ids = [f"m{i}" for i in range(30)]
        here.insert([unit(nrng) for _ in ids], payloads=[payload("ana", rng) for _ in ids], ids=ids)

        def recall_is_the_sqls() -> int:
            """A recall of ``here`` equal to a fresh read and to the SQL's BM25; how many times it had
            PostgreSQL score the keywords."""
            query, words = unit(nrng), rng.sample(WORDS, 3)
            sql_scored.clear()
            kept = here.scope_signals(query, words, SCOPE)
            by_sql = len(sql_scored)
            same(kept, fresh.scope_signals(query, words, SCOPE))
            same_keywords(kept, fresh, words, SCOPE)
            return by_sql

        assert recall_is_the_sqls() == 1  # the first read: rows only, keywords by PostgreSQL
        assert terms_read == [] and len(held.jobs) == 1 and "scopes=1, rows=30" in repr(here._scopes)
        assert recall_is_the_sqls() == 1  # not read yet: PostgreSQL again, and no second load handed out
        assert len(held.jobs) == 1
        here.delete("m3")  # between the recall and the load: the load keeps the terms of the rows kept
        here.insert([unit(nrng)], payloads=[payload("ana", rng)], ids=["m30"])
        here.insert([unit(nrng)], payloads=[payload("ana", rng)], ids=["m31"])
        held.run()
        assert terms_read == [31]  # the scope's rows now, 31 of them (m3 gone, m30 and m31 new)
        here.delete("m31")  # never kept: its terms must not count (BM25's N) once it is gone
        # the deletion and the new row are seen by the check; every score from the terms kept
        assert [recall_is_the_sqls() for _ in range(3)] == [0, 0, 0]
        here.update("m5", payload=payload("ana", rng))
        assert recall_is_the_sqls() == 0
        assert held.jobs == [] and terms_read == [31]
    finally:
        here.close()
        fresh.close()


@pytest.mark.postgres
@on_postgres
def test_a_failed_load_of_the_terms_is_handed_out_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held()
    here = holding(database_url, held)
    rng, nrng = random.Random(12), np.random.default_rng(12)
    try:
        here.insert([unit(nrng) for _ in range(10)], payloads=[payload("ana", rng) for _ in range(10)])
        here.scope_signals(unit(nrng), ["router"], SCOPE)

        def failing(reader: pg_scopes.ScopeReader) -> list[Any]:
            raise psycopg.OperationalError("the server went away")

        with monkeypatch.context() as patched:
            patched.setattr(pg_scopes.ScopeReader, "terms", failing)
            held.run()  # logged, not raised: recall goes on with PostgreSQL's scores
        here.scope_signals(unit(nrng), ["router"], SCOPE)
        assert len(held.jobs) == 1  # handed out again
        held.run()
        assert here._scopes._kept[next(iter(here._scopes._kept))].terms is not None
    finally:
        here.close()


@pytest.mark.postgres
@on_postgres
def test_by_default_the_terms_are_read_by_the_index_own_thread(database_url: str) -> None:
    here = PostgresIndex(
        database_url, collection_name="m", embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=8)
    )
    rng, nrng = random.Random(13), np.random.default_rng(13)
    try:
        here.insert([unit(nrng) for _ in range(10)], payloads=[payload("ana", rng) for _ in range(10)])
        here.scope_signals(unit(nrng), ["router"], SCOPE)
        here._background.drain()  # the load handed out has run
        [kept] = here._scopes._kept.values()
        assert kept.terms is not None and len(kept.terms) == 10 and not kept.loading
    finally:
        here.close()
    here.close()  # twice: nothing left to stop


@on_postgres
def test_the_rid_check_reads_the_index_alone_and_an_older_database_gets_that_index(database_url: str) -> None:
    """A kept scope's check is an index-only scan of ``(collection, user_id, rid)`` (no heap fetch once
    vacuumed); a database made before that index gets it, and loses the index it replaces, when opened."""
    first = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    rng, nrng = random.Random(7), np.random.default_rng(7)
    first.insert([unit(nrng) for _ in range(40)], payloads=[payload("ana", rng) for _ in range(40)])
    first.insert([unit(nrng) for _ in range(40)], payloads=[payload("bo", rng) for _ in range(40)])
    with first._pool.connection() as conn:  # as the index was made before
        conn.execute("DROP INDEX memory_index_rows_user_rid")
        conn.execute("CREATE INDEX memory_index_rows_user ON memory_index_rows (collection, user_id)")
    first.close()
    index = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    try:
        with index._pool.connection() as conn:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'memory_index_rows'"
                ).fetchall()
            }
            assert "memory_index_rows_user_rid" in names and "memory_index_rows_user" not in names
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM (ANALYZE) memory_index_rows")
            conn.execute("SET enable_seqscan = off")  # 80 rows: the planner would read the table
            where = index._scope(SCOPE)
            assert where is not None
            reader = pg_scopes.ScopeReader(conn, index._columns, where, index._vectors)
            expected = [r[0] for r in conn.execute("SELECT rid FROM memory_index_rows WHERE user_id = 'ana'")]
            assert sorted(reader.rids().tolist()) == sorted(expected) and len(expected) == 40
            explain = sql.SQL("EXPLAIN (ANALYZE) {}").format(pg_scopes._RIDS.format(where[0]))
            plan = "\n".join(r[0] for r in conn.execute(explain, where[1]).fetchall())
            assert "Index Only Scan using memory_index_rows_user_rid" in plan and "Heap Fetches: 0" in plan
            conn.execute("RESET enable_seqscan")
            conn.autocommit = False
    finally:
        index.close()
