"""Recall's kept scopes (``core.memory.sqlite_scopes``) and the array ranking: exactly what a read from the
file and the loops they replaced give, through every kind of write (own, rolled back, another process's).

The references below are the code as it was before the scopes were kept: the scope read straight from
the file, sorted by (written time, rowid) in Python, and ``rank`` with its Python loops and dict."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from core.memory import ranking, sqlite_keywords, sqlite_scopes
from core.memory.filters import scope_of
from core.memory.rows import ScopeSignals, unit_vector, written_at
from core.memory.vectors import SQLiteVectorStore

DIMS = 384
BIG = sqlite_scopes.MIN_ROWS + 44  # kept in memory
SMALL = 30  # read from the file every time
WORDS = [
    "router",
    "refund",
    "invoice",
    "fence",
    "painted",
    "wifi",
    "billing",
    "delivery",
    "password",
    "upgrade",
]
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def unit(rng: np.random.Generator) -> NDArray[np.float32]:
    vector = rng.standard_normal(DIMS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def payload(user: str, rng: random.Random, **extra: Any) -> dict[str, Any]:
    minutes = rng.randint(0, 60 * 24 * 30)
    created: str | None = (T0 + timedelta(minutes=minutes, microseconds=rng.randint(0, 999_999))).isoformat()
    if rng.random() < 0.03:
        created = None  # a row without a readable time
    elif rng.random() < 0.05:
        created = T0.isoformat()  # equal times: the rowid decides
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
    channel = rng.choice(["sms", "sms", "sms", "email", None])  # runs of one channel; some rows without
    return {"user_id": user, "data": text, "created_at": created, "source_channel": channel, **extra}


def reference_signals(
    path: Path, vector: NDArray[np.float32], terms: Sequence[str], user: str
) -> tuple[ScopeSignals, list[str | None]]:
    """The scope read as ``scope_signals`` did it before scopes were kept: a fresh connection, every row;
    and each row's source channel, read from its payload."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT rid, id, created_at, vector, payload FROM memory_vectors"
            " WHERE collection = 'threadline' AND user_id = ? ORDER BY rid",
            (user,),
        ).fetchall()
        scored = sqlite_keywords.scores(db, "threadline", scope_of({"user_id": user}), terms)
    written = [written_at(r[2]) for r in rows]
    order = sorted(
        range(len(rows)),
        key=lambda i: (w.timestamp() if (w := written[i]) is not None else float("-inf"), rows[i][0]),
    )
    rows = [rows[i] for i in order]
    written = [written[i] for i in order]
    matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), DIMS)
    dense = (matrix @ unit_vector(vector)).astype(np.float32)
    keyword = np.zeros(len(rows), dtype=np.float32)
    position = {int(r[0]): i for i, r in enumerate(rows)}
    for rid, score in scored:
        i = position.get(rid)
        if i is not None and score > 0:
            keyword[i] = score
    channels = [json.loads(r[4]).get("source_channel") for r in rows]
    signals = ScopeSignals(ids=[str(r[1]) for r in rows], written=written, dense=dense, keyword=keyword)
    return signals, channels


def reference_conversations(
    written: Sequence[datetime | None], channels: Sequence[str | None] | None
) -> NDArray[np.int64]:
    """A loop: a new conversation after a gap over the hour, a missing time, or a change of channel."""
    numbers = [0] * len(written)
    for i in range(1, len(written)):
        before, now = written[i - 1], written[i]
        split = before is None or now is None or abs(now - before) > ranking.CONVERSATION_GAP
        numbers[i] = numbers[i - 1] + int(split or (channels is not None and channels[i] != channels[i - 1]))
    return np.array(numbers, dtype=np.int64)


