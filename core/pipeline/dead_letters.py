"""Dead letters: replies that will not be delivered unless someone acts.

A reply lands here (``outbox.status = "failed"``) after ``worker.max_attempts`` transient failures or
at once on a permanent one (blocked by the user, unknown chat, a relay's 5xx). Admins see them in
``/admin/dead-letters`` and ``threadline_dead_letters`` in ``/metrics``, and may retry one: it goes
back to the delivery queue with a fresh attempt count, skipping the parts already sent. A reply to
an address that opted out, and a one-time message whose text was removed, cannot be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from core.errors import Conflict, NotFound
from core.store.db import Database
from core.store.models import OutboxRow

OPTED_OUT = "opted_out"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A failed reply, as an admin sees it (no text: the conversation view has it)."""

    id: int
    channel: str
    customer_id: str | None
    inbox_id: int | None
    attempts: int
    parts_sent: int
    last_error: str | None
    created_at: datetime
    retryable: bool


def _dead(row: OutboxRow) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        channel=row.channel,
        customer_id=row.customer_id,
        inbox_id=row.inbox_id,
        attempts=row.attempts,
        parts_sent=row.parts_sent,
        last_error=row.last_error,
        created_at=row.created_at,
        retryable=row.last_error != OPTED_OUT and not row.reply_target.get("one_time"),
    )


async def dead_letters(db: Database, *, limit: int = 50, offset: int = 0) -> list[DeadLetter]:
    """Failed replies, newest first."""
    async with db.session() as session:
        rows = await session.scalars(
            select(OutboxRow)
            .where(OutboxRow.status == "failed")
            .order_by(OutboxRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_dead(row) for row in rows]


async def count_dead_letters(db: Database) -> int:
    async with db.read() as session:  # a scrape never queues behind writers
        return int(await session.scalar(select(func.count()).where(OutboxRow.status == "failed")) or 0)


async def retry_dead_letter(db: Database, outbox_id: int) -> DeadLetter:
    """Put a failed reply back in the delivery queue. ``NotFound`` / ``Conflict`` when it cannot be."""
    async with db.session() as session:
        row = await session.get(OutboxRow, outbox_id)
        if row is None:
            raise NotFound(f"no reply {outbox_id}")
        if row.status != "failed":
            raise Conflict(f"reply {outbox_id} is {row.status}, not failed")
        if row.last_error == OPTED_OUT:
            raise Conflict(f"reply {outbox_id} was not sent because the recipient opted out")
        if row.reply_target.get("one_time"):
            raise Conflict(f"reply {outbox_id} was a one-time message; its text is gone")
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == outbox_id, OutboxRow.status == "failed")
            .values(status="pending", attempts=0, next_attempt_at=None, last_error=None)
        )
        await session.refresh(row)
        return _dead(row)
