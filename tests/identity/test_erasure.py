"""Forget and export: a planted canary is everywhere before, and nowhere (no file, no table) after.

Also in the rows of other customers: a reply written while a handle of the forgotten customer shared a
customer with someone else's handles (a merge undone, a link undone) quotes the forgotten customer, and a
memory whose move is still queued sits with the customer its handle left.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.errors import MemoryUnavailable, NotFound, PermanentDeliveryError
from core.messages import Address, InboundMessage
from core.pipeline.hub import Hub
from core.settings import HandoffSettings
from core.store.models import IdentityEvent, MemoryMove, OperatorAction, OutboxRow
from identity.erasure import forget
from identity.export import export
from identity.ledger import current_state, ledger, replay
from identity.linking import IdentityLinks
from identity.views import ExportOut
from tests.core.harness import make_settings, running_hub
from tests.fakes.openai_server import FakeOpenAI, restating_responder
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


@pytest.fixture
async def restating(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Hub, RecordingSender]]:
    """A hub whose LLM restates what it is shown (``restating_responder``): its replies quote the prompt,
    so a reply quotes what every handle of the customer said. Yields the hub and the Telegram sender."""
    telegram = RecordingSender("telegram")
    with FakeOpenAI(responder=restating_responder) as llm:
        settings = make_settings(tmp_path, llm_url=llm.base_url).model_copy(
            update={"database_url": database_url}
        )
        async with running_hub(settings, RecordingSender("sms"), telegram) as running:
            yield running, telegram


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


@pytest.fixture
async def team_hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    """An offline hub whose team hears of new handoffs by email (a channel it does not serve: the notices
    stay queued in the outbox)."""
    settings = make_settings(tmp_path).model_copy(
        update={"database_url": database_url, "handoff": HandoffSettings(notify_email="team@example.com")}
    )
    async with running_hub(settings, RecordingSender("sms"), RecordingSender("telegram")) as running:
        yield running


async def team_notices(hub: Hub) -> list[str]:
    async with hub.db.read() as session:
        return list(
            await session.scalars(select(OutboxRow.idempotency_key).where(OutboxRow.origin == "team"))
        )


async def test_export_and_forget_cover_handoffs_and_operator_actions(team_hub: Hub, tmp_path: Path) -> None:
    hub = team_hub
    assert hub.handoffs is not None
    await say(hub, sms("SM1", "human"), tg(1, "agent please"))  # each opens a handoff (and a team notice)
    ana, tom = await customer_of(hub, f"sms:{PHONE}"), await customer_of(hub, "telegram:42")
    await hub.handoffs.take(ana, operator="ana-ops", note=f"asked about {CANARY}")
    await hub.handoffs.reply(ana, text=f"Hello, your code word {CANARY} is noted.", operator="ana-ops")
    await hub.handoffs.hand_back(ana, operator="ana-ops")
    await hub.handoffs.take(tom, operator="tom-ops")
    await say(hub)
    (ana_handoff,) = await hub.handoffs.history(ana)
    (tom_handoff,) = await hub.handoffs.history(tom)
    assert sorted(await team_notices(hub)) == sorted(
        f"handoff:{h.id}:opened:email:team@example.com" for h in (ana_handoff, tom_handoff)
    )

    document = await export(hub.db, hub.memory, ana)
    assert ExportOut.model_validate(document).handoffs == document["handoffs"]
    (exported,) = document["handoffs"]
    assert exported == {
        "id": ana_handoff.id,
        "status": "closed",
        "requested_by": "customer",
        "operator": "ana-ops",
        "note": f"asked about {CANARY}",
        "channel": "sms",
        "opened_at": ana_handoff.opened_at.isoformat(),
        "taken_at": ana_handoff.taken_at.isoformat() if ana_handoff.taken_at else None,
        "answered_at": ana_handoff.answered_at.isoformat() if ana_handoff.answered_at else None,
        "escalated_at": None,
        "closed_at": ana_handoff.closed_at.isoformat() if ana_handoff.closed_at else None,
        "closed_by": "ana-ops",
    }
    assert exported["taken_at"] and exported["answered_at"] and exported["closed_at"]
    operators = [(t["role"], t["operator"]) for t in document["conversation"]]
    assert operators == [("customer", None), ("assistant", None), ("operator", "ana-ops")]
    assert "tom-ops" not in str(document)

    receipt = await forget(hub.db, hub.memory, ana, actor="admin:test")

    assert receipt.removed["handoffs"] == 1
    assert receipt.removed["operator_actions"] == 3  # take over, reply, hand back
    assert receipt.removed["turns"] == 3 and receipt.removed["outbox"] == 3  # ack, reply, team notice
    await assert_gone(hub, tmp_path, CANARY, PHONE)
    assert await team_notices(hub) == [f"handoff:{tom_handoff.id}:opened:email:team@example.com"]
    assert [h.id for h in await hub.handoffs.history(tom)] == [tom_handoff.id]  # others are untouched
    async with hub.db.read() as session:
        actions = list(await session.execute(select(OperatorAction.customer_id, OperatorAction.operator)))
    assert [tuple(a) for a in actions] == [(tom, "tom-ops")]


def test_an_export_written_before_handoffs_still_reads() -> None:
    old = {
        "format": "threadline-export/1",
        "exported_at": "2024-01-01T00:00:00+00:00",
        "customer_id": "cus_1",
        **{
            key: []
            for key in (
                "customers",
                "identities",
                "conversation",
                "messages_received",
                "replies_sent",
                "memories",
                "identity_ledger",
                "link_requests",
                "opt_outs",
            )
        },
    }
    assert ExportOut.model_validate(old).handoffs == []


async def test_forget_of_an_unknown_customer_changes_nothing(hub: Hub) -> None:
    await say(hub, sms("SM1", "hello"))
    async with hub.db.session() as session:
        before = len(await ledger(session))
    with pytest.raises(NotFound):
        await forget(hub.db, hub.memory, "cus_nobody", actor="admin:test")
    async with hub.db.session() as session:
        assert len(await ledger(session)) == before


async def assert_gone(hub: Hub, tmp_path: Path, *needles: str) -> None:
    for needle in needles:
        assert await tables_holding(hub, needle) == [], needle
        if hub.db.dialect == "sqlite":
            assert files_holding(tmp_path, needle.encode()) == [], needle


async def test_forget_after_an_undone_merge_leaves_nothing_in_the_other_customers_rows(
    restating: tuple[Hub, RecordingSender], tmp_path: Path
) -> None:
    """Ana merged into Tom and the merge undone: the replies written meanwhile quote Ana, on Tom's side too
    (the outbox rows of the replies sent to Tom, a reply to Tom that failed for good). Forgetting Ana
    removes them; what Tom said stays his."""
    hub, telegram = restating
    await say(hub, sms("SM1", f"my code word is {CANARY}"), tg(1, "hello, Tom here, my dog is Rex"))
    ana, tom = await customer_of(hub, f"sms:{PHONE}"), await customer_of(hub, "telegram:42")
    links = IdentityLinks(hub.db, hub.memory)
    merged = await links.merge(ana, tom, actor="admin:test")
    await say(hub, tg(2, "what do you know about me?"), sms("SM2", "and what about me?"))
    telegram.fail_next(PermanentDeliveryError("blocked (test)"))
    await say(hub, tg(3, "say it again please"))  # a dead letter quoting Ana
    assert any(CANARY in text for text in telegram.texts_to("telegram:42"))  # the premise
    assert merged.event_id is not None
    await links.unmerge(merged.event_id, actor="admin:test")

    await forget(hub.db, hub.memory, ana, actor="admin:test")

    await assert_gone(hub, tmp_path, CANARY, PHONE)
    assert any("Rex" in m.text for m in await hub.memory.list(tom))


async def test_forget_of_a_handle_that_left_and_came_back_leaves_nothing_anywhere(
    restating: tuple[Hub, RecordingSender], tmp_path: Path
) -> None:
    hub, _ = restating
    await say(hub, sms("SM1", "hello, Ana here"), tg(1, "hi there"))
    ana = await customer_of(hub, f"sms:{PHONE}")
    links = IdentityLinks(hub.db, hub.memory)
    await links.link(Address.parse("telegram:42"), ana, actor="admin:test")
    await say(hub, tg(2, f"my code word is {CANARY}"))
    await links.unlink(Address.parse("telegram:42"), actor="admin:test")
    await say(hub, tg(3, f"again, {CANARY} is my code word"), sms("SM2", "what is my code word?"))
    await links.link(Address.parse("telegram:42"), ana, actor="admin:test")
    await say(hub, tg(4, "and now?"))

    await forget(hub.db, hub.memory, ana, actor="admin:test")

    await assert_gone(hub, tmp_path, CANARY, PHONE)


async def test_forget_runs_the_memory_moves_still_queued_first(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tom's Telegram handle is unlinked from Ana while the memory backend cannot move: its memories are
    still Ana's. Forgetting Tom must not leave them there (nor lose them if Ana is forgotten instead)."""
    await say(hub, sms("SM1", "hello, Ana here"), tg(1, "hi"))
    ana = await customer_of(hub, f"sms:{PHONE}")
    links = IdentityLinks(hub.db, hub.memory)
    await links.link(Address.parse("telegram:42"), ana, actor="admin:test")
    await say(hub, tg(2, f"my code word is {CANARY}"))
    real_move = hub.memory.move

    async def down(*args: Any, **kwargs: Any) -> list[str]:
        raise MemoryUnavailable("memory move failed (test)")

    monkeypatch.setattr(hub.memory, "move", down)
    left = await links.unlink(Address.parse("telegram:42"), actor="admin:test")
    assert left.memory_moves_pending == 1
    with pytest.raises(MemoryUnavailable):  # the move cannot run: nothing is erased, the caller retries
        await forget(hub.db, hub.memory, left.customer_id, actor="admin:test")
    assert await customer_of(hub, "telegram:42") == left.customer_id

    monkeypatch.setattr(hub.memory, "move", real_move)
    await forget(hub.db, hub.memory, left.customer_id, actor="admin:test")

    await assert_gone(hub, tmp_path, CANARY)
    assert [m.text for m in await hub.memory.list(ana)] == ["hello, Ana here"]
    async with hub.db.session() as session:
        assert list(await session.scalars(select(MemoryMove.status))) == ["done"]


