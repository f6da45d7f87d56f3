"""Link, unlink, merge and unmerge: every change recorded in the ledger, and memory following it.

Each operation is one database transaction that changes ``identities`` / ``customers``, appends one
ledger entry, moves our own rows (``identity.handover``: conversation turns, inbox and outbox rows,
memory jobs, link challenges) and queues a ``memory_moves`` row for Mem0. The memory move runs right after
the commit and is re-run (``run_moves``) until it succeeds (``identity.moves``).

- ``link(address, customer)``: the address joins the customer (from wherever it was, with its own
  history), at ``admin_linked`` assurance unless told otherwise;
- ``unlink(address)``: the address leaves for a new customer of its own, taking its history along;
- ``merge(source, target)``: everything of ``source`` moves to ``target``; ``source`` is kept, marked
  merged, so that
- ``unmerge(merge_id)`` can move back every address the merge moved, and with them every message and
  memory whose provenance is one of those addresses (also the ones made after the merge).

A handle that leaves a customer (unlink, unmerge, a link away from a customer that keeps other handles)
takes only what its own words said: its messages and the memories made of them, and the replies written
while it was on its own. The replies written while it shared the customer with other handles may quote
them, or quote it: they are withheld from every model on both sides (``identity.handover``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.events import record_event
from core.messages import Address, Assurance
from core.ports import MemoryStore
from core.store.db import Database
from core.store.models import Customer, Identity, IdentityEvent, utcnow
from identity.handover import hand_over, move_all
from identity.ledger import record
from identity.moves import MemoryMoves, queue_move
from identity.resolver import channel_word, new_customer_id

log = logging.getLogger(__name__)

# Assurance levels from weakest to strongest: a link never lowers a handle's assurance by accident.
RANK = {
    Assurance.UNVERIFIED: 0,
    Assurance.PLATFORM_ATTESTED: 1,
    Assurance.VERIFIED: 2,
    Assurance.ADMIN_LINKED: 3,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What an operation did: its ledger entry (None when nothing had to change) and where things are."""

    event_id: int | None
    kind: str
    customer_id: str
    from_customer_id: str | None = None
    addresses: tuple[str, ...] = ()
    memory_moves_pending: int = 0
    details: dict[str, object] = field(default_factory=dict)


def _reassign(rows: Iterable[Identity], customer_id: str) -> dict[str, str]:
    """Give these identities to ``customer_id``; returns their addresses with their (kept) assurance."""
    moved = {}
    for row in rows:
        row.customer_id, row.updated_at = customer_id, utcnow()
        moved[row.address] = row.assurance
    return moved


async def _identity_event(session: AsyncSession, event_type: str, entry: IdentityEvent) -> None:
    """The business's event (``core.events``) for a ledger entry, in its transaction: ids only, and the
    handles (addresses: personal data) only for endpoints that ask for text."""
    handles = [entry.address] if entry.address else sorted(entry.addresses)
    await record_event(
        session,
        event_type,
        {
            "ledger_id": entry.id,
            "customer_id": entry.customer_id,
            "from_customer_id": entry.from_customer_id,
            "channels": sorted({handle.split(":", 1)[0] for handle in handles}),
            "assurance": entry.assurance,
            "method": entry.method,
            "undoes": entry.undoes,
            "at": entry.at,
        },
        personal={"addresses": handles},
    )


