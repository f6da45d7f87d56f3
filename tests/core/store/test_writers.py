"""SQLite writers of one process queue on the database's lock: all of them commit, a session inside a
session does not wait for itself, and a writer stuck behind another for longer
than the busy timeout fails like SQLite would instead of hanging."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from core.store.db import Database
from core.store.models import OptOut


async def test_many_concurrent_writers_all_commit(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:

        async def write(i: int) -> None:
            async with db.session() as session:
                session.add(OptOut(address=f"sms:+1555000{i:04d}"))
                await session.flush()
                await asyncio.sleep(0)  # let the others in between statements
                async with db.session() as inner:  # nested: joins the queue position it already holds
                    await inner.execute(select(func.count()).select_from(OptOut))

        await asyncio.gather(*(write(i) for i in range(40)))
        async with db.read() as session:
            assert await session.scalar(select(func.count()).select_from(OptOut)) == 40
    finally:
        await db.aclose()


async def test_a_writer_waiting_past_the_busy_timeout_fails_instead_of_hanging(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}", busy_timeout=0.2)
    try:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with db.session():
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(OperationalError):
            async with db.session() as session:
                session.add(OptOut(address="sms:+15550000000"))
        release.set()
        await holder
        async with db.session() as session:  # the queue works again
            session.add(OptOut(address="sms:+15550000001"))
    finally:
        await db.aclose()
