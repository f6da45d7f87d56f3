"""The event queue on both stores: written with the transaction it reports, fanned out per endpoint, and
claimed by one sender at a time across processes (PostgreSQL leases)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.events import record_event
from core.events.sender import EventSender
from core.metrics import Metrics
from core.settings import EventSettings
from core.store.db import Database
from core.store.leases import Leases
from core.store.models import EventDelivery, EventEndpoint, utcnow
from tests.core.events.receiver import Receiver
from tests.core.harness import make_settings
from tests.fakes.recording import RecordingSender


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url)
    try:
        yield database
    finally:
        await database.aclose()


async def endpoint(db: Database, url: str, types: list[str], *, include_text: bool = False) -> EventEndpoint:
    async with db.session() as session:
        row = EventEndpoint(
            url=url, event_types=types, secret="whsec_" + "QUJD" * 8, include_text=include_text
        )
        session.add(row)
        await session.flush()
        return row


async def deliveries(db: Database) -> list[EventDelivery]:
    async with db.read() as session:
        return list(await session.scalars(select(EventDelivery).order_by(EventDelivery.id)))


async def test_an_event_is_written_only_with_its_transaction_and_per_subscribed_endpoint(
    db: Database,
) -> None:
    ids_only = await endpoint(db, "https://93.184.216.34/a", ["message.received"])
    with_text = await endpoint(db, "https://93.184.216.34/b", ["message.received"], include_text=True)
    await endpoint(db, "https://93.184.216.34/c", ["case.opened"])  # not subscribed
    async with db.session() as session:
        gone = await session.get(
            EventEndpoint, (await endpoint(db, "https://93.184.216.34/d", ["message.received"])).id
        )
        assert gone is not None
        gone.deleted_at = utcnow()

    class Rollback(Exception):
        pass

    async def undone() -> None:
        async with db.session() as session:
            await record_event(session, "message.received", {"customer_id": "c1"}, personal={"text": "hi"})
            raise Rollback  # what the event reports did not happen: no event either

    with pytest.raises(Rollback):
        await undone()
    assert await deliveries(db) == []

    async with db.session() as session:
        queued = await record_event(
            session, "message.received", {"customer_id": "c1", "at": utcnow()}, personal={"text": "hi"}
        )
    assert queued == 2
    rows = await deliveries(db)
    assert [r.endpoint_id for r in rows] == [ids_only.id, with_text.id]
    assert all(r.status == "pending" and r.customer_id == "c1" for r in rows)
    assert "text" not in rows[0].payload["data"] and rows[1].payload["data"]["text"] == "hi"
    assert isinstance(rows[0].payload["data"]["at"], str)  # times as ISO 8601
    assert rows[0].webhook_id != rows[1].webhook_id
    async with db.session() as session:
        with pytest.raises(ValueError, match="unknown event type"):
            await record_event(session, "message.deleted", {})


# PostgreSQL only: on SQLite one serving process holds the data dir (core.store.serve_lock), so its lanes
# never race another process's
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_processes_never_send_one_delivery_twice(db: Database) -> None:
    async with Receiver() as receiver:
        row = await endpoint(db, receiver.url_for("/hook"), ["message.received"])
        receiver.secrets["/hook"] = row.secret
        async with db.session() as session:
            await record_event(session, "message.received", {"customer_id": "c1"})
        (delivery,) = await deliveries(db)
        settings = EventSettings(allow_private=True)
        senders = [
            EventSender(
                db=db, settings=settings, poll_interval=1, metrics=Metrics(), leases=Leases(db, ttl=30)
            )
            for _ in range(2)
        ]
        receiver.modes["/hook"] = "slow"  # the first sender's request is held open at the receiver
        try:
            first = asyncio.create_task(senders[0]._handle(delivery.id))
            while receiver.arrived == 0:
                await asyncio.sleep(0.01)
            await senders[1]._handle(delivery.id)  # meanwhile, another process finds the row due
            await first
            await senders[1]._handle(delivery.id)  # and after: it is sent
        finally:
            for sender in senders:
                await sender.aclose()
        assert [r.answered for r in receiver.at("/hook")] == [204]
        (done,) = await deliveries(db)
        assert done.status == "sent" and done.attempts == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_event_committed_elsewhere_wakes_the_event_lane_by_notify(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    """Another process commits an event (here: a session of its own); a ``worker`` hub that polls only once
    a minute sends it at once: ``record_event`` announced the ``events`` lane and the hub woke it."""
    from core.compose import wire

    settings = make_settings(tmp_path, database_url=database_url, poll_interval=60.0).model_copy(
        update={"events": EventSettings(allow_private=True)}
    )
    async with Receiver() as receiver:
        row = await endpoint(db, receiver.url_for("/hook"), ["case.opened"])
        receiver.secrets["/hook"] = row.secret
        hub = (await wire(settings, senders={"telegram": RecordingSender("telegram")}, role="worker")).hub
        await hub.start()
        try:
            assert hub._listener is not None
            await asyncio.wait_for(hub._listener.connected.wait(), 10)
            await asyncio.sleep(0.3)  # the rounds woken on connecting have passed: only a NOTIFY wakes it now
            for n in range(1, 3):
                async with db.session() as session:
                    await record_event(session, "case.opened", {"case_id": n})
                # arrived, and marked sent: the receiver holds the request before the sender has its answer,
                # and a hub stopped in between leaves the row due (sent again later, not lost)
                async with asyncio.timeout(20):  # far under the 60 s poll
                    while len(receiver.at("/hook", "case.opened")) < n or any(
                        r.status != "sent" for r in await deliveries(db)
                    ):
                        await asyncio.sleep(0.02)
        finally:
            await hub.stop()
    assert [r.payload["data"]["case_id"] for r in receiver.at("/hook", "case.opened")] == [1, 2]
    assert [r.status for r in await deliveries(db)] == ["sent", "sent"]
