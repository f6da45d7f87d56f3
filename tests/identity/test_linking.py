"""Link, unlink, merge and unmerge over a real hub: the ledger replays, and memory follows the links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.agent.conversation import WITHHELD
from core.errors import Conflict, MemoryUnavailable, NotFound
from core.messages import Address, Assurance, InboundMessage
from core.pipeline.hub import Hub
from core.store.models import Customer, IdentityEvent, InboxRow, MemoryJob, MemoryMove, OutboxRow, Turn
from identity.ledger import current_state, ledger, replay
from identity.linking import IdentityLinks
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message, telegram_message

PHONE = "+15551230000"
SMS = f"sms:{PHONE}"
TELEGRAM = "telegram:42"


def sms(sid: str, text: str) -> InboundMessage:
    return sms_message(sid, text, PHONE)


tg = telegram_message


@pytest.fixture
def senders() -> tuple[RecordingSender, RecordingSender]:
    return RecordingSender("sms"), RecordingSender("telegram")


@pytest.fixture
async def hub(tmp_path: Path, senders: tuple[RecordingSender, RecordingSender]) -> AsyncIterator[Hub]:
    async with running_hub(make_settings(tmp_path), *senders) as running:
        yield running


@pytest.fixture
def links(hub: Hub) -> IdentityLinks:
    return IdentityLinks(hub.db, hub.memory)


async def say(hub: Hub, *messages: InboundMessage) -> None:
    for message in messages:
        await hub.accept(message)
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def customer_of(hub: Hub, address: str) -> str:
    resolution = await hub.resolver.resolve(Address.parse(address))
    return resolution.customer_id


async def assert_ledger_replays(hub: Hub) -> None:
    async with hub.db.session() as session:
        assert replay(await ledger(session)) == await current_state(session)


async def snapshot(hub: Hub) -> dict[str, Any]:
    """Where every identity, message and memory is: compared exactly before and after an undo."""
    async with hub.db.session() as session:
        state = await current_state(session)
        customers = list(await session.scalars(select(Customer.id)))
        rows = {
            model.__tablename__: {row.id: row.customer_id for row in await session.scalars(select(model))}
            for model in (Turn, InboxRow, OutboxRow, MemoryJob)
        }
    memories = {}
    for customer in customers:
        for record in await hub.memory.list(customer):
            memories[record.id] = (customer, record.text, record.metadata)
    return {"identities": state.identities, "merged": state.merged_into, **rows, "memories": memories}


async def memory_texts(hub: Hub, customer: str) -> set[str]:
    return {record.text for record in await hub.memory.list(customer)}


async def test_a_linked_handle_recalls_what_the_other_said_and_unlinking_takes_its_history_away(
    hub: Hub, links: IdentityLinks, senders: tuple[RecordingSender, RecordingSender]
) -> None:
    _, telegram = senders
    await say(hub, sms("SM1", "my router keeps dropping the wifi"), tg(1, "please write after 6pm"))
    ana, stranger = await customer_of(hub, SMS), await customer_of(hub, TELEGRAM)
    assert ana != stranger
    await assert_ledger_replays(hub)

    change = await links.link(Address.parse(TELEGRAM), ana, actor="admin:test", reason="same person")

    assert change.from_customer_id == stranger and change.memory_moves_pending == 0
    assert await customer_of(hub, TELEGRAM) == ana
    assert (await hub.resolver.resolve(Address.parse(TELEGRAM))).assurance is Assurance.ADMIN_LINKED
    assert await memory_texts(hub, stranger) == set()
    assert "please write after 6pm" in await memory_texts(hub, ana)
    await say(hub, tg(2, "what was the problem with my router?"))
    assert "router keeps dropping the wifi" in telegram.texts_to(TELEGRAM)[-1]  # recalled across channels
    await assert_ledger_replays(hub)

    change = await links.unlink(Address.parse(TELEGRAM), actor="admin:test", reason="wrong person")

    alone = await customer_of(hub, TELEGRAM)
    assert alone not in (ana, stranger) and change.customer_id == alone
    assert not any(text.startswith("please write") for text in await memory_texts(hub, ana))
    assert "please write after 6pm" in await memory_texts(hub, alone)
    async with hub.db.session() as session:
        addresses = set(await session.scalars(select(Turn.address).where(Turn.customer_id == ana)))
        taken = list(await session.scalars(select(Turn).where(Turn.customer_id == alone).order_by(Turn.id)))
    assert addresses == {SMS}
    # the reply written to Telegram while it was Ana's quoted her: it went along withheld (emptied); the
    # one written to the stranger alone, before the link, went along as it was
    assert [(turn.role, turn.text.startswith("(Offline mode")) for turn in taken] == [
        ("customer", False),
        ("assistant", True),
        ("customer", False),
        (WITHHELD, False),
    ]
    assert taken[-1].text == ""
    await say(hub, tg(3, "what was the problem with my router?"))
    assert "router keeps dropping" not in telegram.texts_to(TELEGRAM)[-1]
    await assert_ledger_replays(hub)


async def test_merge_then_unmerge_puts_everything_back_exactly(hub: Hub, links: IdentityLinks) -> None:
    await say(
        hub,
        sms("SM1", "my router keeps dropping the wifi"),
        sms("SM2", "I was billed twice for the router rental"),
        tg(1, "please write to me after 6pm"),
    )
    source, target = await customer_of(hub, SMS), await customer_of(hub, TELEGRAM)
    before = await snapshot(hub)

    merged = await links.merge(source, target, actor="admin:test", reason="one person")

    assert merged.addresses == (SMS,)
    during = await snapshot(hub)
    assert {holder.customer_id for holder in during["identities"].values()} == {target}
    assert set(during["turns"].values()) == {target}
    assert {owner for owner, _, _ in during["memories"].values()} == {target}
    await assert_ledger_replays(hub)
    with pytest.raises(Conflict):
        await links.merge(source, target, actor="admin:test")  # source is merged: no second merge

    assert merged.event_id is not None
    await links.unmerge(merged.event_id, actor="admin:test", reason="not one person after all")

    assert await snapshot(hub) == before
    await assert_ledger_replays(hub)
    with pytest.raises(Conflict):
        await links.unmerge(merged.event_id, actor="admin:test")


async def test_what_a_merged_handle_says_later_goes_back_with_it(hub: Hub, links: IdentityLinks) -> None:
    await say(hub, sms("SM1", "my router keeps dropping the wifi"), tg(1, "please write after 6pm"))
    source, target = await customer_of(hub, SMS), await customer_of(hub, TELEGRAM)
    merged = await links.merge(source, target, actor="admin:test")
    await say(hub, sms("SM2", "the router is fine now"), tg(2, "thanks for the help"))
    assert {"the router is fine now", "thanks for the help"} <= await memory_texts(hub, target)

    assert merged.event_id is not None
    await links.unmerge(merged.event_id, actor="admin:test")

    assert await memory_texts(hub, source) >= {"my router keeps dropping the wifi", "the router is fine now"}
    assert not any("router" in text for text in await memory_texts(hub, target))
    async with hub.db.session() as session:
        turns = list(await session.scalars(select(Turn)))
    owners = {(turn.address, turn.customer_id) for turn in turns}
    assert owners == {(SMS, source), (TELEGRAM, target)}
    # the replies written while the two were one customer may quote either: withheld on both sides
    assert [(t.address, t.text) for t in turns if t.role == WITHHELD] == [(SMS, ""), (TELEGRAM, "")]


async def test_refused_changes_change_nothing(hub: Hub, links: IdentityLinks) -> None:
    await say(hub, sms("SM1", "hello"))
    ana = await customer_of(hub, SMS)
    before = await snapshot(hub)
    with pytest.raises(Conflict):
        await links.merge(ana, ana, actor="admin:test")
    with pytest.raises(NotFound):
        await links.link(Address.parse(TELEGRAM), "cus_nobody", actor="admin:test")
    with pytest.raises(NotFound):
        await links.unlink(Address.parse(TELEGRAM), actor="admin:test")
    with pytest.raises(Conflict):
        await links.unlink(Address.parse(SMS), actor="admin:test")  # its only handle
    with pytest.raises(NotFound):
        await links.unmerge(12345, actor="admin:test")
    assert await snapshot(hub) == before
    async with hub.db.session() as session:
        assert [event.kind for event in await ledger(session)] == ["create"]


async def test_a_memory_outage_queues_the_move_until_it_is_back(
    hub: Hub, links: IdentityLinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    await say(hub, sms("SM1", "my router keeps dropping the wifi"), tg(1, "hi"))
    source, target = await customer_of(hub, SMS), await customer_of(hub, TELEGRAM)
    real_move = hub.memory.move

    async def down(*args: Any, **kwargs: Any) -> list[str]:
        raise MemoryUnavailable("memory move failed (test)")

    monkeypatch.setattr(hub.memory, "move", down)
    change = await links.merge(source, target, actor="admin:test")
    assert change.memory_moves_pending == 1
    assert await customer_of(hub, SMS) == target  # the identity change itself is committed
    assert "my router keeps dropping the wifi" in await memory_texts(hub, source)

    monkeypatch.setattr(hub.memory, "move", real_move)
    assert await links.run_moves() == 0
    assert "my router keeps dropping the wifi" in await memory_texts(hub, target)
    assert await memory_texts(hub, source) == set()
    async with hub.db.session() as session:
        [move] = list(await session.scalars(select(MemoryMove)))
        event = await session.get(IdentityEvent, move.event_id)
    assert move.status == "done" and move.attempts == 2 and event is not None and event.kind == "merge"


class _HeldMove:
    """The hub's memory, with ``move`` held until released (a move another runner is busy with)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def move(self, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        await self.release.wait()
        return await self._inner.move(*args, **kwargs)


