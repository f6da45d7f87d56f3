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

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import MemoryUnavailable
from core.ports import MemoryStore
from core.store.db import Database
from core.store.models import MemoryMove, utcnow

log = logging.getLogger(__name__)

# a memory move whose claim was not renewed for this long belongs to a process that died (kill -9): another
# takes it over. A running move renews its claim every third of it (``MOVE_HEARTBEAT``).
MOVE_CLAIM_TIMEOUT = timedelta(seconds=30)
MOVE_HEARTBEAT = MOVE_CLAIM_TIMEOUT.total_seconds() / 3


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
        process stops this round, since later moves may depend on it. A running move renews its claim;
        one not renewed for ``MOVE_CLAIM_TIMEOUT`` (its process died) is taken over, and the ``done`` of
        the process that lost it is refused (``attempts`` is the fencing token).
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
                    token = move.attempts + 1  # the fencing token: ``attempts`` as this claim sets it
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
                # a takeover raises ``attempts`` again: then nothing below matches
                held = (
                    MemoryMove.id == move.id,
                    MemoryMove.status == "running",
                    MemoryMove.attempts == token,
                )
                heartbeat = asyncio.create_task(self._renew(held), name=f"memory-move:{move.id}")
                try:
                    await self._memory.move(source, target, handles=handles or None)
                except MemoryUnavailable as exc:
                    async with self._db.session() as session:
                        await session.execute(
                            update(MemoryMove)
                            .where(*held)
                            .values(status="pending", claimed_at=None, last_error=str(exc)[:200])
                        )
                        left = await waiting(session)
                    log.warning("memory move %s failed; it stays queued", move.id)
                    return left
                finally:
                    heartbeat.cancel()
                    await asyncio.gather(heartbeat, return_exceptions=True)
                async with self._db.session() as session:
                    done = await session.execute(
                        update(MemoryMove)
                        .where(*held)
                        .values(status="done", done_at=utcnow(), last_error=None)
                    )
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    # taken over after this claim lapsed: the move is idempotent, the new holder finishes it
                    log.warning("memory move %s: its claim lapsed while it ran", move.id)
                    return await self._waiting()

    async def _renew(self, held: tuple[ColumnElement[bool], ...]) -> None:
        """Keep a running move's claim fresh, so that it is not taken over while it runs."""
        while True:
            await asyncio.sleep(MOVE_HEARTBEAT)
            try:
                async with self._db.session() as session:
                    await session.execute(update(MemoryMove).where(*held).values(claimed_at=utcnow()))
            except Exception as exc:  # the next beat tries again; the claim lapses if none succeeds
                log.warning("memory move claim not renewed (%s)", type(exc).__name__)

    async def _waiting(self) -> int:
        async with self._db.read() as session:
            return await waiting(session)

    async def run_forever(self, interval: float) -> None:
        """Re-run queued memory moves every ``interval`` seconds (the app runs this in the background)."""
        while True:
            try:
                await self.run()
            except Exception as exc:  # keep going: the next round retries
                log.warning("memory moves round failed: %s", type(exc).__name__)
            await asyncio.sleep(interval)
