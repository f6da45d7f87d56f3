"""A memory is dated by when it was said, not when it was written (``Provenance.said_at``).

In normal operation the two are seconds apart; they differ when turns are written late: a backfill, or a
memory write retried after an outage. The date the prompt shows, the date filters, the ranking's times and
which statement of a fact is the current one all follow when it was said.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.agent.agent import Agent, AgentTurn
from core.agent.prompt import memory_block
from core.memory.local import LocalMemory
from core.memory.supersession import is_superseded
from core.messages import Assurance, ChatMessage, MemoryFilter, Provenance
from core.settings import LLMSettings, MemorySettings
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import telegram_message

MARCH = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
MAY = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)


async def test_a_late_written_turn_is_dated_by_when_the_customer_said_it(tmp_path: Path) -> None:
    """Through the app: the message says when it was received; the memory, its block header and the date
    filters carry that day, not the day the worker wrote it."""
    sender = RecordingSender("telegram")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        late = dataclasses.replace(
            telegram_message(1, "My router drops the wifi every evening."), received_at=MARCH
        )
        await hub.accept(late)
        await sender.wait_for(1)
        await hub.wait_idle(timeout=60)
        customer = (await hub.resolver.resolve(late.sender)).customer_id
        (memory,) = await hub.memory.list(customer)
        assert memory.said_at == MARCH
        assert memory.created_at is not None and memory.created_at.astimezone(UTC).date() != MARCH.date()
        assert memory.when == MARCH and memory.as_json()["said_at"] == MARCH.isoformat()
        block = memory_block([memory])
        assert "2026-03-02, via telegram:" in block
        assert memory.created_at.astimezone(UTC).date().isoformat() not in block
        march = MemoryFilter(since=datetime(2026, 3, 1, tzinfo=UTC), until=datetime(2026, 4, 1, tzinfo=UTC))
        today = MemoryFilter(since=datetime.now(UTC) - timedelta(days=1))
        query = "wifi router"
        assert [m.id for m in await hub.memory.recall(customer, query, limit=5, filters=march)] == [memory.id]
        assert await hub.memory.recall(customer, query, limit=5, filters=today) == []
        assert [m.id for m in await hub.memory.list(customer, filters=march)] == [memory.id]
        assert await hub.memory.list(customer, filters=today) == []


def _provenance(turn: int, said_at: datetime) -> Provenance:
    return Provenance(
        channel="sms",
        handle="sms:+15550000001",
        message_ids=(f"inbox:{turn}",),
        category="profile",
        said_at=said_at,
    )


async def test_a_statement_written_later_but_said_earlier_does_not_replace_the_current_one(
    tmp_path: Path,
) -> None:
    memory = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    try:
        new_ids = await memory.remember(
            "cus_1",
            [ChatMessage(role="user", content="I moved to 9 Oak Avenue, Porto.")],
            provenance=_provenance(2, MAY),
            infer=False,
        )
        await memory.supersede("cus_1", new_ids)
        # written afterwards, said two months before: history from the start
        old_ids = await memory.remember(
            "cus_1",
            [ChatMessage(role="user", content="My address is 1 Elm Street, Leeds.")],
            provenance=_provenance(1, MARCH),
            infer=False,
        )
        assert await memory.supersede("cus_1", old_ids) == 1
        listed = {m.text: m for m in await memory.list("cus_1")}
        old, new = listed["My address is 1 Elm Street, Leeds."], listed["I moved to 9 Oak Avenue, Porto."]
        assert is_superseded(old.metadata) and old.metadata["superseded_by"] == new.id
        assert not is_superseded(new.metadata)
        agent = Agent(memory=memory, conversation=None, model=None, settings=MemorySettings())  # type: ignore[arg-type]
        turn = AgentTurn(
            customer_id="cus_1",
            assurance=Assurance.PLATFORM_ATTESTED,
            sender="sms:+15550000001",
            channel="sms",
            text="Which address do you have for me?",
            inbox_id=9,
        )
        recalled = [m.text for m in await agent.recall(turn)]
        assert recalled[0] == "I moved to 9 Oak Avenue, Porto."
        assert "My address is 1 Elm Street, Leeds." not in recalled
    finally:
        await memory.aclose()


async def test_ranking_reads_when_a_memory_was_said(tmp_path: Path) -> None:
    """Two equally good matches: the one said later ranks first (recency), whatever order they were
    written in."""
    memory = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    try:
        for turn, said_at in ((1, MAY), (2, MARCH)):  # the newer said first
            await memory.remember(
                "cus_1",
                [ChatMessage(role="user", content="The invoice shows a late fee.")],
                provenance=_provenance(turn, said_at),
                infer=False,
            )
        recalled = await memory.recall("cus_1", "late fee on the invoice", limit=2)
        assert [m.said_at for m in recalled] == [MAY, MARCH]
    finally:
        await memory.aclose()