def reference_rank(
    dense: NDArray[np.float32],
    keyword: NDArray[np.float32],
    written: Sequence[datetime | None],
    limit: int,
    channels: Sequence[str | None] | None = None,
) -> list[tuple[int, float]]:
    """``ranking.rank`` with loops: Python lists, dicts for the fusion, the conversation lift and the
    recency, ``sorted``."""
    count = len(dense)
    if count == 0 or limit <= 0:
        return []
    conversation = reference_conversations(written, channels)
    dense_s = ranking.smooth(np.asarray(dense, dtype=np.float32), conversation)
    keyword_s = ranking.smooth(np.asarray(keyword, dtype=np.float32), conversation)
    newest_first = np.arange(count)[::-1]
    by_dense = newest_first[np.argsort(-dense_s[newest_first], kind="stable")]
    by_keyword = newest_first[np.argsort(-keyword_s[newest_first], kind="stable")]
    dense_ranking = [int(i) for i in by_dense if dense_s[i] >= ranking.MIN_DENSE or keyword_s[i] > 0]
    keyword_ranking = [int(i) for i in by_keyword if keyword_s[i] > 0]
    fused = ranking.reciprocal_rank_fusion([dense_ranking, keyword_ranking])
    best: dict[int, float] = {}
    for i, score in fused.items():
        best[int(conversation[i])] = max(best.get(int(conversation[i]), 0.0), score)
    stamps = [w.timestamp() for w in written if w is not None]
    newest = max(stamps) if stamps else 0.0
    half_life = ranking.RECENCY_HALF_LIFE.total_seconds()
    scored: dict[int, float] = {}
    for i, score in fused.items():
        when = written[i]
        decay = 0.0 if when is None else float(np.exp2(-(newest - when.timestamp()) / half_life))
        factor = 1.0 - ranking.RECENCY_WEIGHT * (1.0 - decay)
        scored[i] = (score + ranking.CONVERSATION_LIFT * best[int(conversation[i])]) * factor
    return sorted(scored.items(), key=lambda item: (-item[1], -item[0]))[:limit]


def same(got: ScopeSignals, expected: ScopeSignals) -> None:
    """The same rows and keyword scores; the same cosines to float32 rounding: a kept scope multiplies over
    its slots (a deleted row's stays behind), a read over its rows, and BLAS may add a row's products in
    another order when the matrix has another shape. The rankings compared after this are exactly equal."""
    assert got.ids == expected.ids
    assert got.written == expected.written
    assert got.dense.dtype == expected.dense.dtype
    np.testing.assert_allclose(got.dense, expected.dense, rtol=0, atol=1e-6)
    assert got.keyword.tobytes() == expected.keyword.tobytes()


def rid_of(path: Path, vector_id: str) -> int:
    with sqlite3.connect(path) as db:
        (rid,) = db.execute("SELECT rid FROM memory_vectors WHERE id = ?", (vector_id,)).fetchone()
    return int(rid)


