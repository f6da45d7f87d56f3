"""Memory moves across processes (issue 13): a running move's claim is renewed; one whose process died is
taken over within ``MOVE_CLAIM_TIMEOUT`` (was 5 minutes, now 30 s), and the old holder's ``done`` is
refused (``attempts`` is the fencing token)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from core.memory.local import LocalMemory
from core.settings import LLMSettings
from core.store.db import Database
from core.store.models import MemoryMove, utcnow
from identity.moves import MOVE_CLAIM_TIMEOUT, MemoryMoves


async def test_a_dead_processes_move_is_taken_over_within_thirty_seconds(
    database_url: str, tmp_path: Path
) -> None:
    assert MOVE_CLAIM_TIMEOUT.total_seconds() <= 30
    db = await Database.open(database_url)
    memory = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    moves = MemoryMoves(db, memory)
    try:
        async with db.session() as session:
            move = MemoryMove(event_id=1, from_customer_id="cus_a", to_customer_id="cus_b", handles=[])
            move.status, move.attempts, move.claimed_at = "running", 1, utcnow() - timedelta(seconds=5)
            session.add(move)
        assert await moves.run() == 1  # claimed 5 s ago by a live process: left to it
        async with db.session() as session:
            await session.execute(
                update(MemoryMove).values(claimed_at=utcnow() - MOVE_CLAIM_TIMEOUT - timedelta(seconds=1))
            )
        assert await moves.run() == 0  # not renewed for the timeout: its process died; taken over, done
        async with db.read() as session:
            row = await session.get(MemoryMove, move.id)
            assert row is not None and row.status == "done" and row.attempts == 2
            # the dead holder (attempts 1) waking up could not have marked it: its fence no longer matches
    finally:
        await memory.aclose()
        await db.aclose()
