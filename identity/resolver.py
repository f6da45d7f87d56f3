"""Resolve a normalised address to its customer, creating a customer for an address seen first.

A new address gets its own new customer. How far the handle is trusted on first contact is the channel's
word on that message (``InboundMessage.sender_assurance``, set by each adapter: Slack, Telegram and Twilio
authenticate their senders, an email ``From:`` counts only with DMARC pass from our own receiving path);
no channel is named here.
Every first contact is written to the identity ledger (``identity.ledger``) in the same transaction;
linking, unlinking and merging are ``identity.linking``'s.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.messages import Address, Assurance, Resolution
from core.store.db import Database
from core.store.models import Customer, Identity, InboxRow, utcnow
from identity.ledger import record

log = logging.getLogger(__name__)


def new_customer_id() -> str:
    return f"cus_{uuid.uuid4().hex}"


async def channel_word(session: AsyncSession, address: Address) -> Assurance:
    """How far the channel vouched for ``address`` on its latest message (``InboundMessage.sender_assurance``,
    which each adapter sets); unverified when it never wrote or the row predates that field."""
    found = await session.scalar(
        select(InboxRow.sender_assurance)
        .where(InboxRow.sender == str(address), InboxRow.sender_assurance.is_not(None))
        .order_by(InboxRow.id.desc())
        .limit(1)
    )
    return Assurance(found) if found else Assurance.UNVERIFIED


class DatabaseResolver:
    """``core.ports.IdentityResolver`` over the store's ``customers`` and ``identities`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def lookup(self, address: Address) -> Resolution | None:
        """The customer behind ``address``, or None when the address was never seen."""
        async with self._db.session() as session:
            row = await session.scalar(select(Identity).where(Identity.address == str(address)))
            if row is None:
                return None
            return Resolution(customer_id=row.customer_id, assurance=Assurance(row.assurance))

    async def resolve(self, address: Address, *, assurance: Assurance | None = None) -> Resolution:
        """The customer behind ``address``; an unseen address gets a new customer, its handle at
        ``assurance`` (the channel's word on this message) or the channel's default.

        A handle first seen unvouched (an email without DMARC pass, a console address) is raised to
        ``platform_attested`` by the first message its channel vouches for: what it said while unvouched
        stays recallable only for it (``core.agent.agent``), so raising the handle proves none of that.
        """
        found = await self.lookup(address)
        if found is not None:
            if found.assurance is Assurance.UNVERIFIED and assurance is Assurance.PLATFORM_ATTESTED:
                return await self._vouched_at_last(address, found)
            return found
        customer_id = new_customer_id()
        assurance = assurance or Assurance.UNVERIFIED  # a row stored before messages carried the word
        try:
            async with self._db.session() as session:
                session.add(Customer(id=customer_id))
                await session.flush()
                session.add(
                    Identity(
                        address=str(address),
                        channel=address.channel,
                        customer_id=customer_id,
                        assurance=assurance.value,
                        method="first_contact",
                    )
                )
                await record(
                    session,
                    kind="create",
                    actor="system",
                    address=str(address),
                    customer_id=customer_id,
                    assurance=assurance.value,
                    method="first_contact",
                )
        except IntegrityError:
            # Another worker created it between our look-up and insert: theirs stands.
            found = await self.lookup(address)
            if found is None:
                raise
            return found
        log.info("created customer %s for a new %s handle", customer_id, address.channel)
        return Resolution(customer_id=customer_id, assurance=assurance, created=True)

    async def _vouched_at_last(self, address: Address, found: Resolution) -> Resolution:
        raised = Assurance.PLATFORM_ATTESTED
        async with self._db.session() as session:
            changed = await session.execute(
                update(Identity)
                .where(Identity.address == str(address), Identity.assurance == Assurance.UNVERIFIED.value)
                .values(assurance=raised.value, method="vouched_message", updated_at=utcnow())
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return await self.lookup(address) or found
            await record(
                session,
                kind="link",
                actor="system",
                reason="the channel vouched for a message from this handle",
                address=str(address),
                customer_id=found.customer_id,
                assurance=raised.value,
                method="vouched_message",
            )
        log.info("a %s handle of customer %s is now vouched for", address.channel, found.customer_id)
        return Resolution(customer_id=found.customer_id, assurance=raised)

    async def addresses_of(self, customer_id: str) -> list[Address]:
        """Every address that resolves to ``customer_id``."""
        async with self._db.session() as session:
            rows = await session.scalars(
                select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.id)
            )
            return [Address.parse(row.address) for row in rows]