class IdentityLinks:
    """The identity operations over the store and the memory backend. One per process (``core.compose``):
    the background round of memory moves and the admin API share its move runner."""

    def __init__(self, db: Database, memory: MemoryStore) -> None:
        self._db = db
        self._moves = MemoryMoves(db, memory)

    # ----- the operations ------------------------------------------------------------------------

    async def link(
        self,
        address: Address,
        customer_id: str,
        *,
        actor: str,
        reason: str | None = None,
        assurance: Assurance = Assurance.ADMIN_LINKED,
        method: str = "admin",
    ) -> Change:
        """Make ``address`` a handle of ``customer_id`` (moving it and its history if it had another)."""
        key = str(address)
        async with self._db.session() as session:
            await self._live_customer(session, customer_id)
            row = await session.scalar(select(Identity).where(Identity.address == key))
            if row is not None and row.customer_id == customer_id and row.assurance == assurance.value:
                return Change(event_id=None, kind="link", customer_id=customer_id, addresses=(key,))
            from_customer = row.customer_id if row is not None else None
            if from_customer is not None and from_customer != customer_id:
                await hand_over(session, from_customer, customer_id, [key])
            if row is None:
                session.add(
                    Identity(
                        address=key,
                        channel=address.channel,
                        customer_id=customer_id,
                        assurance=assurance.value,
                        method=method,
                    )
                )
            else:
                row.customer_id, row.assurance, row.method = customer_id, assurance.value, method
                row.updated_at = utcnow()
            event = await record(
                session,
                kind="link",
                actor=actor,
                reason=reason,
                address=key,
                customer_id=customer_id,
                from_customer_id=from_customer,
                assurance=assurance.value,
                method=method,
            )
            if from_customer is not None and from_customer != customer_id:
                queue_move(session, event.id, from_customer, customer_id, [key])
            await _identity_event(session, "customer.linked", event)
        log.info("identity link %s: a %s handle joined customer %s", event.id, address.channel, customer_id)
        return await self._finish(
            Change(
                event_id=event.id,
                kind="link",
                customer_id=customer_id,
                from_customer_id=from_customer,
                addresses=(key,),
            )
        )

    async def unlink(self, address: Address, *, actor: str, reason: str | None = None) -> Change:
        """Detach ``address`` from its customer: it becomes a new customer, with its own history."""
        key = str(address)
        async with self._db.session() as session:
            row = await session.scalar(select(Identity).where(Identity.address == key))
            if row is None:
                raise NotFound(f"no customer has the address {address.channel}:…")
            from_customer = row.customer_id
            others = await session.scalar(
                select(Identity.id)
                .where(Identity.customer_id == from_customer, Identity.id != row.id)
                .limit(1)
            )
            if others is None:
                raise Conflict("this is the customer's only handle: there is nothing to unlink it from")
            customer_id = new_customer_id()
            session.add(Customer(id=customer_id))
            await session.flush()
            await hand_over(session, from_customer, customer_id, [key])
            assurance = await channel_word(session, address)  # on its own again: its channel's word
            row.customer_id, row.assurance, row.method = customer_id, assurance.value, "unlinked"
            row.updated_at = utcnow()
            event = await record(
                session,
                kind="unlink",
                actor=actor,
                reason=reason,
                address=key,
                customer_id=customer_id,
                from_customer_id=from_customer,
                assurance=assurance.value,
                method="unlinked",
            )
            queue_move(session, event.id, from_customer, customer_id, [key])
            await _identity_event(session, "customer.unlinked", event)
        log.info("identity unlink %s: a %s handle left customer %s", event.id, address.channel, from_customer)
        return await self._finish(
            Change(
                event_id=event.id,
                kind="unlink",
                customer_id=customer_id,
                from_customer_id=from_customer,
                addresses=(key,),
            )
        )

    async def merge(self, source: str, target: str, *, actor: str, reason: str | None = None) -> Change:
        """Move every handle, message and memory of ``source`` to ``target``; ``source`` stays, merged."""
        if source == target:
            raise Conflict("a customer cannot be merged into itself")
        async with self._db.session() as session:
            source_row = await self._live_customer(session, source)
            await self._live_customer(session, target)
            rows = await session.scalars(select(Identity).where(Identity.customer_id == source))
            moved = _reassign(rows, target)
            source_row.merged_into = target
            event = await record(
                session,
                kind="merge",
                actor=actor,
                reason=reason,
                customer_id=target,
                from_customer_id=source,
                addresses=moved,
            )
            await move_all(session, source, target)
            queue_move(session, event.id, source, target, [])
            await _identity_event(session, "customer.merged", event)
        log.info("identity merge %s: customer %s into %s (%d handles)", event.id, source, target, len(moved))
        return await self._finish(
            Change(
                event_id=event.id,
                kind="merge",
                customer_id=target,
                from_customer_id=source,
                addresses=tuple(moved),
            )
        )

    async def unmerge(self, merge_id: int, *, actor: str, reason: str | None = None) -> Change:
        """Undo merge ``merge_id``: its handles go back with every message and memory they brought or made."""
        async with self._db.session() as session:
            merge = await session.get(IdentityEvent, merge_id)
            if merge is None or merge.kind != "merge":
                raise NotFound(f"ledger entry {merge_id} is not a merge")
            undone = await session.scalar(
                select(IdentityEvent.id).where(
                    IdentityEvent.kind == "unmerge", IdentityEvent.undoes == merge_id
                )
            )
            if undone is not None:
                raise Conflict(f"merge {merge_id} was already undone (ledger entry {undone})")
            assert merge.from_customer_id is not None and merge.customer_id is not None
            source, target = merge.from_customer_id, merge.customer_id
            source_row = await session.get(Customer, source)
            if source_row is None or source_row.merged_into != target:
                raise Conflict(f"customer {source} is no longer merged into {target}")
            target_row = await session.get(Customer, target)
            if target_row is not None and target_row.merged_into is not None:
                # the handles this merge took went on with the target: undoing this one first would
                # give back nothing now and the wrong handles later (chained merges undo in reverse)
                later = await session.scalar(
                    select(IdentityEvent.id)
                    .where(
                        IdentityEvent.kind == "merge",
                        IdentityEvent.from_customer_id == target,
                        IdentityEvent.customer_id == target_row.merged_into,
                    )
                    .order_by(IdentityEvent.id.desc())
                    .limit(1)
                )
                raise Conflict(
                    f"customer {target} was merged into {target_row.merged_into} afterwards "
                    f"(ledger entry {later}): undo merge {later} first"
                )
            rows = list(
                await session.scalars(
                    select(Identity).where(
                        Identity.address.in_(list(merge.addresses)), Identity.customer_id == target
                    )
                )
            )
            await hand_over(session, target, source, [row.address for row in rows])
            back = _reassign(rows, source)
            source_row.merged_into = None
            event = await record(
                session,
                kind="unmerge",
                actor=actor,
                reason=reason,
                customer_id=source,
                from_customer_id=target,
                addresses=back,
                undoes=merge_id,
            )
            if back:
                queue_move(session, event.id, target, source, list(back))
            await _identity_event(session, "customer.unmerged", event)
        log.info("identity unmerge %s: %d handles back to customer %s", event.id, len(back), source)
        return await self._finish(
            Change(
                event_id=event.id,
                kind="unmerge",
                customer_id=source,
                from_customer_id=target,
                addresses=tuple(back),
            )
        )

    # ----- memory moves ------------------------------------------------------------------------

    async def run_moves(self) -> int:
        """Run the pending memory moves in ledger order; returns how many are still waiting
        (``identity.moves``)."""
        return await self._moves.run()

    async def run_forever(self, interval: float) -> None:
        """Re-run queued memory moves every ``interval`` seconds (the app runs this in the background)."""
        await self._moves.run_forever(interval)

    # ----- helpers -----------------------------------------------------------------------------

    async def _finish(self, change: Change) -> Change:
        left = await self.run_moves()
        if not left:
            return change
        return replace(change, memory_moves_pending=left)

    @staticmethod
    async def _live_customer(session: AsyncSession, customer_id: str) -> Customer:
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise NotFound(f"no customer for {customer_id}")
        if customer.merged_into is not None:
            raise Conflict(f"customer {customer_id} is merged into {customer.merged_into}")
        return customer