async def test_a_move_round_asked_for_during_a_move_waits_for_it_instead_of_reporting_it_pending(
    hub: Hub,
) -> None:
    """The process has one ``IdentityLinks`` (``core.compose``): the hub's background move round and the
    admin API share it. A round asked for while a merge's move runs waits for it and reports nothing
    pending."""
    await say(hub, sms("SM1", "my router is broken"), tg(1, "hello from telegram"))
    held = _HeldMove(hub.memory)
    links = IdentityLinks(hub.db, held)  # type: ignore[arg-type]
    merging = asyncio.create_task(
        links.merge(await customer_of(hub, TELEGRAM), await customer_of(hub, SMS), actor="admin:test")
    )
    await held.started.wait()
    asking = asyncio.create_task(links.run_moves())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not asking.done()  # waiting for the move in progress, not reporting it pending
    held.release.set()
    assert await asking == 0
    assert (await merging).memory_moves_pending == 0
    assert "hello from telegram" in await memory_texts(hub, await customer_of(hub, SMS))


async def test_chained_merges_undo_in_reverse_order_or_say_which_first(
    hub: Hub, links: IdentityLinks
) -> None:
    """Merge A into B, then B into C: undoing the first would give back nothing now (A's handles went on
    to C) and the wrong handles later; it is refused, naming the later merge, and in reverse order both
    undo exactly."""
    await say(hub, sms("SM1", "my router keeps dropping the wifi"), tg(1, "write after 6pm"), tg(2, "hi", 43))
    a, b, c = (
        await customer_of(hub, SMS),
        await customer_of(hub, TELEGRAM),
        await customer_of(hub, "telegram:43"),
    )
    before = await snapshot(hub)
    first = await links.merge(a, b, actor="admin:test")
    second = await links.merge(b, c, actor="admin:test")
    assert first.event_id is not None and second.event_id is not None

    with pytest.raises(Conflict, match=f"undo merge {second.event_id} first"):
        await links.unmerge(first.event_id, actor="admin:test")
    assert await customer_of(hub, SMS) == c  # nothing moved by the refusal

    await links.unmerge(second.event_id, actor="admin:test")
    await links.unmerge(first.event_id, actor="admin:test")
    assert await snapshot(hub) == before
    await assert_ledger_replays(hub)


