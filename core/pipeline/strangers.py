"""Caps on strangers: what a sender nobody vouches for can make the hub do.

Anyone can write any ``From:`` line, so a burst of forged emails must not become a burst of customers,
LLM calls and replies to addresses that never wrote to us (backscatter). Counted in the store, so a
restart forgets nothing:

- **New customers.** A handle first seen on an unvouched message (``sender_assurance`` unverified) makes a
  customer only while fewer than ``strangers.new_per_hour`` such customers were made in the last hour, and
  fewer than ``strangers.new_per_domain_per_hour`` for its email domain. Past either cap the message is
  stored as ``throttled``: kept (nothing acknowledged is lost), never answered, and no customer is made.
- **Acknowledgements.** A message whose reply policy is ``acknowledge`` (an email without DMARC pass) never
  reaches the agent. Its sender gets ``ACKNOWLEDGEMENT``, a fixed text that says nothing about any account,
  at most once per ``strangers.ack_every_hours``, and only while fewer than ``strangers.acks_per_hour``
  acknowledgements (``strangers.acks_per_domain_per_hour`` for its domain) went out in the last hour.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from core.messages import Address, Assurance, ReplyPolicy
from core.settings import StrangerSettings
from core.store.models import Identity, InboxRow, OutboxRow, utcnow

ACKNOWLEDGEMENT = (
    "Thank you, we have received your message. We could not verify that it was sent from this address, "
    "so our assistant will not answer it by email. Please contact us through one of our other channels."
)
HOUR = timedelta(hours=1)


def domain_of(address: str) -> str | None:
    """The domain of an email-like handle (``email:ana@example.com`` → ``example.com``), else None."""
    _, at, domain = address.rpartition("@")
    return domain.lower() if at and domain else None


def _in_domain(column: InstrumentedAttribute[str], domain: str) -> ColumnElement[bool]:
    escaped = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%@{escaped}", escape="\\")


class Strangers:
    def __init__(self, settings: StrangerSettings) -> None:
        self._settings = settings

    async def may_create(self, session: AsyncSession, address: Address) -> bool:
        """Whether an unvouched first contact from ``address`` may make a new customer now."""
        since = utcnow() - HOUR
        made = (
            select(func.count())
            .select_from(Identity)
            .where(
                Identity.method == "first_contact",
                Identity.assurance == Assurance.UNVERIFIED.value,
                Identity.created_at >= since,
            )
        )
        if int(await session.scalar(made) or 0) >= self._settings.new_per_hour:
            return False
        domain = domain_of(address.handle)
        if domain is None:
            return True
        in_domain = made.where(_in_domain(Identity.address, domain))
        return int(await session.scalar(in_domain) or 0) < self._settings.new_per_domain_per_hour

    async def acknowledgement(self, session: AsyncSession, recipient: str) -> str | None:
        """The fixed acknowledgement for an unauthenticated message from ``recipient``, or None when one
        went to it recently or a cap is reached."""
        now = utcnow()
        acks = (
            select(func.count())
            .select_from(OutboxRow)
            .join(InboxRow, InboxRow.id == OutboxRow.inbox_id)
            .where(InboxRow.reply_policy == ReplyPolicy.ACKNOWLEDGE.value)
        )
        recently = now - timedelta(hours=self._settings.ack_every_hours)
        if await session.scalar(
            acks.where(OutboxRow.recipient == recipient, OutboxRow.created_at >= recently)
        ):
            return None
        last_hour = acks.where(OutboxRow.created_at >= now - HOUR)
        if int(await session.scalar(last_hour) or 0) >= self._settings.acks_per_hour:
            return None
        domain = domain_of(recipient)
        if domain is not None:
            in_domain = last_hour.where(_in_domain(OutboxRow.recipient, domain))
            if int(await session.scalar(in_domain) or 0) >= self._settings.acks_per_domain_per_hour:
                return None
        return ACKNOWLEDGEMENT
