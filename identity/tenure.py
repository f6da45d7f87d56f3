"""Who held which handle when, read back from the identity ledger.

A reply (a bot reply, an operator's reply) is written for the customer that holds its handle at the
time, from that customer's whole context: its memories and its recent conversation on every handle. So
a reply written while a customer held handles of two sides (two people wrongly linked or merged) may
quote either side. ``Tenure.mixed`` says whether that was so for one reply: the customer it was written
for held, when it was written, both a handle of ``side`` and a handle outside it.

The ledger is append-only and every entry says which addresses moved from which customer to which, so
the holder of an address and the handles of a customer at any past time follow from it: ``load`` reads
the entries that mention the addresses asked about, and those of every customer that held them.
Addresses an erasure replaced by ``forgotten:`` tokens stay tokens: still handles, of nobody we know.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.store.models import IdentityEvent
from identity.ledger import entries_involving

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Moved:
    """One ledger entry as a move: ``addresses`` went from ``source`` (None: new) to ``target``."""

    at: datetime
    addresses: tuple[str, ...]
    source: str | None
    target: str | None
    forget: bool = False


def _moved(event: IdentityEvent) -> _Moved:
    at = _aware(event.at)
    if event.kind == "forget":
        return _Moved(at, (), None, event.customer_id, forget=True)
    if event.kind in ("merge", "unmerge"):
        return _Moved(at, tuple(event.addresses), event.from_customer_id, event.customer_id)
    return _Moved(at, (event.address,) if event.address else (), event.from_customer_id, event.customer_id)


class _Timeline(Generic[T]):
    """Values that changed at given times; ``at(t)`` is the one in force at ``t`` (or ``default``)."""

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.values: list[T] = []

    def append(self, when: datetime, value: T) -> None:
        self.times.append(when)
        self.values.append(value)

    def at(self, when: datetime, default: T) -> T:
        index = bisect.bisect_right(self.times, when)
        return self.values[index - 1] if index else default


class Tenure:
    """The holders of some addresses over time, and the handles of those holders over time.

    Built by ``load``; the times are the ledger entries' (``at``), in ledger order."""

    def __init__(
        self, entries: Iterable[_Moved], addresses: Collection[str], holders: Collection[str]
    ) -> None:
        self._holder: dict[str, _Timeline[str | None]] = {a: _Timeline() for a in addresses}
        self._handles: dict[str, _Timeline[frozenset[str]]] = {c: _Timeline() for c in holders}
        current: dict[str, frozenset[str]] = {c: frozenset() for c in holders}
        for entry in entries:  # in ledger order
            if entry.source == entry.target and not entry.forget:
                continue  # the assurance of a handle rose: nothing moved
            for address in entry.addresses:
                if address in self._holder:
                    self._holder[address].append(entry.at, entry.target)
            for customer, change in ((entry.source, -1), (entry.target, +1)):
                if customer not in current:
                    continue
                if entry.forget:
                    current[customer] = frozenset()
                elif change < 0:
                    current[customer] = current[customer] - set(entry.addresses)
                else:
                    current[customer] = current[customer] | set(entry.addresses)
                self._handles[customer].append(entry.at, current[customer])

    @classmethod
    async def load(
        cls, session: AsyncSession, addresses: Collection[str], *, holders: Collection[str] = ()
    ) -> Tenure:
        """What the ledger says about ``addresses`` and about every customer that held one of them (and
        ``holders``), up to now."""
        wanted = set(addresses)
        about_addresses = list(
            await session.scalars(
                select(IdentityEvent)
                .where(
                    or_(
                        IdentityEvent.address.in_(wanted),
                        IdentityEvent.kind.in_(("merge", "unmerge")),
                    )
                )
                .order_by(IdentityEvent.id)
            )
        )
        customers = set(holders)
        for event in about_addresses:
            moved = _moved(event)
            if wanted.intersection(moved.addresses):
                customers.update(c for c in (moved.source, moved.target) if c is not None)
        entries = await entries_involving(session, customers, wanted)
        return cls((_moved(e) for e in entries), wanted, customers)

    def handles(self, customer: str, when: datetime) -> frozenset[str]:
        line = self._handles.get(customer)
        return line.at(when, frozenset()) if line is not None else frozenset()

    def written_for(self, address: str, when: datetime, *, holder: str) -> str:
        """The customer a reply to ``address`` written at ``when`` was written for: whoever held the
        address then (``holder``, where the row is now, when the ledger does not say)."""
        line = self._holder.get(address)
        held = line.at(when, None) if line is not None else None
        return held or holder

    def companions(self) -> set[str]:
        """Every address that was ever a handle of a customer that held one of the addresses."""
        return {a for line in self._handles.values() for handles in line.values for a in handles}

    def mixed(self, address: str, when: datetime, *, holder: str, side: Collection[str]) -> bool:
        """Whether a reply to ``address`` written at ``when`` (the row now with ``holder``) was written for
        a customer that then held both a handle in ``side`` and one outside it: it may quote either."""
        customer = self.written_for(address, _aware(when), holder=holder)
        handles = self.handles(customer, _aware(when)) | {address}
        inside = handles.intersection(side)
        return bool(inside) and len(inside) < len(handles)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
