"""``CaseDesk`` on both stores (SQLite and PostgreSQL): two people resolving one case at once resolve it
once and tell the customer once; a forgotten or merged customer's cases are not a person's to change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.errors import Conflict, NotFound
from core.messages import Address
from core.pipeline.case_desk import CaseDesk
from core.pipeline.cases import RATING_QUESTION, list_cases
from core.pipeline.hub import Hub
from core.store.models import EventDelivery, EventEndpoint, MemoryJob, OutboxRow
from identity.erasure import forget
from identity.linking import IdentityLinks
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message, telegram_message

PHONE = "+15551230000"


@pytest.fixture
async def hub(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Hub, RecordingSender]]:
    settings = make_settings(tmp_path).model_copy(update={"database_url": database_url})
    sms = RecordingSender("sms")
    async with running_hub(settings, sms, RecordingSender("telegram")) as running:
        yield running, sms


async def customer_with_open_case(hub: Hub) -> str:
    await hub.accept(sms_message("SM1", "my router is broken", PHONE))  # the rules open case #1
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
    return await customer_of(hub, f"sms:{PHONE}")


async def customer_of(hub: Hub, address: str) -> str:
    return (await hub.resolver.resolve(Address.parse(address))).customer_id


async def count(hub: Hub, table: type[OutboxRow] | type[MemoryJob]) -> int:
    async with hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_two_people_resolving_at_once_resolve_once_and_tell_once(
    hub: tuple[Hub, RecordingSender],
) -> None:
    running, sms = hub
    customer = await customer_with_open_case(running)
    desk = CaseDesk(running.db)
    outbox, jobs = await count(running, OutboxRow), await count(running, MemoryJob)

    results = await asyncio.gather(
        *(
            desk.resolve(customer, 1, summary=f"fixed by {who}", operator=who, tell=True)
            for who in ("ann", "bob", "cat")
        ),
        return_exceptions=True,
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(done) == 1 and len(refused) == 2, results
    assert all(isinstance(r, Conflict) and "resolved already" in str(r) for r in refused)
    (case,) = await list_cases(running.db, customer)
    assert case.summary == done[0].case.summary and case.resolved_by == done[0].case.resolved_by
    assert await count(running, OutboxRow) == outbox + 1 and await count(running, MemoryJob) == jobs + 1

    assert await running.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
    told = [m.text for m in sms.sent if m.text.endswith(RATING_QUESTION)]
    assert told == [f"Case #1 is resolved. {RATING_QUESTION}"]
    written = [m.text for m in await running.memory.list(customer) if m.metadata.get("case_id") == 1]
    assert len(written) == 1 and written[0].endswith(case.summary or "?")


async def test_a_forgotten_or_merged_customer_is_refused(hub: tuple[Hub, RecordingSender]) -> None:
    running, _ = hub
    customer = await customer_with_open_case(running)
    await running.accept(telegram_message(5, "hello", 42))
    assert await running.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
    other = await customer_of(running, "telegram:42")
    desk = CaseDesk(running.db)

    await IdentityLinks(running.db, running.memory).merge(other, customer, actor="admin")
    with pytest.raises(Conflict, match="merged into"):
        await desk.open(other, title="x", operator="ann")
    await forget(running.db, running.memory, customer, actor="admin")
    with pytest.raises(NotFound):
        await desk.resolve(customer, 1, summary="x", operator="ann")
    with pytest.raises(NotFound):
        await desk.open(customer, title="x", operator="ann")
    with pytest.raises(ValueError, match="operator name"):
        await desk.open(other, title="x", operator="")


async def test_a_persons_cases_are_events_without_their_words_unless_asked(
    hub: tuple[Hub, RecordingSender],
) -> None:
    running, _ = hub
    customer = await customer_with_open_case(running)
    async with running.db.session() as session:
        session.add_all(
            [
                EventEndpoint(
                    url="https://crm.example.com/a",
                    event_types=["case.opened", "case.resolved"],
                    secret="whsec_A",
                ),
                EventEndpoint(
                    url="https://crm.example.com/b",
                    event_types=["case.resolved"],
                    secret="whsec_B",
                    include_text=True,
                ),
            ]
        )
    desk = CaseDesk(running.db)
    opened = await desk.open(customer, title="Parcel late", operator="ann")
    await desk.resolve(customer, opened.id, summary="Re-sent by courier", operator="bob")
    async with running.db.read() as session:
        rows = list(await session.scalars(select(EventDelivery).order_by(EventDelivery.id)))
    seen = [(r.endpoint_id, r.event_type, r.payload["data"].get("summary")) for r in rows]
    assert seen == [
        (1, "case.opened", None),
        (1, "case.resolved", None),
        (2, "case.resolved", "Re-sent by courier"),
    ]
    resolved = rows[-1].payload["data"]
    assert (resolved["case_id"], resolved["opened_by"], resolved["resolved_by"]) == (
        opened.id,
        "operator:ann",
        "operator:bob",
    )
    assert "title" not in rows[0].payload["data"]
