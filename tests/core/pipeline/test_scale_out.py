"""Scale-out (issue 13): several hubs on one database claim work with leases and fencing.

Two hubs in one test process, each with its own ``Database`` engine, data dir and lease holder, stand in
for two hosts sharing one PostgreSQL (the subprocess crash test, ``tests/test_crash_scale.py``, runs real
processes). Before leases, both hubs answered the same rows: replies were sent twice and every message
cost two LLM calls.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from core.store.db import Database
from core.store.leases import Claim, Leases, NamedLeases
from core.store.models import InboxRow, OutboxRow, Turn
from tests.core.harness import make_settings, running_hub
from tests.core.pipeline.test_pipeline import tg, user_texts
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording import RecordingSender

postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _first_inbox_row(database_url: str, tmp_path: Path) -> tuple[Database, int]:
    """A database with one pending, stamped inbox row (through a hub that never starts its lanes)."""
    from core.compose import build_hub

    settings = make_settings(tmp_path / "seed", database_url=database_url)
    hub = await build_hub(settings, senders={"telegram": RecordingSender("telegram")})
    accepted = await hub.accept(tg(7, 1, "hello"))
    await hub.stop()
    db = await Database.open(database_url)
    async with db.session() as session:
        await session.execute(update(InboxRow).values(customer_id="c-7"))
    return db, accepted.inbox_id


async def test_a_claim_is_fenced_and_taken_over_when_it_lapses(database_url: str, tmp_path: Path) -> None:
    db, row_id = await _first_inbox_row(database_url, tmp_path)
    first, second = (
        Leases(db, ttl=0.3, owner="host-a", shared=True),
        Leases(db, ttl=30, owner="host-b", shared=True),
    )
    ready = InboxRow.status == "pending"
    try:
        held = await first.claim(InboxRow, row_id, ready=ready)
        assert held is not None and held.token == 1
        assert await second.claim(InboxRow, row_id, ready=ready) is None  # live: nobody else gets it
        await asyncio.sleep(0.4)  # host-a stalls past its lease
        taken = await second.claim(InboxRow, row_id, ready=ready)
        assert taken is not None and taken.token == 2
        # host-a wakes up: its renewal and its commit are refused; host-b's go through
        assert not await first.renew(held)
        async with db.session() as session:
            stale = await session.execute(update(InboxRow).where(held.held()).values(status="done"))
            assert stale.rowcount == 0
            fresh = await session.execute(update(InboxRow).where(taken.held()).values(status="done"))
            assert fresh.rowcount == 1
        assert await first.claim(InboxRow, row_id, ready=ready) is None  # done: not ready any more
    finally:
        await db.aclose()


async def test_a_named_round_runs_in_one_holder_at_a_time(database_url: str, tmp_path: Path) -> None:
    db = await Database.open(database_url)
    a, b = NamedLeases(db, owner="host-a"), NamedLeases(db, owner="host-b")
    try:
        assert await a.acquire("retention", ttl=0.3)
        assert not await b.acquire("retention", ttl=30)
        assert await a.acquire("retention", ttl=0.3)  # its holder renews it
        await asyncio.sleep(0.4)
        assert await b.acquire("retention", ttl=30)  # lapsed: taken over
        assert not await a.acquire("retention", ttl=30)
        await b.release("retention")
        assert await a.acquire("retention", ttl=30)
    finally:
        await db.aclose()


@postgres_only
async def test_two_hubs_on_one_database_answer_each_message_once_in_order(
    database_url: str, tmp_path: Path
) -> None:
    customers, per_customer = 12, 5
    sent_a, sent_b = RecordingSender("telegram"), RecordingSender("telegram")
    with FakeOpenAI(delay=0.05) as fake:
        settings_a = make_settings(tmp_path / "a", llm_url=fake.base_url, database_url=database_url)
        settings_b = make_settings(tmp_path / "b", llm_url=fake.base_url, database_url=database_url)
        async with running_hub(settings_a, sent_a) as a, running_hub(settings_b, sent_b) as b:
            # a load balancer spreads the webhooks over both; each customer writes in order
            update_id = 0
            for turn in range(per_customer):
                for user in range(customers):
                    update_id += 1
                    hub = a if (user + turn) % 2 else b
                    await hub.accept(tg(1000 + user, update_id, f"question {turn} of {user}"))
            for _ in range(600):
                if len(sent_a.sent) + len(sent_b.sent) >= customers * per_customer:
                    break
                await asyncio.sleep(0.05)
            await a.wait_idle(timeout=60)
            await b.wait_idle(timeout=60)
            await asyncio.sleep(0.3)  # a second reply, if one were coming, would be on its way
            keys = [m.idempotency_key for m in [*sent_a.sent, *sent_b.sent]]
            assert len(keys) == customers * per_customer
            assert len(set(keys)) == len(keys)  # no message answered twice
            assert sent_a.sent and sent_b.sent  # both processes did work
            assert len(user_texts(fake)) == customers * per_customer  # one LLM call per message
            async with a.db.read() as session:
                assert await session.scalar(select(func.count()).select_from(OutboxRow)) == len(keys)
                replies = list(
                    await session.execute(
                        select(Turn.customer_id, Turn.inbox_id, Turn.id)
                        .where(Turn.role == "assistant")
                        .order_by(Turn.id)
                    )
                )
    answered: dict[str, list[int]] = defaultdict(list)
    for customer, inbox_id, _ in replies:
        answered[customer].append(inbox_id)
    assert len(answered) == customers
    for inbox_ids in answered.values():
        assert inbox_ids == sorted(inbox_ids)  # each customer answered in the order they wrote


@postgres_only
async def test_a_web_process_commit_wakes_a_worker_process_by_notify(
    database_url: str, tmp_path: Path
) -> None:
    """A ``web`` hub commits; a ``worker`` hub that polls only once a minute answers at once: woken by
    ``NOTIFY`` (the pickup time is in its ``threadline_pickup_seconds``)."""
    from core.compose import wire

    sender = RecordingSender("telegram")
    slow_poll = {"poll_interval": 60.0}
    web_settings = make_settings(tmp_path / "web", database_url=database_url, **slow_poll)
    worker_settings = make_settings(tmp_path / "worker", database_url=database_url, **slow_poll)
    web = (await wire(web_settings, senders={"telegram": RecordingSender("telegram")}, role="web")).hub
    worker = (await wire(worker_settings, senders={"telegram": sender}, role="worker")).hub
    await web.start()
    await worker.start()
    try:
        assert worker._listener is not None
        await asyncio.wait_for(worker._listener.connected.wait(), 10)
        await asyncio.sleep(0.2)  # the first poll round after connecting has passed
        for update_id in range(1, 4):
            await web.accept(tg(77, update_id, f"hello {update_id}"))
            await sender.wait_for(update_id, timeout=20)  # far under the 60 s poll: only NOTIFY wakes it
        assert web.worker.lanes.busy == 0 and not web.delivery.lanes._active  # the web hub ran no lanes
        samples = worker.metrics.registry.get_sample_value("threadline_pickup_seconds_count")
        assert samples == 3
    finally:
        await web.stop()
        await worker.stop()


async def test_one_retention_round_per_interval_across_processes(database_url: str, tmp_path: Path) -> None:
    from core.memory.local import LocalMemory
    from core.pipeline.retention import Retention
    from core.settings import LLMSettings, RetentionSettings

    # an interval well above a round's time on a loaded machine: b must find a's lease still held
    settings = RetentionSettings(days=30, interval_seconds=5.0)
    db_a, db_b = await Database.open(database_url), await Database.open(database_url)
    memory = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    a = Retention(db=db_a, memory=memory, settings=settings)
    b = Retention(db=db_b, memory=memory, settings=settings)
    try:
        assert await a.run_round() is not None
        assert await b.run_round() is None  # a holds this interval's round
        assert await a.run_round() is not None  # its holder may run it again
        await asyncio.sleep(5.0)
        assert await b.run_round() is not None  # the next interval: whoever comes first
    finally:
        await memory.aclose()
        await db_a.aclose()
        await db_b.aclose()


async def test_a_proof_code_is_written_only_under_a_live_claim(database_url: str, tmp_path: Path) -> None:
    """A process that stalled past its lease must not replace the code the process that took the message
    over has sent: the identity layer writes the challenge only inside the claim's fence."""
    from core.compose import open_services
    from core.errors import ClaimLost
    from core.messages import Assurance, IncomingTurn
    from core.pipeline.inbox import Inbox
    from core.store.models import LinkChallenge
    from identity.proof import SelfServiceLinking
    from identity.resolver import DatabaseResolver

    services = await open_services(make_settings(tmp_path, database_url=database_url))
    db = services.db
    try:
        message = tg(5, 1, "/link +15551230000")
        accepted = await Inbox(db).accept(message)
        await Inbox(db).aclose()
        customer = await DatabaseResolver(db).resolve(message.sender, assurance=Assurance.PLATFORM_ATTESTED)
        proofs = SelfServiceLinking(db, services.links, deliverable={"telegram", "sms"})
        stalled, taker = (
            Leases(db, ttl=0.2, owner="host-a", shared=True),
            Leases(db, ttl=30, owner="host-b", shared=True),
        )
        ready = InboxRow.status == "pending"
        lost = await stalled.claim(InboxRow, accepted.inbox_id, ready=ready)
        await asyncio.sleep(0.3)
        live = await taker.claim(InboxRow, accepted.inbox_id, ready=ready)
        assert lost is not None and live is not None

        def turn(fence: object) -> IncomingTurn:
            return IncomingTurn(
                inbox_id=accepted.inbox_id,
                customer_id=customer.customer_id,
                sender=message.sender,
                channel="telegram",
                text=message.text,
                authenticated=True,
                fence=fence,  # type: ignore[arg-type]
            )

        handled = await proofs.intercept(turn(live.fence))
        assert handled is not None and len(handled.notices) == 1
        async with db.read() as session:
            code_hash = await session.scalar(select(LinkChallenge.code_hash))
        with pytest.raises(ClaimLost):
            await proofs.intercept(turn(lost.fence))  # the stalled process wakes up
        async with db.read() as session:
            assert await session.scalar(select(func.count()).select_from(LinkChallenge)) == 1
            assert await session.scalar(select(LinkChallenge.code_hash)) == code_hash  # the sent code stands
    finally:
        await services.aclose()


