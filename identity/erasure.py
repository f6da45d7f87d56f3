"""Forget: everything Threadline holds about one customer, erased, with a receipt.

``forget`` erases a customer (and the customers merged into it, whose data it holds) from every store:

- Mem0, through ``MemoryStore.forget`` (local: vectors, the keyword index merged so no deleted term
  stays in the file, Mem0's entity rows, its ``history`` and ``messages`` tables; hosted: ``delete_all``);
- our tables, in one transaction: conversation turns (an operator's replies included), inbox and outbox
  rows (and their platform parts), memory jobs and memory moves still queued, link challenges, opt-outs,
  handoffs (and the team's notices about them, which name the customer id), the operators' actions on the
  customer (``operator_actions``), support cases (``cases``), identities, the customer rows;
- the files they sent or were sent (``attachments`` rows), and their bytes in the media store
  (``core.media``) unless another customer's row holds the same file (content-addressed: one file for
  both); the receipt counts the rows (``attachments``) and the files removed (``attachment_files``);
- what other customers hold of them: the replies (and their outbox rows, failed ones included) written
  for another customer while it held one of their handles along with handles of its own, a merge or a
  link since undone (``identity.tenure``): those may quote them;
- the identity ledger, which is append-only except for this: the customer's addresses in earlier
  entries are replaced by ``forgotten:<digest>`` tokens (salted with a random value that is thrown
  away, so they cannot be reversed by trying phone numbers), the reasons written for their entries
  (free text that may name them) are removed, and a ``forget`` entry is appended, so replaying the ledger
  still rebuilds the identities table.

Memory moves still queued run first (``identity.moves``): a memory whose move has not run yet sits with
the customer its handle left. If one cannot run (Mem0 is down), nothing is erased and the caller may retry.

On SQLite, deleted rows are overwritten (``secure_delete``), the file is rewritten (``VACUUM``: rows that
pages exchanged when they were rebalanced leave copies that ``secure_delete`` does not reach) and the WAL is
checkpointed, so the text is gone from the files too. Mem0 goes first: if it is down, nothing is erased and
the caller may retry.
What a server process holds in memory (a reply being sent right now, a per-process cache of Slack
senders already attested) is not reached from another process; it holds ids and addresses, no text.

``export`` (``identity.export``) writes the same data out as one document; it and ``forget`` agree there
on whose data it is (``customer_family``, ``customer_addresses``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.agent.conversation import WITHHELD
from core.errors import MemoryUnavailable
from core.events import record_event
from core.media.unreferenced import remove_unreferenced
from core.ports import MediaStore, MemoryStore
from core.store.db import Database
from core.store.models import (
    AttachmentRow,
    Case,
    Customer,
    EventDelivery,
    Handoff,
    Identity,
    IdentityEvent,
    InboxRow,
    LinkChallenge,
    MemoryJob,
    MemoryMove,
    OperatorAction,
    OptOut,
    OutboundPart,
    OutboxRow,
    Turn,
    utcnow,
)
from identity.export import customer_addresses, customer_family
from identity.export import export as export  # the console imports it from here
from identity.ledger import record
from identity.leftovers import mixed_rows, moves_waiting
from identity.moves import MemoryMoves

log = logging.getLogger(__name__)

CHECKPOINT_TRIES = 100  # 0.05 s apart


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What ``forget`` removed, store by store (counts only: a receipt names no address or text)."""

    customer_id: str
    customer_ids: tuple[str, ...]
    removed: dict[str, int] = field(default_factory=dict)
    ledger_event_id: int | None = None
    at: datetime = field(default_factory=utcnow)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "customer_ids": list(self.customer_ids),
            "removed": dict(self.removed),
            "ledger_event_id": self.ledger_event_id,
            "at": self.at.isoformat(),
        }


