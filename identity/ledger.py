"""The identity ledger: an append-only record of every identity change, and its replay.

Every change to ``identities`` (and to ``customers.merged_into``) is written together with one ledger
entry, in the same transaction, by ``record``. Entries are never updated or deleted, so
``replay(entries)`` rebuilds the current state from nothing, and ``current_state`` reads the same
state from the tables: the two are equal at every commit (the tests check it after every operation).

The kinds:

- ``create``: an address seen for the first time gets ``customer_id`` (a new customer);
- ``link``: ``address`` now belongs to ``customer_id`` with ``assurance`` (it came from
  ``from_customer_id``, or was new when that is empty); also used when only the assurance rises;
- ``unlink``: ``address`` left ``from_customer_id`` for ``customer_id``, a new customer of its own;
- ``merge``: every address of ``from_customer_id`` (listed in ``addresses``) moved to ``customer_id``;
- ``unmerge``: undoes the merge ``undoes``: the ``addresses`` listed moved back to ``customer_id``;
- ``forget``: ``customer_id`` (and every customer merged into it) was erased; ``addresses`` lists the
  tokens its addresses were replaced by. Erasure is the one change made to earlier entries: their
  addresses become those ``forgotten:<digest>`` tokens (``identity.erasure``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.store.models import Customer, Identity, IdentityEvent, utcnow

KINDS = ("create", "link", "unlink", "merge", "unmerge", "forget")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds an address, and how well we know it."""

    customer_id: str
    assurance: str
    method: str


@dataclass(slots=True)
class IdentityState:
    """Addresses to their holder, and the customers merged into another."""

    identities: dict[str, Holder] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)


async def record(
    session: AsyncSession,
    *,
    kind: str,
    actor: str,
    reason: str | None = None,
    address: str | None = None,
    customer_id: str | None = None,
    from_customer_id: str | None = None,
    assurance: str | None = None,
    method: str | None = None,
    addresses: Mapping[str, str] | None = None,
    undoes: int | None = None,
) -> IdentityEvent:
    """Append one entry (flushed, so its ``id`` is known) inside the caller's transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    event = IdentityEvent(
        at=utcnow(),
        kind=kind,
        actor=actor[:128],
        reason=reason[:500] if reason else None,
        address=address,
        customer_id=customer_id,
        from_customer_id=from_customer_id,
        assurance=assurance,
        method=method,
        addresses=dict(addresses or {}),
        undoes=undoes,
    )
    session.add(event)
    await session.flush()
    return event


def replay(events: Iterable[IdentityEvent]) -> IdentityState:
    """The state the entries describe, applied in order (``id`` order is commit order per address)."""
    state = IdentityState()
    for event in events:
        if event.kind in ("create", "link", "unlink"):
            assert event.address and event.customer_id and event.assurance and event.method
            state.identities[event.address] = Holder(event.customer_id, event.assurance, event.method)
        elif event.kind in ("merge", "unmerge"):
            assert event.customer_id and event.from_customer_id
            for address in event.addresses:
                holder = state.identities[address]
                state.identities[address] = Holder(event.customer_id, holder.assurance, holder.method)
            if event.kind == "merge":
                state.merged_into[event.from_customer_id] = event.customer_id
            else:
                state.merged_into.pop(event.customer_id, None)
        elif event.kind == "forget":
            assert event.customer_id
            for address in event.addresses:
                state.identities.pop(address, None)
            gone = {event.customer_id}
            while extra := {c for c, into in state.merged_into.items() if into in gone and c not in gone}:
                gone |= extra
            for customer in gone:
                state.merged_into.pop(customer, None)
    return state


async def ledger(session: AsyncSession) -> list[IdentityEvent]:
    return list(await session.scalars(select(IdentityEvent).order_by(IdentityEvent.id)))


async def entries_involving(
    session: AsyncSession, customers: Collection[str], addresses: Collection[str]
) -> list[IdentityEvent]:
    """The entries, in order, that name one of ``customers`` (either side) or one of ``addresses``."""
    return list(
        await session.scalars(
            select(IdentityEvent)
            .where(
                or_(
                    IdentityEvent.customer_id.in_(customers),
                    IdentityEvent.from_customer_id.in_(customers),
                    IdentityEvent.address.in_(addresses),
                )
            )
            .order_by(IdentityEvent.id)
        )
    )


async def current_state(session: AsyncSession) -> IdentityState:
    """The same state, read from ``identities`` and ``customers``."""
    state = IdentityState()
    for row in await session.scalars(select(Identity)):
        state.identities[row.address] = Holder(row.customer_id, row.assurance, row.method)
    for customer in await session.scalars(select(Customer).where(Customer.merged_into.is_not(None))):
        assert customer.merged_into is not None
        state.merged_into[customer.id] = customer.merged_into
    return state