async def test_forget_leaves_no_reason_of_the_ledger_that_named_them(hub: Hub, tmp_path: Path) -> None:
    """The reasons an admin wrote for the customer's identity changes are free text (a name, a case): they
    go with the customer; the entries stay, so the ledger still replays."""
    await say(hub, sms("SM1", "hello"), tg(1, "hi"))
    ana, tom = await customer_of(hub, f"sms:{PHONE}"), await customer_of(hub, "telegram:42")
    links = IdentityLinks(hub.db, hub.memory)
    await links.merge(tom, ana, actor="admin:test", reason=f"same person: {CANARY} on both")

    await forget(hub.db, hub.memory, ana, actor="admin:test")

    await assert_gone(hub, tmp_path, CANARY)
    async with hub.db.session() as session:
        assert replay(await ledger(session)) == await current_state(session)
        merges = list(await session.scalars(select(IdentityEvent).where(IdentityEvent.kind == "merge")))
    assert [event.reason for event in merges] == [None]


@pytest.fixture
async def sqlite_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """The embedded default's hub (SQLite in the data dir), whatever ``database_url`` the others run on."""
    async with running_hub(
        make_settings(tmp_path), RecordingSender("sms"), RecordingSender("telegram")
    ) as running:
        yield running


@pytest.mark.parametrize("layout", range(8))
async def test_forget_leaves_no_copy_in_the_file_after_pages_were_rebalanced(
    sqlite_hub: Hub, tmp_path: Path, layout: int
) -> None:
    """SQLite zeroes a deleted row (``secure_delete``), but deleting rows makes it rebalance pages, and the
    rows it moves between pages leave their old bytes in the free gap of a page still in use. Ana's
    messages interleaved with Tom's, of varied lengths: forgetting her leaves no copy in the file."""
    hub = sqlite_hub
    assert hub.db.dialect == "sqlite"
    rng = random.Random(layout)
    for n in range(40):
        words = " router" * rng.randint(5, 150)
        if rng.random() < 0.5:
            await hub.accept(sms(f"SM{n}", f"{CANARY} {n}{words}"))
        else:
            await hub.accept(tg(n + 1, f"Tom {n}{words}"))
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}

    await forget(hub.db, hub.memory, await customer_of(hub, f"sms:{PHONE}"), actor="admin:test")

    await assert_gone(hub, tmp_path, CANARY, PHONE)
