"""The inbox: an inbound message is committed under its unique key before the platform is answered."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.messages import InboundMessage
from core.store.db import Database
from core.store.models import InboxRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """What ``accept`` did: ``inbox_id`` of the row, and whether it was a repeat of one already held."""

    inbox_id: int
    duplicate: bool


class Inbox:
    """Commits inbound messages; a repeat of (channel, provider message id) is a no-op."""

    def __init__(self, db: Database, *, on_accept: Callable[[], None] | None = None) -> None:
        self._db = db
        self._on_accept = on_accept

    async def accept(self, message: InboundMessage, *, status: str = "pending") -> Accepted:
        """Commit ``message``. Returns once the row is durable; only then may the platform be answered.

        ``status="throttled"`` stores it without ever answering it (flood control).
        """
        try:
            async with self._db.session() as session:
                row = InboxRow(
                    channel=message.channel,
                    provider_message_id=message.provider_message_id,
                    sender=str(message.sender),
                    text=message.text,
                    reply_target=dict(message.reply_target),
                    attachments=list(message.attachments),
                    extras=dict(message.extras),
                    received_at=message.received_at,
                    status=status,
                )
                session.add(row)
                await session.flush()
                inbox_id = row.id
        except IntegrityError:
            existing = await self._existing(message)
            if existing is None:
                raise
            log.info("duplicate delivery on %s for inbox %s ignored", message.channel, existing)
            return Accepted(inbox_id=existing, duplicate=True)
        log.info("accepted inbox %s on %s (%s)", inbox_id, message.channel, status)
        if self._on_accept is not None and status == "pending":
            self._on_accept()
        return Accepted(inbox_id=inbox_id, duplicate=False)

    async def _existing(self, message: InboundMessage) -> int | None:
        async with self._db.session() as session:
            found: int | None = await session.scalar(
                select(InboxRow.id).where(
                    InboxRow.channel == message.channel,
                    InboxRow.provider_message_id == message.provider_message_id,
                )
            )
            return found
