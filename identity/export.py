"""Export: everything Threadline holds about one customer, written out as one JSON-ready document.

``export`` gives ``threadline-export/1`` (fields are only ever added): the conversation (an operator's
reply names the person who wrote it), the messages and replies, memories, identities and their ledger,
link requests, opt-outs, handoffs, support cases and the files (name, type, size, sha256, direction,
status and the reason of a refusal; not the bytes). The operators' audit log is the team's record and is
not exported (``identity.erasure.forget`` erases it with the customer).

Whose data that is, export and forget agree on here: ``customer_family`` (the customer and every customer
merged into it, whose data it holds) and ``customer_addresses`` (every address the family has or had).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent.conversation import WITHHELD
from core.errors import NotFound
from core.ports import MemoryStore
from core.store.db import Database
from core.store.models import (
    AttachmentRow,
    Case,
    Customer,
    Handoff,
    Identity,
    InboxRow,
    LinkChallenge,
    OptOut,
    OutboxRow,
    Turn,
    utcnow,
)
from identity.ledger import entries_involving


async def customer_family(session: AsyncSession, customer_id: str) -> list[str]:
    """The customer and every customer merged into it (recursively): their data is all held here."""
    if await session.get(Customer, customer_id) is None:
        raise NotFound(f"no customer for {customer_id}")
    family, frontier = [customer_id], [customer_id]
    while frontier:
        merged = list(await session.scalars(select(Customer.id).where(Customer.merged_into.in_(frontier))))
        frontier = [c for c in merged if c not in family]
        family.extend(frontier)
    return family


async def customer_addresses(session: AsyncSession, family: Collection[str]) -> set[str]:
    """Every address the family has or had: its identities, and the senders of its messages."""
    ids = list(family)
    found = set(await session.scalars(select(Identity.address).where(Identity.customer_id.in_(ids))))
    found |= set(await session.scalars(select(Turn.address).where(Turn.customer_id.in_(ids))))
    found |= set(await session.scalars(select(InboxRow.sender).where(InboxRow.customer_id.in_(ids))))
    return found


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export(db: Database, memory: MemoryStore, customer_id: str) -> dict[str, Any]:
    """Everything held about ``customer_id`` (and the customers merged into it) as one document."""
    async with db.session() as session:
        family = await customer_family(session, customer_id)
        addresses = await customer_addresses(session, family)
        customers = list(await session.scalars(select(Customer).where(Customer.id.in_(family))))
        identities = list(await session.scalars(select(Identity).where(Identity.customer_id.in_(family))))
        turns = list(
            await session.scalars(
                select(Turn).where(Turn.customer_id.in_(family), Turn.role != WITHHELD).order_by(Turn.id)
            )
        )
        inbox = list(
            await session.scalars(
                select(InboxRow)
                .where(or_(InboxRow.customer_id.in_(family), InboxRow.sender.in_(addresses)))
                .order_by(InboxRow.id)
            )
        )
        outbox = list(
            await session.scalars(
                select(OutboxRow)
                .where(or_(OutboxRow.customer_id.in_(family), OutboxRow.recipient.in_(addresses)))
                .order_by(OutboxRow.id)
            )
        )
        ledger_entries = await entries_involving(session, family, addresses)
        challenges = list(
            await session.scalars(
                select(LinkChallenge).where(
                    or_(LinkChallenge.customer_id.in_(family), LinkChallenge.requester.in_(addresses))
                )
            )
        )
        opt_outs = list(await session.scalars(select(OptOut).where(OptOut.address.in_(addresses))))
        handoffs = list(
            await session.scalars(select(Handoff).where(Handoff.customer_id.in_(family)).order_by(Handoff.id))
        )
        cases = list(
            await session.scalars(select(Case).where(Case.customer_id.in_(family)).order_by(Case.id))
        )
        files = list(
            await session.scalars(
                select(AttachmentRow)
                .where(
                    or_(
                        AttachmentRow.customer_id.in_(family),
                        AttachmentRow.inbox_id.in_([m.id for m in inbox]),
                        AttachmentRow.outbox_id.in_([o.id for o in outbox]),
                    )
                )
                .order_by(AttachmentRow.id)
            )
        )
    memories = [m for member in family for m in await memory.list(member)]
    return {
        "format": "threadline-export/1",
        "exported_at": utcnow().isoformat(),
        "customer_id": customer_id,
        "customers": [
            {"id": c.id, "created_at": _when(c.created_at), "merged_into": c.merged_into} for c in customers
        ],
        "identities": [
            {
                "address": i.address,
                "assurance": i.assurance,
                "method": i.method,
                "created_at": _when(i.created_at),
                "updated_at": _when(i.updated_at),
            }
            for i in identities
        ],
        "conversation": [
            {
                "id": t.id,
                "channel": t.channel,
                "address": t.address,
                "role": t.role,
                "text": t.text,
                "at": _when(t.created_at),
                # False: said on a message nobody vouched for (recalled only for this address)
                "vouched": t.vouched is not False,
                # role "operator": the person of the support team who wrote it (null otherwise)
                "operator": t.operator if t.role == "operator" else None,
            }
            for t in turns
        ],
        "messages_received": [
            {
                "id": m.id,
                "channel": m.channel,
                "provider_message_id": m.provider_message_id,
                "sender": m.sender,
                "text": m.text,
                "received_at": _when(m.received_at),
                "status": m.status,
            }
            for m in inbox
        ],
        "replies_sent": [
            {
                "id": o.id,
                "channel": o.channel,
                "recipient": o.recipient,
                "text": o.text,
                "status": o.status,
                "sent_at": _when(o.sent_at),
            }
            for o in outbox
        ],
        "memories": [m.as_json() for m in memories],
        "identity_ledger": [
            {
                "id": e.id,
                "at": _when(e.at),
                "kind": e.kind,
                "actor": e.actor,
                "reason": e.reason,
                "address": e.address,
                "customer_id": e.customer_id,
                "from_customer_id": e.from_customer_id,
                "assurance": e.assurance,
                "addresses": sorted(e.addresses),
            }
            for e in ledger_entries
        ],
        "link_requests": [
            {"claimed": c.claimed, "status": c.status, "created_at": _when(c.created_at)} for c in challenges
        ],
        "opt_outs": [{"address": o.address, "at": _when(o.opted_out_at)} for o in opt_outs],
        "handoffs": [
            {
                "id": h.id,
                "status": h.status,
                "requested_by": h.requested_by,
                "operator": h.operator,
                "note": h.note,
                "channel": h.channel,
                "opened_at": _when(h.opened_at),
                "taken_at": _when(h.taken_at),
                "answered_at": _when(h.answered_at),
                "escalated_at": _when(h.escalated_at),
                "closed_at": _when(h.closed_at),
                "closed_by": h.closed_by,
            }
            for h in handoffs
        ],
        "cases": [
            {
                "id": c.id,
                "title": c.title,
                "status": c.status,
                "opened_at": _when(c.opened_at),
                "resolved_at": _when(c.resolved_at),
                "opened_by": c.opened_by,
                "resolved_by": c.resolved_by,
                "channel": c.channel,
                "turn_ids": list(c.turn_ids or []),
                "summary": c.summary,
                "rating": c.rating,
                "rated_at": _when(c.rated_at),
            }
            for c in cases
        ],
        # the files sent and received (what they were, not their bytes)
        "attachments": [
            {
                "id": a.id,
                "direction": a.direction,
                "channel": a.channel,
                "message_id": a.inbox_id,
                "reply_id": a.outbox_id,
                "name": a.name,
                "media_type": a.media_type,
                "size": a.size,
                "sha256": a.sha256,
                "status": a.status,
                "reason": a.reason,
                "created_at": _when(a.created_at),
            }
            for a in files
        ],
    }
