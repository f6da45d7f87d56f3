"""Handoffs follow a merge, and stay where they are when it is undone or a handle is unlinked.

A customer has at most one open handoff (a partial unique index): when both sides of a merge have one open,
the source's is closed (``closed_by`` ``merge``) and the target's stays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.messages import Address, InboundMessage
from core.pipeline.handoff import Handoffs, HandoffView
from core.pipeline.hub import Hub
from core.store.models import OperatorAction
from identity.linking import IdentityLinks
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


async def two_customers(hub: Hub) -> tuple[str, str, Handoffs]:
    await say(hub, sms_message("SM1", "hello, Ana here", PHONE), telegram_message(1, "hi, Tom here", 42))
    ana = (await hub.resolver.resolve(Address.parse(f"sms:{PHONE}"))).customer_id
    tom = (await hub.resolver.resolve(Address.parse("telegram:42"))).customer_id
    assert hub.handoffs is not None
    return ana, tom, hub.handoffs


def summary(views: list[HandoffView]) -> list[tuple[str, str | None, str | None]]:
    return sorted((v.status, v.operator, v.closed_by) for v in views)


async def test_a_merge_closes_the_sources_open_handoff_when_the_target_has_one(hub: Hub) -> None:
    ana, tom, handoffs = await two_customers(hub)
    await handoffs.take(ana, operator="op-a")
    await handoffs.take(tom, operator="op-t")
    links = IdentityLinks(hub.db, hub.memory)

    merged = await links.merge(ana, tom, actor="admin:test")

    assert await handoffs.history(ana) == []
    moved = await handoffs.history(tom)
    assert summary(moved) == [("closed", "op-a", "merge"), ("owned", "op-t", None)]
    current = await handoffs.current(tom)
    assert current is not None and current.operator == "op-t"  # the target's stays open
    async with hub.db.read() as session:  # the audit log keeps the customer each action was taken on
        actions = sorted(
            tuple(a)
            for a in await session.execute(select(OperatorAction.customer_id, OperatorAction.operator))
        )
    assert actions == sorted([(ana, "op-a"), (tom, "op-t")])

    assert merged.event_id is not None
    await links.unmerge(merged.event_id, actor="admin:test")  # handoffs stay with the customer they are on
    assert await handoffs.history(ana) == []
    assert summary(await handoffs.history(tom)) == [("closed", "op-a", "merge"), ("owned", "op-t", None)]


async def test_a_merge_moves_an_open_handoff_to_a_target_without_one(hub: Hub) -> None:
    ana, tom, handoffs = await two_customers(hub)
    await handoffs.take(ana, operator="op-a")
    await handoffs.hand_back(ana, operator="op-a")
    await handoffs.take(ana, operator="op-b")
    await handoffs.take(tom, operator="op-t")
    await handoffs.hand_back(tom, operator="op-t")

    await IdentityLinks(hub.db, hub.memory).merge(ana, tom, actor="admin:test")

    assert summary(await handoffs.history(tom)) == [
        ("closed", "op-a", "op-a"),
        ("closed", "op-t", "op-t"),
        ("owned", "op-b", None),
    ]
    current = await handoffs.current(tom)
    assert current is not None and current.operator == "op-b"  # the bot stays silent for the merged customer


async def test_a_waiting_handoff_of_the_customer_asked_in_words_follows_the_merge(hub: Hub) -> None:
    ana, tom, handoffs = await two_customers(hub)
    await say(hub, sms_message("SM2", "talk to a person", PHONE))  # waiting, asked by the customer
    await handoffs.take(tom, operator="op-t")

    await IdentityLinks(hub.db, hub.memory).merge(tom, ana, actor="admin:test")  # tom's (owned) closes

    assert summary(await handoffs.history(ana)) == [("closed", "op-t", "merge"), ("waiting", None, None)]


async def test_an_unlink_leaves_handoffs_with_the_customer(hub: Hub) -> None:
    ana, _, handoffs = await two_customers(hub)
    links = IdentityLinks(hub.db, hub.memory)
    await links.link(Address.parse("telegram:42"), ana, actor="admin:test")
    await say(hub, telegram_message(2, "I need a human", 42))  # opened on ana, from the telegram handle
    opened = await handoffs.current(ana)
    assert opened is not None and opened.channel == "telegram"

    left = await links.unlink(Address.parse("telegram:42"), actor="admin:test")

    assert left.customer_id != ana
    assert await handoffs.current(ana) == opened
    assert await handoffs.history(left.customer_id) == []