async def test_a_handle_unlinked_while_its_memory_is_written_takes_that_memory_along(
    hub: Hub, links: IdentityLinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write of a Telegram turn is held inside the memory store while an admin unlinks the handle:
    the memory lands with the customer the handle left, after the unlink's own move ran. It must still
    end with the handle, and the other handles of that customer must not recall it."""
    await say(hub, sms("SM1", "my invoice number is 4711"), tg(1, "hello"))
    ana, stranger = await customer_of(hub, SMS), await customer_of(hub, TELEGRAM)
    await links.merge(stranger, ana, actor="admin:test")
    entered, release = asyncio.Event(), asyncio.Event()
    remember = hub.memory.remember

    async def held(*args: Any, **kwargs: Any) -> None:
        entered.set()
        await release.wait()
        await remember(*args, **kwargs)

    monkeypatch.setattr(hub.memory, "remember", held)
    await hub.accept(tg(2, "please ship to 12 Elm Street"))
    await asyncio.wait_for(entered.wait(), timeout=60)  # the write is under way, for Ana
    left = await links.unlink(Address.parse(TELEGRAM), actor="admin:test")
    release.set()
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
    await links.run_moves()

    assert not any("Elm" in text for text in await memory_texts(hub, ana))
    assert any("Elm" in text for text in await memory_texts(hub, left.customer_id))
