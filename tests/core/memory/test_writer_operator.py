"""What a person of the support team wrote during a handoff is written to memory as the team's words.

An operator's reply (``Handoffs.reply``) is an ``operator`` turn; the memory writer stores it like the
customer's words (redacted the same way, with the provenance of the handle it went to) but as what the team
told the customer, in a write of its own, so the bot knows it after the conversation is handed back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.agent.conversation import LoggedTurn
from core.agent.redaction import placeholder
from core.memory.writer import TEAM_SAID, _groups, _messages, _provenance
from core.messages import Address
from core.pipeline.hub import Hub
from core.settings import MemorySettings
from core.store.models import utcnow
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import sms_message

CARD = "4111 1111 1111 1111"
PHONE = "+15551230000"
HANDLE = f"sms:{PHONE}"


def logged(
    turn_id: int, role: str, text: str, *, inbox_id: int | None = None, vouched: bool = True
) -> LoggedTurn:
    return LoggedTurn(
        id=turn_id,
        channel="sms",
        address=HANDLE,
        role=role,
        text=text,
        created_at=utcnow(),
        inbox_id=inbox_id,
        vouched=vouched,
    )


def test_an_operator_turn_alone_is_the_teams_memory() -> None:
    (group,) = _groups([logged(7, "operator", f"We refunded card {CARD}.")])
    messages, kinds = _messages(group)
    assert [m.content for m in messages] == [TEAM_SAID + f"We refunded card {placeholder('card number')}."]
    assert messages[0].role == "user" and kinds == ("card number",)
    provenance = _provenance(group)
    assert (provenance.handle, provenance.channel, provenance.turn_ids) == (HANDLE, "sms", (7,))
    assert provenance.message_ids == () and provenance.sender_vouched is True
    assert provenance.as_metadata()["said_by"] == "support_team"
    assert provenance.as_metadata()["verified"] is False


def test_the_teams_words_are_never_mixed_with_the_customers() -> None:
    turns = [
        logged(1, "customer", "my router is broken", inbox_id=11),
        logged(2, "assistant", "Sorry to hear that."),
        logged(3, "operator", "A new router is on its way."),
        logged(4, "customer", "thanks", inbox_id=12),
    ]
    groups = _groups(turns)
    assert [[t.id for t in group] for group in groups] == [[1, 2, 4], [3]]
    customer, team = (_messages(group)[0] for group in groups)
    assert [m.content for m in customer] == ["my router is broken", "thanks"]  # never the bot's reply
    assert [m.content for m in team] == [TEAM_SAID + "A new router is on its way."]
    assert _provenance(groups[0]).said_by == "customer"
    assert _provenance(groups[0]).message_ids == ("inbox:11", "inbox:12")
    assert _provenance(groups[1]).said_by == "support_team"


@pytest.fixture
async def hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    settings = make_settings(tmp_path).model_copy(update={"database_url": database_url})
    async with running_hub(settings, RecordingSender("sms")) as running:
        yield running


async def idle(hub: Hub) -> None:
    assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def test_an_operators_reply_becomes_the_teams_memory(hub: Hub) -> None:
    await hub.accept(sms_message("SM1", "my router is broken", PHONE))
    await idle(hub)
    customer = (await hub.resolver.resolve(Address.parse(HANDLE))).customer_id
    assert hub.handoffs is not None
    sent = await hub.handoffs.reply(
        customer, text=f"A new router is on its way; the charge on card {CARD} is refunded.", operator="ana"
    )
    await idle(hub)

    memories = await hub.memory.list(customer)
    team = [m for m in memories if m.metadata.get("said_by") == "support_team"]
    assert len(team) == 1 and len(memories) == 2
    (memory,) = team
    assert memory.text.startswith(TEAM_SAID + "A new router is on its way")
    assert CARD not in memory.text and placeholder("card number") in memory.text
    assert (memory.handle, memory.channel) == (HANDLE, "sms")
    assert memory.turn_ids == (sent.turn_id,)
    assert "ana" not in memory.text  # the person's name stays in the log, not in memory
    (own,) = [m for m in memories if m is not memory]
    assert own.metadata["said_by"] == "customer" and "router is broken" in own.text


async def test_a_summary_keeps_the_customers_and_the_teams_words_apart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(
        update={"memory": MemorySettings(write_policy="summary", quiet_seconds=600)}
    )
    async with running_hub(settings, RecordingSender("sms")) as hub:
        await hub.accept(sms_message("SM1", "my router is broken", PHONE))
        await idle(hub)
        customer = (await hub.resolver.resolve(Address.parse(HANDLE))).customer_id
        assert hub.handoffs is not None
        await hub.handoffs.reply(customer, text="A new router is on its way.", operator="ana")
        await idle(hub)
        assert await hub.memory.list(customer) == []  # one summary job holds the three turns, not due yet
        await hub.memory_writer.flush_summaries()
        await idle(hub)
        memories = await hub.memory.list(customer)
    by_speaker = {m.metadata["said_by"]: m.text for m in memories}
    assert by_speaker == {
        "customer": "my router is broken",
        "support_team": TEAM_SAID + "A new router is on its way.",
    }