class World:
    """A store with a big and a small customer, and checks of every customer against the reference."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SQLiteVectorStore(path)
        self.rng = random.Random(7)
        self.np_rng = np.random.default_rng(7)
        self.users = {"big": BIG, "small": SMALL, "other": BIG}
        for user, count in self.users.items():
            self.add(user, count)

    def add(self, user: str, count: int) -> list[str]:
        ids = [f"{user}-{self.rng.getrandbits(48):x}" for _ in range(count)]
        self.store.insert(
            [unit(self.np_rng) for _ in ids], payloads=[payload(user, self.rng) for _ in ids], ids=ids
        )
        return ids

    def ids(self, user: str) -> list[str]:
        return [hit.id for hit in self.store.list({"user_id": user})]

    def check(self) -> None:
        for _ in range(2):  # the first read may fill or refresh a kept scope, the second uses it
            for user in self.users:
                vector = unit(self.np_rng)
                terms = self.rng.sample(WORDS, 3)
                got = self.store.scope_signals(vector, terms, {"user_id": user})
                expected, channels = reference_signals(self.path, vector, terms, user)
                same(got, expected)
                for limit in (1, 5, len(got.ids) + 1):
                    assert ranking.rank(got.dense, got.keyword, got.written, limit=limit) == reference_rank(
                        expected.dense, expected.keyword, expected.written, limit, channels
                    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path / "vectors.sqlite3")
    yield made
    made.store.close()


def test_a_large_scope_is_kept_and_a_small_one_is_not(world: World) -> None:
    world.check()
    kept = world.store._shared.scopes
    assert "scopes=2" in repr(kept) and f"rows={2 * BIG}" in repr(kept)


def test_kept_scopes_follow_every_write_of_this_process(world: World) -> None:
    world.check()
    added = world.add("big", 3)  # new rows (random times: not only at the end)
    world.check()
    before = rid_of(world.path, added[-1])
    world.store.update(added[-1], vector=unit(world.np_rng))  # deleted and written again: same rowid
    assert rid_of(world.path, added[-1]) == before
    world.check()
    world.store.delete(world.ids("big")[0])  # the newest: what is left is a prefix of the kept rows
    world.check()
    victim = world.ids("big")[5]
    world.store.delete(victim)
    world.add("big", 1)  # may get the deleted rowid
    world.check()
    moved = world.store.reassign("other", "big")  # the whole other customer moves in
    assert moved
    world.users.pop("other")
    world.check()
    world.store.reassign("big", "other", handles={"sms:+1"})  # no row has that handle: nothing moves
    world.store.forget_written_before({"user_id": "big"}, T0 + timedelta(days=10))
    world.check()
    world.store.forget_scope({"user_id": "big"})
    world.check()


def test_a_rolled_back_write_leaves_the_kept_scope_as_it_was(world: World) -> None:
    world.check()

    def delete_then_fail() -> None:
        with world.store._shared.writing() as conn:
            conn.execute("DELETE FROM memory_vectors WHERE user_id = 'big'")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        delete_then_fail()
    world.check()


def test_another_process_writing_drops_what_is_kept(world: World) -> None:
    world.check()
    other = SQLiteVectorStore(world.path)  # another connection, as the CLI beside the server
    try:
        newest = other.list({"user_id": "big"}, top_k=1)[0]
        other.update(newest.id, vector=unit(world.np_rng))
        other.insert([unit(world.np_rng)], payloads=[payload("big", world.rng)], ids=["from-the-cli"])
    finally:
        other.close()
    world.check()
    assert "from-the-cli" in world.store.scope_signals(unit(world.np_rng), [], {"user_id": "big"}).ids


def test_metadata_filters_read_from_the_file(world: World) -> None:
    world.store.insert(
        [unit(world.np_rng)], payloads=[payload("big", world.rng, category="profile")], ids=["profiled"]
    )
    world.check()
    signals = world.store.scope_signals(
        unit(world.np_rng), ["router"], {"user_id": "big", "category": "profile"}
    )
    assert signals.ids == ["profiled"]


@pytest.mark.parametrize("seed", range(20))
def test_array_ranking_is_the_loops_it_replaced(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 400))
    # coarse values, so that equal scores (ties) happen
    dense = (rng.integers(-2, 8, count) / 10).astype(np.float32)
    keyword = np.where(rng.random(count) < 0.3, rng.integers(0, 4, count), 0).astype(np.float32)
    written: list[datetime | None] = []
    at = T0
    for _ in range(count):
        at += timedelta(minutes=int(rng.choice([1, 5, 59, 60, 61, 300])))
        written.append(None if rng.random() < 0.02 else at)
    for limit in (0, 1, 10, count + 5):
        assert ranking.rank(dense, keyword, written, limit=limit) == reference_rank(
            dense, keyword, written, limit
        )


@pytest.mark.parametrize("seed", range(10))
def test_conversations_from_timestamps_are_the_loop_over_datetimes(seed: int) -> None:
    rng = random.Random(seed)
    gap = ranking.CONVERSATION_GAP
    one = timedelta(microseconds=1)
    steps = [gap, gap + one, gap - one, gap * 2, timedelta(0), -gap, -gap - one, timedelta(minutes=3)]
    at = datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC)
    written: list[datetime | None] = []
    for _ in range(2000):
        at += rng.choice(steps) + timedelta(microseconds=rng.choice([0, 0, 0, rng.randint(0, 999_999)]))
        written.append(None if rng.random() < 0.03 else at)
    stamps = np.array([w.timestamp() if w is not None else -np.inf for w in written], dtype=np.float64)
    timed = ranking.WrittenTimes(written, stamps)
    assert timed == written
    assert ranking.conversations(timed).tolist() == ranking.conversations(written).tolist()
    assert ranking.conversations(ranking.WrittenTimes([], np.zeros(0))).tolist() == []
    with pytest.raises(ValueError, match="differ in length"):
        ranking.WrittenTimes(written, stamps[1:])


def test_appending_new_rows_in_place_equals_a_fresh_read_and_never_changes_an_older_matrix() -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from core.memory.scope_rows import ScopeRows

    dims, base = 8, datetime(2026, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(3)

    def row(rid: int, minutes: int) -> tuple[int, str, str, bytes]:
        vector = rng.random(dims, dtype=np.float32)
        return (rid, f"m{rid}", (base + timedelta(minutes=minutes)).isoformat(), vector.tobytes())

    rows = [row(i, i) for i in range(1, 300)]
    kept = ScopeRows.read(rows, dims)
    history = [kept]
    for step in range(300, 400):
        fresh = [row(step, step)]
        rows += fresh
        kept = kept.changed(np.zeros(0, np.int64), fresh)
        history.append(kept)
    again = ScopeRows.read(rows, dims)
    assert kept.ids == again.ids and np.array_equal(kept.matrix, again.matrix)
    assert np.array_equal(kept.by_rid, again.by_rid) and kept.matrix.flags["C_CONTIGUOUS"]
    # an older snapshot appends elsewhere (a copy), never over the newer rows
    older = history[50]
    snapshot = kept.matrix.copy()
    forked = older.changed(np.zeros(0, np.int64), [row(999, 10_000)])
    assert np.array_equal(kept.matrix, snapshot)
    assert forked.ids[-1] == "m999" and len(forked) == len(older) + 1
    # a row that is not the newest goes through the full path, still equal to a read
    late = [row(1000, 0)]
    rebuilt = kept.changed(np.zeros(0, np.int64), late)
    assert rebuilt.ids == ScopeRows.read(rows + late, dims).ids


def test_deleted_rows_leave_their_slots_behind_until_a_quarter_and_older_snapshots_never_change() -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from core.memory.scope_rows import ScopeRows

    dims, base = 8, datetime(2026, 1, 1, tzinfo=UTC)
    rng = np.random.default_rng(5)

    def row(rid: int, minutes: int) -> tuple[int, str, str, bytes]:
        vector = rng.random(dims, dtype=np.float32)
        return (rid, f"m{rid}", (base + timedelta(minutes=minutes)).isoformat(), vector.tobytes())

    rows = {rid: row(rid, rid) for rid in range(1, 401)}
    kept = ScopeRows.read(list(rows.values()), dims)
    snapshots: list[tuple[ScopeRows, np.ndarray]] = []
    compacted = 0
    for step in range(401, 701):
        # a turn's pattern: the newest memory is deleted (undo, supersession), another written after it;
        # every fifth turn a row in the middle goes too
        gone = [max(rows)] + ([sorted(rows)[step % 50]] if step % 5 == 0 else [])
        for rid in gone:
            rows.pop(rid)
        fresh = [row(step, step)]
        rows[step] = fresh[0]
        before_slots = kept.vectors.shape[0]
        kept = kept.changed(np.array(gone, dtype=np.int64), fresh)
        compacted += kept.vectors.shape[0] < before_slots
        snapshots.append((kept, kept.matrix.copy()))
        again = ScopeRows.read(list(rows.values()), dims)
        assert kept.ids == again.ids and kept.written == again.written
        assert np.array_equal(kept.matrix, again.matrix) and np.array_equal(kept.by_rid, again.by_rid)
        assert np.array_equal(kept.positions(again.rids), np.arange(len(again)))
        query = rng.random(dims, dtype=np.float32)
        np.testing.assert_allclose(kept.cosines(query), again.matrix @ query, rtol=1e-6)
        assert kept.vectors.shape[0] * 3 <= (len(kept) + 1) * 4  # never over a quarter left behind (+ one)
    assert compacted >= 2  # the slots left behind were dropped now and then, not kept forever
    for snapshot, matrix in snapshots:  # what was handed out never changed under a later append
        assert np.array_equal(snapshot.matrix, matrix)
