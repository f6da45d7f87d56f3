"""Forget and export: a planted canary is everywhere before, and nowhere (no file, no table) after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import NotFound
from core.messages import Address, InboundMessage
from core.pipeline.hub import Hub
from identity.erasure import export, forget
from identity.ledger import current_state, ledger, replay
from identity.linking import IdentityLinks
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message, telegram_message
from tests.scan import files_holding, tables_holding

CANARY = "zqx7canary4forget"
PHONE = "+15551230000"


def sms(sid: str, text_: str, phone: str = PHONE) -> InboundMessage:
    return sms_message(sid, text_, phone)


def tg(update: int, text_: str, user: int = 42) -> InboundMessage:
    return telegram_message(update, text_, user)


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


async def test_forget_erases_the_canary_from_every_store_and_leaves_others_alone(
    hub: Hub, tmp_path: Path
) -> None:
    await say(
        hub,
        sms("SM1", f"my account code word is {CANARY}, please note it"),
        tg(1, f"again: the code word {CANARY} and my router is broken"),
        sms("SM2", "someone else entirely, my printer jams", phone="+15559990000"),
    )
    ana = await customer_of(hub, f"sms:{PHONE}")
    links = IdentityLinks(hub.db, hub.memory)
    await links.merge(await customer_of(hub, "telegram:42"), ana, actor="admin:test")
    other = await customer_of(hub, "sms:+15559990000")

    document = await export(hub.db, hub.memory, ana)
    assert document["customer_id"] == ana
    assert {i["address"] for i in document["identities"]} == {f"sms:{PHONE}", "telegram:42"}
    assert sum(CANARY in turn["text"] for turn in document["conversation"]) == 2
    assert sum(CANARY in memory["text"] for memory in document["memories"]) == 2
    assert all(memory["handle"] for memory in document["memories"])
    assert all(m["metadata"]["said_by"] == "customer" for m in document["memories"])  # attributed
    assert all(m["metadata"]["verified"] is False for m in document["memories"])
    assert "printer" not in str(document)
    assert await tables_holding(hub, CANARY)  # it is there before

    receipt = await forget(hub.db, hub.memory, ana, actor="admin:test")

    assert receipt.customer_ids[0] == ana and len(receipt.customer_ids) == 2  # with the one merged in
    removed = receipt.removed
    assert removed["mem0_memories"] >= 2 and removed["turns"] == 4 and removed["inbox"] == 2
    assert removed["outbox"] == 2 and removed["identities"] == 2 and removed["customers"] == 2
    assert removed["identity_ledger_redacted"] >= 3  # two creates and the merge
    assert await tables_holding(hub, CANARY) == []
    assert await tables_holding(hub, PHONE) == []
    if hub.db.dialect == "sqlite":
        assert files_holding(tmp_path, CANARY.encode()) == []
        assert files_holding(tmp_path, PHONE.encode()) == []
    async with hub.db.session() as session:
        assert replay(await ledger(session)) == await current_state(session)
    with pytest.raises(NotFound):
        await export(hub.db, hub.memory, ana)
    assert [m.text for m in await hub.memory.list(other)] != []  # the other customer is untouched
    assert (await export(hub.db, hub.memory, other))["identities"][0]["address"] == "sms:+15559990000"


async def test_forget_of_an_unknown_customer_changes_nothing(hub: Hub) -> None:
    await say(hub, sms("SM1", "hello"))
    async with hub.db.session() as session:
        before = len(await ledger(session))
    with pytest.raises(NotFound):
        await forget(hub.db, hub.memory, "cus_nobody", actor="admin:test")
    async with hub.db.session() as session:
        assert len(await ledger(session)) == before
