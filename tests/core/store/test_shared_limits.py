"""Shared limits (issue 13): the same answers from this process's limits and from the database's, and the
database's shared by two processes (two engines on one database, the in-test stand-in for two hosts).

The clock is injected (epoch seconds) wherever an exact wait is asserted; where the database's own clock
runs, only orderings and generous lower bounds are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from channels.limits import LocalLimits
from core.ports import SharedLimits
from core.settings import TelegramSettings
from core.store.db import Database
from core.store.models import LimitWindow, RateBucket
from core.store.shared_limits import DatabaseLimits, key_hash, prune
from tests.core.harness import make_settings

Clock = list[float]


@asynccontextmanager
async def opened(url: str, count: int = 1) -> AsyncIterator[list[Database]]:
    """``count`` separate ``Database`` objects (engines) on one database: one per stand-in process."""
    dbs = [await Database.open(url)]
    dbs += [await Database.open(url, run_migrations=False) for _ in range(count - 1)]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.aclose()


@pytest.fixture(params=["local", "database"])
async def make_limits(
    request: pytest.FixtureRequest, database_url: str
) -> AsyncIterator[Callable[[Clock], SharedLimits]]:
    """Both implementations of ``SharedLimits``, each on the injected clock ``now[0]``."""
    async with opened(database_url) as [db]:

        def make(now: Clock) -> SharedLimits:
            if request.param == "local":
                return LocalLimits(clock=lambda: now[0])
            return DatabaseLimits(db, clock=lambda: now[0])

        yield make


# ----- the contract, on both implementations -----------------------------------------------------


async def test_pace_allows_a_burst_then_one_per_interval(make_limits: Callable[[Clock], Any]) -> None:
    now = [1_000.0]
    limits = make_limits(now)
    waits = [await limits.pace("C1", interval=1.0, burst=3) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])
    assert await limits.pace("C2", interval=1.0, burst=3) == 0.0  # another key has its own slots
    now[0] += 10.0  # idle long enough: the burst is back
    assert [await limits.pace("C1", interval=1.0, burst=3) for _ in range(3)] == pytest.approx([0.0] * 3)
    assert await limits.pace("C1", interval=0.0, burst=1) == 0.0  # pacing off


async def test_reserve_caps_uses_in_a_window_and_release_gives_one_back(
    make_limits: Callable[[Clock], Any],
) -> None:
    now = [1_000.0]
    limits = make_limits(now)
    first = await limits.reserve("cap", limit=2, window=3600.0)
    now[0] += 1.0
    second = await limits.reserve("cap", limit=2, window=3600.0)
    assert first is not None and second is not None
    assert await limits.reserve("cap", limit=2, window=3600.0) is None  # the cap is reached
    assert await limits.reserve("other", limit=2, window=3600.0) is not None  # keys are apart
    await limits.release("cap", second)  # its action failed: the use is given back
    assert await limits.reserve("cap", limit=2, window=3600.0) is not None
    assert await limits.reserve("cap", limit=2, window=3600.0) is None
    await limits.release("cap", 12345.0)  # an unknown ticket is not an error
    now[0] += 3599.5  # the first use has left the window; the one taken 1 s later has not
    assert await limits.reserve("cap", limit=2, window=3600.0) is not None
    assert await limits.reserve("cap", limit=2, window=3600.0) is None


async def test_a_single_use_mark_is_refused_until_it_expires(make_limits: Callable[[Clock], Any]) -> None:
    now = [1_000.0]
    limits = make_limits(now)
    mark = await limits.reserve("token", limit=1, window=600.0)
    assert mark is not None
    assert await limits.reserve("token", limit=1, window=600.0) is None
    now[0] += 601.0
    again = await limits.reserve("token", limit=1, window=600.0)
    assert again is not None
    await limits.release("token", again)
    assert await limits.reserve("token", limit=1, window=600.0) is not None
    assert await limits.reserve("never", limit=0, window=600.0) is None


# ----- two processes on one database --------------------------------------------------------------


async def test_two_processes_share_one_pace(database_url: str) -> None:
    """Alternating between two processes, the waits grow as one process's would (separately, each
    process would start its own burst: 0, 0, 1, 1, ...)."""
    now = [5_000.0]
    async with opened(database_url, 2) as dbs:
        a, b = (DatabaseLimits(db, clock=lambda: now[0]) for db in dbs)
        waits = [await (a if i % 2 == 0 else b).pace("slack:C1", interval=1.0, burst=1) for i in range(6)]
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


async def test_two_processes_at_once_take_distinct_slots_by_the_database_clock(database_url: str) -> None:
    """Concurrent reservations from two engines, on the database's own clock: every one gets its own
    slot, so the k-th shortest wait is about k intervals (a lower bound with a generous margin)."""
    async with opened(database_url, 2) as dbs:
        a, b = (DatabaseLimits(db) for db in dbs)
        waits = await asyncio.gather(
            *(limits.pace("tg:overall", interval=10.0, burst=1) for limits in (a, b) * 5)
        )
    for k, wait in enumerate(sorted(waits)):
        assert wait >= 10.0 * k - 5.0, sorted(waits)
        assert wait <= 10.0 * k + 0.001, sorted(waits)  # never later than its slot


async def test_two_processes_at_once_share_one_cap_and_one_mark(database_url: str) -> None:
    async with opened(database_url, 2) as dbs:
        a, b = (DatabaseLimits(db) for db in dbs)
        caps = await asyncio.gather(
            *(limits.reserve("email:cap:x", limit=3, window=3600.0) for limits in (a, b) * 6)
        )
        marks = await asyncio.gather(
            *(limits.reserve("mailgun:token:t", limit=1, window=600.0) for limits in (a, b) * 6)
        )
    assert sum(ticket is not None for ticket in caps) == 3
    assert sum(ticket is not None for ticket in marks) == 1


async def test_the_tables_hold_hashes_not_keys_and_run_out_rows_are_pruned(database_url: str) -> None:
    now = [10_000.0]
    address = "ana.souza@example.com"
    async with opened(database_url) as [db]:
        limits = DatabaseLimits(db, clock=lambda: now[0])
        assert await limits.reserve(f"email:cap:{address}", limit=2, window=60.0) is not None
        assert await limits.reserve(f"mark:{address}", limit=1, window=600.0) is not None
        await limits.pace(f"flood:{address}", interval=1.0, burst=2)
        async with db.session() as session:
            keys = [
                *await session.scalars(select(LimitWindow.key)),
                *await session.scalars(select(RateBucket.key)),
            ]
        assert sorted(keys) == sorted(
            key_hash(f"{kind}:{address}") for kind in ("email:cap", "mark", "flood")
        )
        assert not any("@" in key or "ana" in key for key in keys)

        now[0] += 120.0  # the cap's use and the bucket have run out; the mark has not
        assert await prune(db, clock=lambda: now[0]) == 2
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(RateBucket)) == 0
            assert await session.scalar(select(func.count()).select_from(LimitWindow)) == 1
        assert await limits.reserve(f"mark:{address}", limit=1, window=600.0) is None  # still held
        assert await limits.pace(f"flood:{address}", interval=1.0, burst=2) == 0.0  # a fresh bucket


# ----- the composition root ------------------------------------------------------------------------


async def test_wire_binds_the_database_limits_on_postgresql_only(database_url: str, tmp_path: Path) -> None:
    """On PostgreSQL (scale mode) the adapters count in the database; on SQLite (one ``serve`` per data
    dir) they keep their process's limits, so no send waits for SQLite's write lock to pace itself."""
    from core.compose import build_adapters, wire

    settings = make_settings(tmp_path, database_url=database_url).model_copy(
        update={
            "telegram": TelegramSettings(
                bot_token=SecretStr("123456789:AAHfakeTOKENfor-threadline_tests0"),
                secret_token=SecretStr("s"),
                api_base_url="http://127.0.0.1:9/bot",
            )
        }
    )
    adapters = build_adapters(settings)
    wiring = await wire(settings, senders=adapters)
    try:
        pacer = adapters["telegram"]._pacer  # type: ignore[attr-defined]
        expected = DatabaseLimits if database_url.startswith("postgresql") else LocalLimits
        assert isinstance(pacer._limits, expected)
    finally:
        await wiring.hub.stop()
