"""The admin's read side of identity: find customers, show one whole, list the ledger.

Nothing here changes anything. ``list_customers`` finds customers by any handle, in any spelling
that normalises (``(555) 123-0000`` finds ``sms:+15551230000``), else by a piece of an address.
``find_customer`` names one by its id or any of its addresses; ``show_customer`` gathers one customer's
handles, recent conversation across channels and memories with their provenance; ``ledger_entries``
reads the identity ledger about a customer or a handle. Merge suggestions are ``identity.suggestions``'s.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, true

from core.agent.conversation import WITHHELD
from core.errors import InvalidAddress, MemoryUnavailable, NotFound
from core.messages import Address, MemoryRecord
from core.ports import MemoryStore
from core.store.db import Database
from core.store.models import Customer, Identity, IdentityEvent, Turn
from identity.normalize import normalize_address, normalize_phone


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerSummary:
    """A customer in a listing: its id, when it was first seen, its handles, and its merge target."""

    id: str
    created_at: datetime
    merged_into: str | None
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerPage:
    """One page of a listing; ``total`` counts every match, not only this page."""

    total: int
    limit: int
    offset: int
    customers: tuple[CustomerSummary, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityView:
    """A handle of a customer, how well it is known (assurance), how (method) and when."""

    address: str
    channel: str
    assurance: str
    method: str
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnView:
    """One line of the conversation log."""

    id: int
    channel: str
    address: str
    role: str
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerDetail:
    """Everything an admin sees of one customer.

    ``merged_into`` / ``merge_id``: set while the customer is merged (``merge_id`` undoes it);
    ``merged_from``: the customers merged into this one. ``memories_available`` is False when the
    memory backend did not answer (``memories`` is then empty).
    """

    id: str
    created_at: datetime
    merged_into: str | None
    merge_id: int | None
    merged_from: tuple[str, ...]
    identities: tuple[IdentityView, ...]
    recent_turns: tuple[TurnView, ...]
    memories: tuple[MemoryRecord, ...]
    memories_available: bool


def _national_phone(text: str, default_region: str) -> Address | None:
    """``text`` as a phone number written without ``+`` (``(555) 123-0000``), read in ``default_region``."""
    if "@" in text or ":" in text:
        return None
    try:
        return Address(channel="sms", handle=normalize_phone(text, default_region))
    except InvalidAddress:
        return None


def parse_query(text: str, *, default_region: str = "US") -> Address | None:
    """``text`` as a normalised address (a bare national phone number counts, read in
    ``default_region``); None when it is no address at all."""
    try:
        return normalize_address(text, default_region=default_region)
    except InvalidAddress:
        return _national_phone(text, default_region)


def _matching(search: str, default_region: str) -> ColumnElement[bool]:
    """Customers whose id is ``search`` or with a handle that is ``search`` normalised.

    What does not normalise matches a piece of an address (case-insensitive); a bare national phone
    number matches both ways, as its digits may be a piece of a longer number too.
    """
    query = search.strip()
    if not query:
        return true()
    handle: ColumnElement[bool]
    try:
        handle = Identity.address == str(normalize_address(query, default_region=default_region))
    except InvalidAddress:
        handle = func.lower(Identity.address).contains(query.lower(), autoescape=True)
        phone = _national_phone(query, default_region)
        if phone is not None:
            handle = or_(handle, Identity.address == str(phone))
    return or_(Customer.id == query, Customer.id.in_(select(Identity.customer_id).where(handle)))


async def list_customers(
    db: Database,
    *,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
    include_merged: bool = False,
    default_region: str = "US",
) -> CustomerPage:
    """Customers matching ``search`` (all when None), newest first; merged ones only when asked."""
    condition = _matching(search, default_region) if search else true()
    if not include_merged:
        condition = condition & Customer.merged_into.is_(None)
    async with db.session() as session:
        total = await session.scalar(select(func.count()).select_from(Customer).where(condition))
        customers = list(
            await session.scalars(
                select(Customer)
                .where(condition)
                .order_by(Customer.created_at.desc(), Customer.id)
                .limit(limit)
                .offset(offset)
            )
        )
        handles: dict[str, list[str]] = defaultdict(list)
        if customers:
            rows = await session.execute(
                select(Identity.customer_id, Identity.address)
                .where(Identity.customer_id.in_([c.id for c in customers]))
                .order_by(Identity.id)
            )
            for customer_id, address in rows:
                handles[customer_id].append(address)
    return CustomerPage(
        total=int(total or 0),
        limit=limit,
        offset=offset,
        customers=tuple(
            CustomerSummary(
                id=c.id,
                created_at=c.created_at,
                merged_into=c.merged_into,
                addresses=tuple(handles[c.id]),
            )
            for c in customers
        ),
    )


async def customer_of(db: Database, address: Address) -> str | None:
    """The customer holding ``address``, or None."""
    async with db.read() as session:
        found: str | None = await session.scalar(
            select(Identity.customer_id).where(Identity.address == str(address))
        )
        return found


async def find_customer(db: Database, who: str, *, default_region: str = "US") -> str:
    """The customer ``who`` names: its id (``cus_...``) or one of its addresses, in any spelling that
    normalises. Never makes a customer. ``NotFound`` ("no customer for WHO") when there is none,
    ``InvalidAddress`` for an address that cannot be normalised."""
    if who.startswith("cus_"):
        async with db.read() as session:
            if await session.get(Customer, who) is None:
                raise NotFound(f"no customer for {who}")
        return who
    address = normalize_address(who, default_region=default_region)
    found = await customer_of(db, address)
    if found is None:
        raise NotFound(f"no customer for {address}")
    return found


async def show_customer(
    db: Database, memory: MemoryStore, customer_id: str, *, turns: int = 20
) -> CustomerDetail:
    """One customer whole: handles, the last ``turns`` turns (oldest first), memories; ``NotFound``."""
    async with db.session() as session:
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise NotFound(f"no customer for {customer_id}")
        identities = list(
            await session.scalars(
                select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.id)
            )
        )
        recent = list(
            await session.scalars(
                select(Turn)
                .where(Turn.customer_id == customer_id, Turn.role != WITHHELD)  # no model or person reads it
                .order_by(Turn.id.desc())
                .limit(turns)
            )
        )
        merged_from = tuple(
            await session.scalars(
                select(Customer.id).where(Customer.merged_into == customer_id).order_by(Customer.id)
            )
        )
        merge_id = None
        if customer.merged_into is not None:
            merge_id = await session.scalar(
                select(IdentityEvent.id)
                .where(IdentityEvent.kind == "merge", IdentityEvent.from_customer_id == customer_id)
                .order_by(IdentityEvent.id.desc())
                .limit(1)
            )
    try:
        memories, available = tuple(await memory.list(customer_id)), True
    except MemoryUnavailable:
        memories, available = (), False
    return CustomerDetail(
        id=customer.id,
        created_at=customer.created_at,
        merged_into=customer.merged_into,
        merge_id=merge_id,
        merged_from=merged_from,
        identities=tuple(
            IdentityView(
                address=row.address,
                channel=row.channel,
                assurance=row.assurance,
                method=row.method,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in identities
        ),
        recent_turns=tuple(
            TurnView(
                id=t.id,
                channel=t.channel,
                address=t.address,
                role=t.role,
                text=t.text,
                created_at=t.created_at,
            )
            for t in reversed(recent)
        ),
        memories=memories,
        memories_available=available,
    )


async def ledger_entries(
    db: Database, *, customer_id: str | None = None, address: Address | None = None, limit: int = 500
) -> list[IdentityEvent]:
    """The last ``limit`` ledger entries (oldest first) about ``customer_id`` (as either side of the
    change) and about ``address`` (including merges and unmerges that moved it)."""
    query = select(IdentityEvent)
    if customer_id is not None:
        query = query.where(
            or_(IdentityEvent.customer_id == customer_id, IdentityEvent.from_customer_id == customer_id)
        )
    if address is not None:
        query = query.where(
            or_(IdentityEvent.address == str(address), IdentityEvent.kind.in_(("merge", "unmerge")))
        )
    async with db.session() as session:
        entries = list(await session.scalars(query.order_by(IdentityEvent.id)))
    if address is not None:
        key = str(address)
        entries = [e for e in entries if e.address == key or key in (e.addresses or {})]
    return entries[-limit:] if limit > 0 else []
