"""The memory-write policy: which memory job a logged conversation turn gets, in the caller's transaction.

``every_turn`` (``THREADLINE_MEMORY__WRITE_POLICY``, the default): each answered message and its reply
become one ``turn`` job, due now. ``summary``: one pending ``summary`` job per customer and channel,
collecting the turns and pushed back ``memory.quiet_seconds`` at every new turn, so that it is written
once, when the conversation has gone quiet. The jobs are written by ``core.memory.writer``.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import MemorySettings
from core.store.models import MemoryJob, utcnow


async def queue_memory_write(
    session: AsyncSession, settings: MemorySettings, *, customer_id: str, channel: str, turn_ids: list[int]
) -> None:
    """Queue the memory write of ``turn_ids`` (logged turns of ``customer_id`` on ``channel``)."""
    now = utcnow()
    if settings.write_policy == "every_turn":
        session.add(
            MemoryJob(customer_id=customer_id, channel=channel, kind="turn", turn_ids=turn_ids, due_at=now)
        )
        return
    due = now + timedelta(seconds=settings.quiet_seconds)
    job = await session.scalar(
        select(MemoryJob)
        .where(
            MemoryJob.customer_id == customer_id,
            MemoryJob.channel == channel,
            MemoryJob.kind == "summary",
            MemoryJob.status == "pending",
        )
        .order_by(MemoryJob.id)
        .limit(1)
    )
    if job is None:
        session.add(
            MemoryJob(customer_id=customer_id, channel=channel, kind="summary", turn_ids=turn_ids, due_at=due)
        )
    else:
        job.turn_ids = [*job.turn_ids, *turn_ids]
        job.due_at = due
