"""A task cancelled while its session goes back to the pool (Ctrl-C, a lane stopping) returns the
connection cleanly: no traceback logged by SQLAlchemy's pool, nothing left checked out, and the task still
ends cancelled. On SQLite and PostgreSQL.

Without ``core.store.db._closed`` (a plain ``await session.close()``), the same loop on SQLite logged
"Exception during reset or similar ... CancelledError" for some of the cancelled closes and left
connections checked out (4 tracebacks and up to 3 connections out of 60 closes, in a run by hand; which
step the cancellation meets varies from run to run, so it is not a test): the traceback the chat's Ctrl-C
test once found on stderr."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text

from core.store.db import Database, _closed


async def _cancelled_while_closing(db: Database) -> int:
    """Sessions whose close is cancelled at each of its first steps (one of them is the pool's reset);
    how many were cancelled before their close ended (each of them must end cancelled)."""
    cancelled = 0
    for steps in range(1, 11):  # 0 would cancel the task before its first step: no close at all
        for _ in range(3):
            session = db.sessions()
            await session.execute(text("SELECT 1"))  # a connection checked out, a transaction open
            task = asyncio.ensure_future(_closed(session))
            for _ in range(steps):
                await asyncio.sleep(0)
            if task.done():
                await task
                continue
            cancelled += 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    return cancelled


async def test_a_session_closed_under_cancellation_returns_its_connection(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = await Database.open(database_url)
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            assert await _cancelled_while_closing(db) > 10
        assert [r for r in caplog.records if r.name.startswith("sqlalchemy")] == []
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.read() as session:  # the pool still serves
            assert (await session.execute(text("SELECT 2"))).scalar() == 2
    finally:
        await db.aclose()
