"""Support cases follow the customer: a merge moves them to the target (and an undone merge leaves them
there), an export lists them, a forget erases them with a count on the receipt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.messages import Address, InboundMessage
from core.pipeline.cases import list_cases
from core.pipeline.hub import Hub
from core.store.models import Case
from identity.erasure import forget
from identity.export import export
from identity.linking import IdentityLinks
from identity.views import ExportOut
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message, telegram_message

PHONE = "+15551230000"


@pytest.fixture
async def hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    settings = make_settings(tmp_path).model_copy(update={"database_url": database_url})
    async with running_hub(settings, RecordingSender("sms"), RecordingSender("telegram")) as running:
        yield running


async def say(hub: Hub, *messages: InboundMessage) -> None:
    for message in messages:
        await hub.accept(message)
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def customer_of(hub: Hub, address: str) -> str:
    return (await hub.resolver.resolve(Address.parse(address))).customer_id


async def two_customers_with_cases(hub: Hub) -> tuple[str, str]:
    """Ana (SMS) has a resolved case and an open one; Tom (Telegram) has an open one."""
    await say(
        hub,
        sms_message("SM1", "my router is broken", PHONE),
        telegram_message(1, "the app is not working", 42),
    )
    await say(hub, sms_message("SM2", "that fixed it, thanks", PHONE))
    await say(hub, sms_message("SM3", "now the invoice is wrong", PHONE))
    return await customer_of(hub, f"sms:{PHONE}"), await customer_of(hub, "telegram:42")


async def test_a_merge_moves_the_cases_and_an_undone_merge_leaves_them(hub: Hub) -> None:
    ana, tom = await two_customers_with_cases(hub)
    assert [(c.status, c.channel) for c in await list_cases(hub.db, ana)] == [
        ("open", "sms"),
        ("resolved", "sms"),
    ]
    links = IdentityLinks(hub.db, hub.memory)

    merged = await links.merge(ana, tom, actor="admin:test")

    assert await list_cases(hub.db, ana) == []
    assert sorted((c.status, c.channel) for c in await list_cases(hub.db, tom)) == [
        ("open", "sms"),
        ("open", "telegram"),
        ("resolved", "sms"),
    ]
    assert merged.event_id is not None
    await links.unmerge(merged.event_id, actor="admin:test")  # like handoffs: they stay where they are
    assert len(await list_cases(hub.db, tom)) == 3


async def test_export_lists_the_cases_and_forget_erases_them(hub: Hub) -> None:
    ana, tom = await two_customers_with_cases(hub)

    document = await export(hub.db, hub.memory, ana)
    assert [(c["status"], c["opened_by"], c["resolved_by"]) for c in document["cases"]] == [
        ("resolved", "rules", "rules"),
        ("open", "rules", None),
    ]
    resolved = document["cases"][0]
    assert resolved["title"] == "my router is broken" and resolved["resolved_at"] is not None
    assert len(resolved["turn_ids"]) == 4 and resolved["summary"].startswith("my router is broken.")
    assert ExportOut.model_validate(document).cases == document["cases"]
    older = {k: v for k, v in document.items() if k != "cases"}  # an export written before cases reads
    assert ExportOut.model_validate(older).cases == []

    receipt = await forget(hub.db, hub.memory, ana, actor="admin:test")

    assert receipt.removed["cases"] == 2
    async with hub.db.read() as session:
        left = list(await session.scalars(select(Case.customer_id)))
        assert int(await session.scalar(select(func.count()).select_from(Case)) or 0) == 1
    assert left == [tom]  # another customer's case stays