async def test_a_customer_waits_while_any_of_its_rows_is_in_flight_elsewhere(
    database_url: str, tmp_path: Path
) -> None:
    """After a merge a customer can own a row another process is answering (it came with the merged
    customer) and an older one nobody has started: the older one waits, one row of a customer at a time."""
    from core.compose import build_hub

    sender = RecordingSender("telegram")
    settings = make_settings(tmp_path, database_url=database_url)
    hub = await build_hub(settings, senders={"telegram": sender})
    older = await hub.accept(tg(9, 1, "first"))
    newer = await hub.accept(tg(9, 2, "second"))
    async with hub.db.session() as session:
        await session.execute(update(InboxRow).values(customer_id="cus_merged"))
    elsewhere = Leases(await Database.open(database_url), ttl=30, owner="host-b", shared=True)
    held = await elsewhere.claim(InboxRow, newer.inbox_id, ready=InboxRow.status == "pending")
    assert held is not None
    await hub.start()
    try:
        await asyncio.sleep(0.5)  # many poll rounds of this hub
        assert sender.sent == []  # the older row waits for the one in flight elsewhere
        await elsewhere.release(held)  # host-b gives up (or its lease lapses)
        await sender.wait_for(2, timeout=30)
        assert [m.idempotency_key for m in sender.sent] == [
            f"reply:{older.inbox_id}",
            f"reply:{newer.inbox_id}",
        ]
    finally:
        await hub.stop()
        await elsewhere._db.aclose()


