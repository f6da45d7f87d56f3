"""Leases with fencing: one process at a time works on a row, across processes and hosts.

A worker *claims* a row before it works on it: one conditional ``UPDATE`` sets the row's
``lease_owner`` to this process, raises its ``lease_token`` (the fencing token) and sets
``lease_until``; it succeeds only when the row is ready for work and nobody holds a live lease on it.
While the work runs, a heartbeat renews the lease every third of its length. Every commit of the work
is conditional on the claim still holding (``Claim.held``: same owner, same token), so a process that
stalled past its lease and lost the row to another one can commit nothing. A process killed with
``kill -9`` renews nothing: its claims lapse within ``worker.lease_seconds`` and another process takes
the rows over. Correctness does not depend on the clocks of the hosts (the token decides); only when
a lapsed claim may be taken over does (keep the hosts' clocks in sync, as NTP does).

A *named* lease (``NamedLeases``) is the same for a round that one process at a time runs
(retention): a row in ``leases`` per name.

On SQLite there is one serving process (``core.store.serve_lock``), whose lanes never run a row twice:
a claim there is a check that the row is ready, written nowhere (two writes per row cost the embedded
default a fifth of its turns a second).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.store.db import Database
from core.store.models import EventDelivery, InboxRow, MemoryJob, NamedLease, OutboxRow, utcnow

log = logging.getLogger(__name__)

Work = InboxRow | OutboxRow | MemoryJob | EventDelivery
W = TypeVar("W", InboxRow, OutboxRow, MemoryJob, EventDelivery)


def process_owner() -> str:
    """A name for one holder of leases: the host, the process and a random suffix (a restarted
    process with the same pid is another holder)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A held lease on one row of ``model``."""

    model: type[Work]
    row_id: int
    owner: str
    token: int
    # False: a claim of the one process that works this store (SQLite), written nowhere (``Leases``)
    shared: bool = True

    def held(self) -> ColumnElement[bool]:
        """The condition every commit of the claimed work adds to its ``WHERE``."""
        model = self.model
        if not self.shared:
            return model.id == self.row_id
        return and_(model.id == self.row_id, model.lease_owner == self.owner, model.lease_token == self.token)

    async def fence(self, session: AsyncSession) -> bool:
        """Inside another transaction: whether the claim still holds; the row stays locked (on
        PostgreSQL) until that transaction ends, so no takeover slips in before it commits."""
        found = await session.scalar(select(self.model.id).where(self.held()).with_for_update())
        return found is not None

    def holds(self, row: Work) -> bool:
        """Whether ``row`` (read inside a transaction) is still under this claim."""
        return not self.shared or (row.lease_owner == self.owner and row.lease_token == self.token)


class Leases:
    """Claims on work rows for one holder (a hub); ``ttl`` is how long a claim lives unrenewed."""

    def __init__(
        self, db: Database, *, ttl: float, owner: str | None = None, shared: bool | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError("a lease must last a positive time")
        self._db = db
        self.ttl = ttl
        self.owner = owner or process_owner()
        # SQLite has one serving process (core.store.serve_lock), whose lanes never run one row twice
        # (core.pipeline.lanes): claims there are checks only, without the two writes a lease costs (they
        # took a fifth of the embedded default's turns a second). PostgreSQL writes them.
        self.shared = db.dialect == "postgresql" if shared is None else shared

    async def claim(self, model: type[W], row_id: int, *, ready: ColumnElement[bool]) -> Claim | None:
        """Claim row ``row_id`` if ``ready`` holds for it and no live lease is on it; None otherwise."""
        now = utcnow()
        if not self.shared:
            async with self._db.read() as session:
                found = await session.scalar(select(model.id).where(model.id == row_id, ready))
            if found is None:
                return None
            return Claim(model=model, row_id=row_id, owner=self.owner, token=0, shared=False)
        async with self._db.session() as session:
            token = await session.scalar(
                update(model)
                .where(
                    model.id == row_id,
                    ready,
                    or_(model.lease_until.is_(None), model.lease_until < now),
                )
                .values(
                    lease_owner=self.owner,
                    lease_token=model.lease_token + 1,
                    lease_until=now + timedelta(seconds=self.ttl),
                )
                .returning(model.lease_token)
            )
        if token is None:
            return None
        return Claim(model=model, row_id=row_id, owner=self.owner, token=int(token))

    async def renew(self, claim: Claim) -> bool:
        """Extend ``claim``; False when it was lost (taken over after it lapsed)."""
        async with self._db.session() as session:
            renewed = await session.execute(
                update(claim.model)
                .where(claim.held())
                .values(lease_until=utcnow() + timedelta(seconds=self.ttl))
            )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]

    async def release(self, claim: Claim) -> None:
        """Give the row back at once (the next claim need not wait for the lease to lapse)."""
        async with self._db.session() as session:
            await session.execute(update(claim.model).where(claim.held()).values(lease_until=None))

    async def run(self, claim: Claim, work: Callable[[Claim], Coroutine[Any, Any, None]]) -> bool:
        """Run ``work(claim)`` renewing the claim, and release it after (committed work released it too).

        When the claim is lost (another process took the row over after a renewal came too late, or no
        renewal has succeeded for a whole lease), the work is cancelled where it is: it must not go on to
        send or write what the new holder does too. Returns False then, True when the work ran to its end.
        """
        if not claim.shared:
            await work(claim)
            return True
        task = asyncio.create_task(work(claim), name=f"{claim.model.__tablename__}:{claim.row_id}")
        lost = asyncio.Event()

        def stop() -> None:
            lost.set()
            task.cancel()

        heartbeat = asyncio.create_task(self._heartbeat(claim, stop), name=f"lease:{claim.row_id}")
        try:
            await task
            return True
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if lost.is_set() and (current is None or not current.cancelling()):
                log.warning(
                    "work on %s %s stopped: its claim was lost", claim.model.__tablename__, claim.row_id
                )
                return False
            raise  # this process is stopping: the work is cancelled with it
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            try:
                await asyncio.shield(self.release(claim))
            except Exception as exc:  # it lapses by itself
                log.warning(
                    "lease on %s %s not released (%s)",
                    claim.model.__tablename__,
                    claim.row_id,
                    type(exc).__name__,
                )

    async def _heartbeat(self, claim: Claim, lost: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                held = await self.renew(claim)
            except Exception as exc:  # a database hiccup: try again at the next beat, while the lease lasts
                log.warning(
                    "lease on %s %s not renewed (%s)",
                    claim.model.__tablename__,
                    claim.row_id,
                    type(exc).__name__,
                )
                held = loop.time() - renewed < self.ttl
            else:
                renewed = loop.time()
            if not held:
                log.warning(
                    "lease on %s %s lost: another process may take it over; the work stops here",
                    claim.model.__tablename__,
                    claim.row_id,
                )
                lost()
                return


class NamedLeases:
    """Leases on named rounds: ``acquire(name)`` is True for one holder at a time until its lease lapses
    or is released."""

    def __init__(self, db: Database, *, owner: str | None = None) -> None:
        self._db = db
        self.owner = owner or process_owner()
        dialect = postgresql if db.dialect == "postgresql" else sqlite
        self._insert = dialect.insert(NamedLease)

    async def acquire(self, name: str, *, ttl: float) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=ttl)
        statement = (
            self._insert.values(name=name, owner=self.owner, token=1, until=until)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={"owner": self.owner, "token": NamedLease.token + 1, "until": until},
                where=or_(NamedLease.until < now, NamedLease.owner == self.owner),
            )
            .returning(NamedLease.owner)
        )
        async with self._db.session() as session:
            owner = await session.scalar(statement)
        return bool(owner == self.owner)

    async def release(self, name: str) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(NamedLease)
                .where(NamedLease.name == name, NamedLease.owner == self.owner)
                .values(until=utcnow())
            )
