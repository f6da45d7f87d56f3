"""Flood control: a per-sender inbound rate, so that one handle's flood cannot starve the others.

Each sender gets a leaky bucket: ``burst`` messages at once, refilled at ``per_minute``. A message over
its sender's rate is still committed (nothing acknowledged is lost, and the platform is answered as
usual, so it does not retry), but as ``throttled``: the worker never answers it, so a flood costs no LLM
calls and no replies. Opt-out keywords are never throttled (they count while there is room).

The buckets are rows of the store (``core.store.shared_limits``), not this process's memory: in scale
mode the webhooks of one sender reach many processes, and each would otherwise let a whole burst through.
The decision is taken inside the inbox's own transaction (``core.pipeline.inbox``), for every new
message of a batch in one statement, once the batch's rows are inserted: only rows this transaction
really stored count (a platform's repeat, here or on another host, takes nothing), and the bucket rows
stay locked until the inbox rows are committed, so two processes cannot both spend the last token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from core.messages import InboundMessage
from core.store.db import Database
from core.store.shared_limits import Clock, Pruner, take_many


def sender_key(message: InboundMessage) -> str:
    """The bucket of a message: its sender (stored hashed)."""
    return f"flood:{message.sender}"


class SenderLimits:
    """The inbound rate of each sender; ``clock`` (epoch seconds) replaces the database's in tests."""

    def __init__(self, *, per_minute: float, burst: int, clock: Clock | None = None) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self.burst = burst
        self.interval = 60.0 / per_minute  # one message per this many seconds, after the burst
        self._clock = clock
        self._pruner = Pruner()

    async def throttled(
        self, session: AsyncSession, dialect: str, messages: Sequence[InboundMessage]
    ) -> list[bool]:
        """Which of ``messages`` (new ones, just inserted in ``session``'s transaction, in arrival order)
        are over their sender's rate. Each that has room takes it; an opt-out keyword is never over."""
        wanted = Counter(sender_key(message) for message in messages)
        left = await take_many(
            session, dialect, wanted, interval=self.interval, burst=self.burst, clock=self._clock
        )
        over: list[bool] = []
        for message in messages:
            key = sender_key(message)
            if left.get(key, 0) > 0:
                left[key] -= 1
                over.append(False)
            else:
                over.append(message.control is None)
        return over

    async def prune_if_due(self, db: Database) -> None:
        """Forget drained buckets now and then (a drained bucket is a fresh one: nothing changes)."""
        await self._pruner.prune_if_due(db, clock=self._clock)
