"""Retention: what is older than the cutoff is gone from every table and file; the rest stays."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.messages import Address, InboundMessage
from core.pipeline.hub import Hub
from core.pipeline.retention import Retention
from core.settings import RetentionSettings
from core.store.models import (
    Case,
    Customer,
    EventDelivery,
    EventEndpoint,
    Handoff,
    Identity,
    InboxRow,
    MemoryJob,
    OperatorAction,
    OutboxRow,
    Turn,
    utcnow,
)
from tests.conftest import subprocess_env, threadline_cmd
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message
from tests.scan import files_holding, tables_holding

OLD = "zqx7oldcanary"
NEW = "zqx7newcanary"


@pytest.fixture
async def hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    settings = make_settings(tmp_path).model_copy(update={"database_url": database_url})
    async with running_hub(settings, RecordingSender("sms")) as running:
        yield running


async def say(hub: Hub, *messages: InboundMessage) -> None:
    for message in messages:
        await hub.accept(message)
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def count(hub: Hub, model: type, customer_id: str) -> int:
    async with hub.db.read() as session:
        column = model.customer_id  # type: ignore[attr-defined]
        return int(await session.scalar(select(func.count()).where(column == customer_id)) or 0)


async def test_retention_removes_what_is_older_than_the_cutoff_everywhere(hub: Hub, tmp_path: Path) -> None:
    await say(hub, sms_message("SM1", f"my code word is {OLD} and the router blinks", "+15551110000"))
    await asyncio.sleep(0.05)
    split = utcnow()  # everything above was written before this moment, everything below after it
    await asyncio.sleep(0.05)
    await say(hub, sms_message("SM2", f"my code word is {NEW} and the printer jams", "+15552220000"))
    old = (await hub.resolver.resolve(Address.parse("sms:+15551110000"))).customer_id
    new = (await hub.resolver.resolve(Address.parse("sms:+15552220000"))).customer_id
    assert OLD in " ".join(m.text for m in await hub.memory.list(old))

    retention = Retention(db=hub.db, memory=hub.memory, settings=RetentionSettings(days=30))
    report = await retention.run_once(now=split + timedelta(days=30))

    assert report.cutoff == split
    assert report.removed["turns"] == 2 and report.removed["inbox"] == 1 and report.removed["outbox"] == 1
    assert report.removed["memory_jobs"] == 1 and report.removed["memories"] >= 1
    assert not report.memory_unavailable
    for model in (Turn, InboxRow, OutboxRow, MemoryJob):
        assert await count(hub, model, old) == 0, model.__tablename__
        assert await count(hub, model, new) >= 1, model.__tablename__
    assert await hub.memory.list(old) == []
    assert NEW in " ".join(m.text for m in await hub.memory.list(new))
    assert await tables_holding(hub, OLD) == []
    assert await tables_holding(hub, NEW) != []
    if hub.db.dialect == "sqlite":  # the data dir holds our database and Mem0's files
        assert files_holding(tmp_path, OLD.encode()) == []
        assert files_holding(tmp_path, NEW.encode()) != []
    async with hub.db.read() as session:  # who is who stays: the customer can write again
        assert await session.get(Customer, old) is not None
        assert await session.scalar(
            select(Identity.customer_id).where(Identity.address == "sms:+15551110000")
        )

    again = await retention.run_once(now=split + timedelta(days=30))
    assert sum(again.removed.values()) == 0


async def test_retention_never_drops_a_message_that_is_not_answered_yet(hub: Hub) -> None:
    await say(hub, sms_message("SM1", "an old conversation", "+15551110000"))
    async with hub.db.session() as session:  # a message accepted but not answered (e.g. the LLM is down)
        session.add(
            InboxRow(
                channel="sms",
                provider_message_id="SM-waiting",
                sender="sms:+15553330000",
                text="still waiting for an answer",
                received_at=utcnow() - timedelta(days=90),
                status="pending",
                next_attempt_at=utcnow() + timedelta(days=1),
            )
        )
    retention = Retention(db=hub.db, memory=hub.memory, settings=RetentionSettings(days=30))
    report = await retention.run_once(now=utcnow() + timedelta(days=31))
    assert report.removed["inbox"] == 1  # the answered one
    async with hub.db.read() as session:
        left = list(await session.scalars(select(InboxRow.provider_message_id)))
    assert left == ["SM-waiting"]


async def test_retention_removes_closed_handoffs_and_operator_actions_but_never_an_open_handoff(
    hub: Hub,
) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=90), now - timedelta(days=1)
    async with hub.db.session() as session:
        session.add_all(
            [
                Handoff(
                    customer_id="cus_a",
                    status="closed",
                    requested_by="customer",
                    opened_at=old,
                    closed_at=old,
                ),
                # opened long ago, closed lately: kept until its closing is older than the cutoff
                Handoff(
                    customer_id="cus_a",
                    status="closed",
                    requested_by="operator",
                    opened_at=old,
                    closed_at=recent,
                ),
                Handoff(customer_id="cus_b", status="waiting", requested_by="customer", opened_at=old),
                Handoff(
                    customer_id="cus_c",
                    status="owned",
                    requested_by="operator",
                    operator="ana",
                    opened_at=old,
                ),
                OperatorAction(operator="ana", action="take_over", customer_id="cus_a", at=old),
                OperatorAction(operator="ana", action="hand_back", customer_id="cus_a", at=recent),
                OperatorAction(operator="ana", action="export", at=old),
            ]
        )
    retention = Retention(db=hub.db, memory=hub.memory, settings=RetentionSettings(days=30))

    report = await retention.run_once(now=now)

    assert report.removed["handoffs"] == 1 and report.removed["operator_actions"] == 2
    async with hub.db.read() as session:
        left = sorted((h.customer_id, h.status) for h in await session.scalars(select(Handoff)))
        actions = list(await session.scalars(select(OperatorAction.action)))
    assert left == [("cus_a", "closed"), ("cus_b", "waiting"), ("cus_c", "owned")]
    assert actions == ["hand_back"]
    later = await retention.run_once(now=now + timedelta(days=365))  # open handoffs stay, however old
    assert later.removed["handoffs"] == 1
    async with hub.db.read() as session:
        assert sorted(h.status for h in await session.scalars(select(Handoff))) == ["owned", "waiting"]


async def test_retention_removes_resolved_cases_by_their_resolution_but_never_an_open_case(hub: Hub) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=90), now - timedelta(days=1)

    def case(customer: str, status: str, resolved_at: datetime | None) -> Case:
        return Case(
            customer_id=customer,
            title="router broken",
            status=status,
            opened_at=old,
            resolved_at=resolved_at,
            opened_by="rules",
            turn_ids=[],
        )

    async with hub.db.session() as session:
        session.add_all(
            [
                case("cus_a", "resolved", old),
                case("cus_a", "resolved", recent),  # opened long ago, resolved lately: kept for now
                case("cus_b", "open", None),
            ]
        )
    retention = Retention(db=hub.db, memory=hub.memory, settings=RetentionSettings(days=30))

    assert (await retention.run_once(now=now)).removed["cases"] == 1
    async with hub.db.read() as session:
        left = sorted((c.customer_id, c.status, c.resolved_at) for c in await session.scalars(select(Case)))
    assert [(who, status) for who, status, _ in left] == [("cus_a", "resolved"), ("cus_b", "open")]
    later = await retention.run_once(now=now + timedelta(days=365))  # an open case stays, however old
    assert later.removed["cases"] == 1
    async with hub.db.read() as session:
        assert [c.status for c in await session.scalars(select(Case))] == ["open"]


async def test_retention_removes_finished_event_deliveries_but_never_one_still_to_send(hub: Hub) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=90), now - timedelta(days=1)
    async with hub.db.session() as session:
        endpoint = EventEndpoint(
            url="https://93.184.216.34/hook", event_types=["case.opened"], secret="whsec_x"
        )
        session.add(endpoint)
        await session.flush()

        def delivery(name: str, status: str, created_at: datetime) -> EventDelivery:
            return EventDelivery(
                webhook_id=f"msg_{name}",
                endpoint_id=endpoint.id,
                event_type="case.opened",
                payload={"type": "case.opened", "data": {}},
                status=status,
                created_at=created_at,
            )

        session.add_all(
            [
                delivery("old_sent", "sent", old),
                delivery("old_dead", "dead", old),
                delivery("old_cancelled", "cancelled", old),
                delivery("old_pending", "pending", old),  # never tried yet (e.g. the lane was down): stays
                delivery("old_failed", "failed", old),  # a retry is due: stays
                delivery("new_sent", "sent", recent),
                delivery("new_dead", "dead", recent),
            ]
        )
    retention = Retention(db=hub.db, memory=hub.memory, settings=RetentionSettings(days=30))

    assert (await retention.run_once(now=now)).removed["event_deliveries"] == 3
    async with hub.db.read() as session:
        left = sorted(d.webhook_id for d in await session.scalars(select(EventDelivery)))
    assert left == ["msg_new_dead", "msg_new_sent", "msg_old_failed", "msg_old_pending"]
    later = await retention.run_once(now=now + timedelta(days=365))  # still to send: stays, however old
    assert later.removed["event_deliveries"] == 2
    async with hub.db.read() as session:
        assert sorted(d.status for d in await session.scalars(select(EventDelivery))) == ["failed", "pending"]


def run_retention(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        threadline_cmd("retention"),
        env=subprocess_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_retention_setting_and_cli(tmp_path: Path) -> None:
    refused = run_retention(tmp_path)
    assert refused.returncode == 2 and "THREADLINE_RETENTION__DAYS" in refused.stderr
    done = run_retention(tmp_path, THREADLINE_RETENTION__DAYS="30")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed"]["turns"] == 0 and report["removed"]["memories"] == 0
    bad = run_retention(tmp_path, THREADLINE_RETENTION__DAYS="0")
    assert bad.returncode != 0 and "THREADLINE_RETENTION__DAYS" in bad.stderr