async def test_work_whose_claim_is_lost_stops_before_it_sends(database_url: str, tmp_path: Path) -> None:
    """A process that lost its claim (a stall past its lease, and another process took the row) must
    not go on to send: the work is cancelled at the next beat of the heartbeat. Before, it logged the
    loss and sent anyway, and the row went out twice (found by the three-process crash test)."""
    db, row_id = await _first_inbox_row(database_url, tmp_path)
    leases = Leases(db, ttl=0.3, owner="host-a", shared=True)
    done: list[str] = []

    async def slow_send(claim: object) -> None:
        await asyncio.sleep(3)  # e.g. waiting for the platform's pacing
        done.append("sent")

    try:
        claim = await leases.claim(InboxRow, row_id, ready=InboxRow.status == "pending")
        assert claim is not None
        running = asyncio.create_task(leases.run(claim, slow_send))
        await asyncio.sleep(0.15)
        async with db.session() as session:  # host-b takes the row over
            await session.execute(
                update(InboxRow).values(lease_owner="host-b", lease_token=InboxRow.lease_token + 1)
            )
        assert await asyncio.wait_for(running, 10) is False
        assert done == []
        # a stop of the process still cancels the work as before
        claim_b = Claim(model=InboxRow, row_id=row_id, owner="host-b", token=claim.token + 1)
        stopping = asyncio.create_task(
            Leases(db, ttl=30, owner="host-b", shared=True).run(claim_b, slow_send)
        )
        await asyncio.sleep(0.1)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert done == []
    finally:
        await db.aclose()
