"""Memory moves: Mem0's share of an identity change, durable and re-run until the backend has done it.

Mem0 cannot change a memory's user id, so an identity change queues a ``memory_moves`` row in its own
transaction (``queue_move``) and ``MemoryMoves.run`` has the backend's ``MemoryStore.move`` do it,
idempotently, selecting memories by their provenance handle (every memory of the customer when the row
names no handle: a merge). ``core.memory.writer`` queues one more when a memory write lands with a
customer its handle left while the write ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import MemoryUnavailable
from core.ports import MemoryStore
from core.store.db import Database
from core.store.models import MemoryMove, utcnow

log = logging.getLogger(__name__)

# a memory move claimed longer ago than this belongs to a process that died: another may take it over
MOVE_CLAIM_TIMEOUT = timedelta(minutes=5)


def queue_move(
    session: AsyncSession, event_id: int, source: str, target: str, handles: Collection[str]
) -> None:
    """Queue the move of ``source``'s memories from ``handles`` (all of them when empty) to ``target``."""
    session.add(
        MemoryMove(
            event_id=event_id,
            from_customer_id=source,
            to_customer_id=target,
            handles=sorted(handles),
            status="pending",
        )
    )


async def waiting(session: AsyncSession) -> int:
    """How many memory moves are queued or running."""
    count = await session.scalar(select(func.count()).where(MemoryMove.status.in_(("pending", "running"))))
    return int(count or 0)


class MemoryMoves:
    """Runs the queued memory moves. One per process (``core.compose``): its lock orders the rounds of
    the background loop and of the admin API, so a round asked for during a move waits for it."""

    def __init__(self, db: Database, memory: MemoryStore) -> None:
        self._db = db
        self._memory = memory
        self._lock = asyncio.Lock()

    async def run(self) -> int:
        """Run the pending memory moves in ledger order; returns how many are still waiting.

        Several processes may run this at once (the server's background loop, a CLI command): each
        move is claimed with a conditional update before it runs, and a move claimed by another
        process stops this round, since later moves may depend on it. A claim older than
        ``MOVE_CLAIM_TIMEOUT`` (its process died) is taken over.
        """
        async with self._lock:
            while True:
                async with self._db.session() as session:
                    move = await session.scalar(
                        select(MemoryMove)
                        .where(MemoryMove.status.in_(("pending", "running")))
                        .order_by(MemoryMove.id)
                        .limit(1)
                    )
                    if move is None:
                        return 0
                    now = utcnow()
                    stale = move.claimed_at is None or move.claimed_at < now - MOVE_CLAIM_TIMEOUT
                    if move.status == "running" and not stale:
                        return await waiting(session)
                    claimed = await session.execute(
                        update(MemoryMove)
                        .where(MemoryMove.id == move.id, MemoryMove.status == move.status)
                        .where(
                            MemoryMove.claimed_at.is_(None)
                            if move.claimed_at is None
                            else MemoryMove.claimed_at == move.claimed_at
                        )
                        .values(status="running", claimed_at=now, attempts=MemoryMove.attempts + 1)
                    )
                    if claimed.rowcount != 1:  # type: ignore[attr-defined]
                        continue  # another process took it first
                    source, target, handles = move.from_customer_id, move.to_customer_id, move.handles
                try:
                    await self._memory.move(source, target, handles=handles or None)
                except MemoryUnavailable as exc:
                    async with self._db.session() as session:
                        await session.execute(
                            update(MemoryMove)
                            .where(MemoryMove.id == move.id)
                            .values(status="pending", claimed_at=None, last_error=str(exc)[:200])
                        )
                        left = await waiting(session)
                    log.warning("memory move %s failed; it stays queued", move.id)
                    return left
                async with self._db.session() as session:
                    await session.execute(
                        update(MemoryMove)
                        .where(MemoryMove.id == move.id)
                        .values(status="done", done_at=utcnow(), last_error=None)
                    )

    async def run_forever(self, interval: float) -> None:
        """Re-run queued memory moves every ``interval`` seconds (the app runs this in the background)."""
        while True:
            try:
                await self.run()
            except Exception as exc:  # keep going: the next round retries
                log.warning("memory moves round failed: %s", type(exc).__name__)
            await asyncio.sleep(interval)