async def forget(
    db: Database, memory: MemoryStore, customer_id: str, *, actor: str, media: MediaStore | None = None
) -> Receipt:
    """Erase ``customer_id`` everywhere; returns the receipt. ``NotFound`` for an unknown customer;
    ``MemoryUnavailable`` (nothing erased) while a memory move of theirs cannot run. ``media``: the store of
    attachments' bytes, whose files no one else holds are removed (without it only the rows go)."""
    async with db.session() as session:
        await customer_family(session, customer_id)  # NotFound before anything runs
    await MemoryMoves(db, memory).run()  # a memory still to move sits with the customer its handle left
    async with db.session() as session:
        family = await customer_family(session, customer_id)
        if await moves_waiting(session, family):
            raise MemoryUnavailable("a memory move of this customer is still queued: try again")
    forgotten_memories = 0
    for member in family:  # first: a memory outage leaves everything as it was
        forgotten_memories += await memory.forget(member)
    removed: dict[str, int] = {"mem0_memories": forgotten_memories}
    salt = secrets.token_bytes(16)

    def token(address: str) -> str:
        return "forgotten:" + hashlib.sha256(salt + address.encode()).hexdigest()[:24]

    async with db.session() as session:
        family = await customer_family(session, customer_id)
        addresses = await customer_addresses(session, family)
        held = set(await session.scalars(select(Identity.address).where(Identity.customer_id.in_(family))))
        mixed_replies, mixed_sent = await mixed_rows(session, family, addresses)
        handoff_ids = list(await session.scalars(select(Handoff.id).where(Handoff.customer_id.in_(family))))
        outbox_ids = list(
            await session.scalars(
                select(OutboxRow.id).where(
                    or_(
                        OutboxRow.customer_id.in_(family),
                        OutboxRow.recipient.in_(addresses),
                        OutboxRow.id.in_(mixed_sent),
                        # the team's notices about their handoffs (``handoff:<id>:<event>:<recipient>``)
                        *(OutboxRow.idempotency_key.startswith(f"handoff:{hid}:") for hid in handoff_ids),
                    )
                )
            )
        )
        inbox_ids = list(
            await session.scalars(
                select(InboxRow.id).where(
                    or_(InboxRow.customer_id.in_(family), InboxRow.sender.in_(addresses))
                )
            )
        )

        async def drop(name: str, statement: Any) -> None:
            result = await session.execute(statement)
            removed[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]

        files = or_(
            AttachmentRow.customer_id.in_(family),
            AttachmentRow.inbox_id.in_(inbox_ids),
            AttachmentRow.outbox_id.in_(outbox_ids),
        )
        digests = {d for d in await session.scalars(select(AttachmentRow.sha256).where(files)) if d}
        await drop("attachments", delete(AttachmentRow).where(files))
        await drop("outbound_parts", delete(OutboundPart).where(OutboundPart.outbox_id.in_(outbox_ids)))
        await drop("outbox", delete(OutboxRow).where(OutboxRow.id.in_(outbox_ids)))
        await drop(
            "turns", delete(Turn).where(or_(Turn.customer_id.in_(family), Turn.inbox_id.in_(inbox_ids)))
        )
        # another customer's memories may name these turns: their rows stay, emptied (never a reused id)
        await drop(
            "replies_withheld",
            update(Turn).where(Turn.id.in_(mixed_replies)).values(role=WITHHELD, text=""),
        )
        await drop("inbox", delete(InboxRow).where(InboxRow.id.in_(inbox_ids)))
        await drop("memory_jobs", delete(MemoryJob).where(MemoryJob.customer_id.in_(family)))
        await drop(
            "memory_moves",
            delete(MemoryMove).where(
                or_(MemoryMove.from_customer_id.in_(family), MemoryMove.to_customer_id.in_(family))
            ),
        )
        await drop(
            "link_challenges",
            delete(LinkChallenge).where(
                or_(
                    LinkChallenge.customer_id.in_(family),
                    LinkChallenge.requester.in_(addresses),
                    LinkChallenge.claimed.in_(addresses),
                )
            ),
        )
        await drop("opt_outs", delete(OptOut).where(OptOut.address.in_(addresses)))
        await drop("handoffs", delete(Handoff).where(Handoff.id.in_(handoff_ids)))
        await drop("cases", delete(Case).where(Case.customer_id.in_(family)))
        await drop("operator_actions", delete(OperatorAction).where(OperatorAction.customer_id.in_(family)))
        await drop("identities", delete(Identity).where(Identity.customer_id.in_(family)))
        # the events about them (queued and the delivery log: an endpoint with text has their words)
        await drop("event_deliveries", delete(EventDelivery).where(EventDelivery.customer_id.in_(family)))
        await drop("customers", delete(Customer).where(Customer.id.in_(family)))
        removed["identity_ledger_redacted"] = await _redact_ledger(session, family, addresses, token)
        event = await record(
            session,
            kind="forget",
            actor=actor,
            reason="erasure requested",
            customer_id=customer_id,
            addresses={token(address): "" for address in sorted(held)},
        )
        event_id = event.id
        await record_event(
            session,
            "customer.forgotten",
            {"ledger_id": event_id, "customer_id": customer_id, "customer_ids": family, "at": event.at},
        )
    if db.dialect == "sqlite":
        # Deleted rows are zeroed (secure_delete), but not the copies SQLite leaves in a page's free gap
        # when it rebalances pages (after any delete or shrinking update): VACUUM rewrites the file
        # without them, then the WAL that carried the rewrite is checkpointed and emptied.
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM"))
            await _checkpoint(conn)
    # after the commit: the same file sent by another customer is theirs too, and stays
    removed["attachment_files"] = await remove_unreferenced(db, media, digests)
    log.info("forgot customer %s (%d merged into it): %s", customer_id, len(family) - 1, removed)
    return Receipt(
        customer_id=customer_id, customer_ids=tuple(family), removed=removed, ledger_event_id=event_id
    )


async def _checkpoint(conn: AsyncConnection) -> None:
    """Copy the WAL into the database file and empty it; a reader still on an older snapshot makes the
    checkpoint report busy (it does not raise): then it is tried again."""
    for _ in range(CHECKPOINT_TRIES):
        busy, _, _ = (await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).one()
        if not busy:
            return
        await asyncio.sleep(0.05)
    log.warning("erasure: the WAL checkpoint stayed busy; the next checkpoint completes it")


async def _redact_ledger(
    session: AsyncSession, family: Collection[str], addresses: set[str], token: Any
) -> int:
    """Replace the addresses in earlier ledger entries by their tokens, and remove the reasons of the
    entries about the family; returns the entries changed."""
    changed = 0
    for event in await session.scalars(select(IdentityEvent).order_by(IdentityEvent.id)):
        touched = False
        about = event.customer_id in family or event.from_customer_id in family
        if event.reason is not None and (
            about or event.address in addresses or any(key in addresses for key in event.addresses)
        ):
            event.reason = None
            touched = True
        if event.address in addresses:
            event.address = token(event.address)
            touched = True
        if any(key in addresses for key in event.addresses):
            event.addresses = {(token(k) if k in addresses else k): v for k, v in event.addresses.items()}
            touched = True
        changed += touched
    return changed
