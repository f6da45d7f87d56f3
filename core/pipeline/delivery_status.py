"""Platform delivery statuses of what we sent: recorded per part, never moved backwards.

A status callback can arrive before the send is recorded, repeat, or arrive out of order. Each part
is one row keyed by (channel, provider message id); a status is applied only when its rank
(``core.messages.STATUS_RANK``) is higher than the stored one. When every part of a reply has a final
status, the outbox row becomes ``delivered`` (all delivered or read) or ``undelivered``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.messages import STATUS_RANK, StatusUpdate
from core.store.db import Database
from core.store.models import OutboundPart, OutboxRow, utcnow

_FINAL_GOOD = frozenset({"delivered", "read"})
_FINAL_RANK = 4


async def upsert_part(
    session: AsyncSession,
    *,
    channel: str,
    provider_message_id: str,
    outbox_id: int | None = None,
    status: str = "sent",
    error_code: str | None = None,
) -> OutboundPart:
    """Create or advance the part row (inside the caller's transaction).

    Created with ``ON CONFLICT DO NOTHING``: another process may record the same part at the same moment
    (its status report, or the send itself), and a unique violation here would fail the recording of a
    send that happened, which would then go out again."""
    key = (OutboundPart.channel == channel, OutboundPart.provider_message_id == provider_message_id)
    part = await session.scalar(select(OutboundPart).where(*key))
    if part is None:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        created = await session.execute(
            dialect.insert(OutboundPart)
            .values(
                channel=channel,
                provider_message_id=provider_message_id,
                outbox_id=outbox_id,
                status=status,
                error_code=error_code,
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["channel", "provider_message_id"])
        )
        part = await session.scalar(
            select(OutboundPart).where(*key).execution_options(populate_existing=True)
        )
        assert part is not None  # inserted, or inserted by the other process first
        if created.rowcount == 1:  # type: ignore[attr-defined]
            return part
    if outbox_id is not None and part.outbox_id is None:
        part.outbox_id = outbox_id
    if STATUS_RANK[status] > STATUS_RANK.get(part.status, 0):
        part.status = status
        part.error_code = error_code or part.error_code
        part.updated_at = utcnow()
    return part


def _reconcile(outbox: OutboxRow, provider_message_id: str, part_index: int) -> None:
    """The platform took part ``part_index`` of this reply: remember it, whether or not we did."""
    if provider_message_id not in outbox.provider_message_ids:
        outbox.provider_message_ids = [*outbox.provider_message_ids, provider_message_id]
    outbox.parts_sent = max(outbox.parts_sent, part_index + 1)


async def settle_outbox(session: AsyncSession, outbox_id: int) -> None:
    outbox = await session.get(OutboxRow, outbox_id)
    if outbox is None or outbox.status not in ("sent", "delivered", "undelivered"):
        return
    parts = list(await session.scalars(select(OutboundPart).where(OutboundPart.outbox_id == outbox_id)))
    if len(parts) < len(outbox.provider_message_ids) or not parts:
        return
    if any(STATUS_RANK.get(p.status, 0) < _FINAL_RANK for p in parts):
        return
    outbox.status = "delivered" if all(p.status in _FINAL_GOOD for p in parts) else "undelivered"


async def record_status(db: Database, channel: str, update: StatusUpdate) -> None:
    """Apply a platform status report; safe to repeat and to receive out of order.

    A report that names its reply and part (``idempotency_key``, ``part_index``) also records the send
    itself when it was never recorded (a crash right after the platform took the message): the outbox
    row learns that the part went out, and a retry skips it instead of sending it twice.
    """
    for attempt in range(2):
        try:
            async with db.session() as session:
                outbox = None
                if update.idempotency_key is not None:
                    outbox = await session.scalar(
                        select(OutboxRow).where(
                            OutboxRow.idempotency_key == update.idempotency_key, OutboxRow.channel == channel
                        )
                    )
                part = await upsert_part(
                    session,
                    channel=channel,
                    provider_message_id=update.provider_message_id,
                    outbox_id=outbox.id if outbox is not None else None,
                    status=update.status,
                    error_code=update.error_code,
                )
                if outbox is not None and update.part_index is not None:
                    _reconcile(outbox, update.provider_message_id, update.part_index)
                if part.outbox_id is not None:
                    await settle_outbox(session, part.outbox_id)
            return
        except IntegrityError:
            if attempt:  # two first reports raced to create the row; the second pass updates it
                raise
