"""Recall ranks the same memories the same way on PostgreSQL as on SQLite: both indexes read each row's
source channel with its scope (``scope_signals`` hands out ``ranking.WrittenTimes`` with ``sources``), so
a change of channel starts a new conversation on either backend, not only a gap in time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.memory import ranking
from core.memory.pg_index import PostgresIndex
from core.memory.rows import ScopeSignals
from core.memory.vectors import SQLiteVectorStore

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

DIMS = 16
QUERY = "router dropping"

# id, written, channel (None: no source_channel), text, cosine to the query vector
MEMORIES: list[tuple[str, str, str | None, str, float]] = [
    # one time window, two channels: sms, then telegram a minute later
    ("sms-1", "2026-01-05T09:00:00+00:00", "sms", "my router keeps dropping", 0.5),
    ("sms-2", "2026-01-05T09:01:00+00:00", "sms", "I restarted it twice", 0.3),
    ("tg-1", "2026-01-05T09:02:00+00:00", "telegram", "also the invoice total is wrong", 0.05),
    ("tg-2", "2026-01-05T09:03:00+00:00", "telegram", "can I get a refund for it", 0.02),
    # hours later, by email
    ("mail-1", "2026-01-05T15:00:00+00:00", "email", "the new router arrived", 0.2),
    ("mail-2", "2026-01-05T15:02:00+00:00", "email", "it works now", 0.15),
    ("mail-3", "2026-01-05T15:03:00+00:00", "email", "thanks a lot", 0.01),
    # days later, by sms again, and one memory whose channel is not known
    ("sms-3", "2026-01-08T10:00:00+00:00", "sms", "router lights blinking orange", 0.4),
    ("sms-4", "2026-01-08T10:01:00+00:00", "sms", "please help", 0.08),
    ("plain", "2026-01-08T10:02:00+00:00", None, "any news on the invoice", 0.03),
]


def toward(cosine: float, axis: int) -> np.ndarray:
    """A unit vector whose cosine to the query vector (the first axis) is ``cosine``."""
    vector = np.zeros(DIMS, dtype=np.float32)
    vector[0] = cosine
    vector[axis] = np.sqrt(1.0 - cosine**2)
    return vector


def fill(index: SQLiteVectorStore | PostgresIndex) -> None:
    payloads: list[dict[str, Any]] = []
    for _, written, channel, text, _ in MEMORIES:
        payload: dict[str, Any] = {"user_id": "c", "data": text, "created_at": written, "kind": "note"}
        if channel is not None:
            payload["source_channel"] = channel
        payloads.append(payload)
    index.insert(
        [toward(m[4], 1 + i % (DIMS - 1)) for i, m in enumerate(MEMORIES)],
        payloads=payloads,
        ids=[m[0] for m in MEMORIES],
    )
    # another customer's memories, on other channels in the same minutes: never in "c"'s scope
    index.insert(
        [toward(0.9, 2), toward(0.9, 3)],
        payloads=[
            {"user_id": "d", "data": "router down", "created_at": MEMORIES[0][1], "source_channel": "slack"},
            {"user_id": "d", "data": "router up", "created_at": MEMORIES[2][1], "source_channel": "sms"},
        ],
        ids=["d-1", "d-2"],
    )


@pytest.fixture
def both(database_url: str, tmp_path: Path) -> Iterator[tuple[PostgresIndex, SQLiteVectorStore]]:
    pg = PostgresIndex(database_url, collection_name="m", embedding_model_dims=DIMS)
    lite = SQLiteVectorStore(tmp_path / "v.sqlite3", collection_name="m", embedding_model_dims=DIMS)
    fill(pg)
    fill(lite)
    yield pg, lite
    pg.close()
    lite.close()


def starts(written: Any) -> list[int]:
    """Where ``ranking.conversations`` starts a new conversation (positions in written order)."""
    return (np.flatnonzero(np.diff(ranking.conversations(written))) + 1).tolist()


def recall_order(signals: ScopeSignals, written: Any = None) -> tuple[list[str], list[float]]:
    """The ids ``ranking.ranked`` puts first to last on ``signals``, and their scores."""
    order, scores = ranking.ranked(
        signals.dense, signals.keyword, signals.written if written is None else written
    )
    return [signals.ids[i] for i in order.tolist()], scores.tolist()


@pytest.mark.parametrize(
    "filters",
    [{"user_id": "c"}, {"user_id": "c", "kind": "note"}],  # the second filters the rows read in Python
    ids=["scope", "scope-and-metadata"],
)
def test_a_change_of_channel_ranks_the_same_on_postgresql_as_on_sqlite(
    both: tuple[PostgresIndex, SQLiteVectorStore], filters: Mapping[str, Any]
) -> None:
    pg, lite = both
    query = toward(1.0, 1)
    terms = ranking.keyword_terms(QUERY)
    on_pg = pg.scope_signals(query, terms, filters)
    on_lite = lite.scope_signals(query, terms, filters)

    assert on_pg.ids == on_lite.ids == [m[0] for m in MEMORIES]
    assert isinstance(on_pg.written, ranking.WrittenTimes) and on_pg.written.sources is not None
    assert isinstance(on_lite.written, ranking.WrittenTimes) and on_lite.written.sources is not None
    assert on_pg.written == on_lite.written
    assert on_pg.written.stamps.tolist() == on_lite.written.stamps.tolist()
    assert on_pg.written.sources.tolist() == on_lite.written.sources.tolist()
    assert on_pg.written.sources.tolist() == [ranking.source_code(m[2]) for m in MEMORIES]
    # sms then telegram a minute apart: two conversations, as are the sms and the unknown channel
    assert starts(on_pg.written) == starts(on_lite.written) == [2, 4, 7, 9]

    pg_ids, pg_scores = recall_order(on_pg)
    lite_ids, lite_scores = recall_order(on_lite)
    assert pg_ids == lite_ids
    assert pg_scores == pytest.approx(lite_scores, rel=1e-6)

    # the channel is what makes them agree: split by time only, the ranking is another one
    by_time_ids, _ = recall_order(on_lite, written=list(on_lite.written))
    assert starts(list(on_lite.written)) == [4, 7]
    assert by_time_ids != lite_ids
    assert "tg-1" in by_time_ids and "tg-1" not in lite_ids  # the sms's neighbour only on one channel


def test_both_backends_time_a_memory_by_when_it_was_said(
    both: tuple[PostgresIndex, SQLiteVectorStore],
) -> None:
    """A memory written late (``said_at`` before ``created_at``) is placed and dated by ``said_at`` on
    both; one without ``said_at`` by ``created_at``; a ``said_at`` that is not text is ignored alike."""
    pg, lite = both
    written = "2026-06-01T12:00:00+00:00"
    rows = [
        ("late-1", {"said_at": "2026-01-05T09:00:00+00:00"}),
        ("late-2", {"said_at": "2026-01-05T09:00:30+00:00"}),
        ("now-1", {}),
        ("odd-1", {"said_at": 17}),
    ]
    for index in (pg, lite):
        index.insert(
            [toward(0.8, 1 + i) for i in range(len(rows))],
            payloads=[
                {"user_id": "e", "data": "the modem", "created_at": written, "source_channel": "sms", **extra}
                for _, extra in rows
            ],
            ids=[memory_id for memory_id, _ in rows],
        )
    on_pg = pg.scope_signals(toward(1.0, 1), ["modem"], {"user_id": "e"})
    on_lite = lite.scope_signals(toward(1.0, 1), ["modem"], {"user_id": "e"})
    assert on_pg.ids == on_lite.ids == ["late-1", "late-2", "now-1", "odd-1"]
    assert on_pg.written == on_lite.written
    assert [w.isoformat() if w else None for w in on_pg.written] == [
        "2026-01-05T09:00:00+00:00",
        "2026-01-05T09:00:30+00:00",
        written,
        written,
    ]
    assert recall_order(on_pg)[0] == recall_order(on_lite)[0]
