"""A newer statement of a one-valued fact supersedes the older one (``core.memory.supersession``).

The older memory stays (history, export) but is not recalled as current; unrelated memories and other
kinds of fact are untouched; an older statement imported later is the one marked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.agent.agent import Agent, AgentTurn
from core.memory.local import LocalMemory
from core.memory.supersession import is_superseded, plan_supersession, slot_of
from core.messages import Assurance, ChatMessage, Provenance
from core.settings import LLMSettings, MemorySettings
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import telegram_message


@pytest.mark.parametrize(
    ("text", "slot"),
    [
        ("My address is 12 Elm Street, Leeds.", "address"),
        ("We have relocated to 3 Rue Verte, Lyon.", "address"),
        ("My new phone number is +1 555 201 3344.", "phone"),
        ("Use +1 555 201 3344 to reach me now.", "phone"),
        ("Email me at ana@mail.example", "email"),
        ("I switched to the Pro plan.", "plan"),
        ("I signed up for the Basic plan.", "plan"),
        ("I called +1 800 555 0100 for support.", None),  # a number, not the customer's own
        ("My router keeps dropping the wifi.", None),
        ("I was charged twice for the March invoice.", None),
    ],
)
def test_what_kind_of_fact_a_memory_states(text: str, slot: str | None) -> None:
    assert slot_of(text) == slot


def test_the_newest_statement_of_each_fact_stands() -> None:
    existing = {
        "a1": {"data": "My address is 1 Elm Street, Leeds.", "created_at": "2026-01-01T00:00:00+00:00"},
        "p1": {"data": "I'm on the Basic plan.", "created_at": "2026-01-02T00:00:00+00:00"},
        "x1": {"data": "The parcel arrived broken.", "created_at": "2026-01-03T00:00:00+00:00"},
        "a0": {
            "data": "I live at 7 Mill Lane, Leeds.",
            "created_at": "2025-06-01T00:00:00+00:00",
            "superseded_by": "a1",
        },
    }
    new = {"a2": {"data": "I moved to 9 Oak Avenue, Porto.", "created_at": "2026-02-01T00:00:00+00:00"}}
    assert plan_supersession(new, existing) == {"a1": "a2"}  # not the plan, not the parcel, a0 already
    # an older statement imported later is itself the superseded one
    imported = {"a3": {"data": "My address is 4 Kingsway, Graz.", "created_at": "2024-01-01T00:00:00+00:00"}}
    assert plan_supersession(imported, {**existing, **new}) == {"a3": "a2", "a1": "a2"}


def _provenance(turn: int) -> Provenance:
    return Provenance(
        channel="sms", handle="sms:+15550000001", message_ids=(f"inbox:{turn}",), category="profile"
    )


async def test_the_old_address_stays_as_history_and_is_not_recalled(tmp_path: Path) -> None:
    memory = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    try:
        said = [
            "My address is 1 Elm Street, Leeds.",
            "The parcel arrived broken.",
            "I moved to 9 Oak Avenue, Porto.",
        ]
        for turn, text in enumerate(said):
            ids = await memory.remember(
                "cus_1", [ChatMessage(role="user", content=text)], provenance=_provenance(turn), infer=False
            )
            await memory.supersede("cus_1", ids)
        listed = {m.text: m for m in await memory.list("cus_1")}
        assert len(listed) == 3  # history kept
        old, new = listed["My address is 1 Elm Street, Leeds."], listed["I moved to 9 Oak Avenue, Porto."]
        assert is_superseded(old.metadata) and old.metadata["superseded_by"] == new.id
        assert not is_superseded(new.metadata)
        agent = Agent(memory=memory, conversation=None, model=None, settings=MemorySettings())  # type: ignore[arg-type]
        turn = AgentTurn(
            customer_id="cus_1",
            assurance=Assurance.PLATFORM_ATTESTED,
            sender="sms:+15550000001",
            channel="sms",
            text="What address do you have for me?",
            inbox_id=9,
        )
        recalled = [m.text for m in await agent.recall(turn)]
        assert "I moved to 9 Oak Avenue, Porto." in recalled
        assert "My address is 1 Elm Street, Leeds." not in recalled
        # another customer's statements never touch this one's
        ids = await memory.remember(
            "cus_2",
            [ChatMessage(role="user", content="I moved to 5 Mill Lane, Graz.")],
            provenance=_provenance(5),
            infer=False,
        )
        assert await memory.supersede("cus_2", ids) == 0
        assert not is_superseded({m.text: m for m in await memory.list("cus_1")}[new.text].metadata)
    finally:
        await memory.aclose()


async def test_the_writer_marks_the_old_statement_when_the_customer_says_the_new_one(tmp_path: Path) -> None:
    sender = RecordingSender("telegram")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        await hub.accept(telegram_message(1, "My phone number is +1 555 111 2222."))
        await hub.accept(telegram_message(2, "My new phone number is +1 555 333 4444."))
        await sender.wait_for(2)
        await hub.wait_idle(timeout=60)
        customer = (await hub.resolver.resolve(telegram_message(1, "").sender)).customer_id
        memories = {m.text: m for m in await hub.memory.list(customer)}
    assert is_superseded(memories["My phone number is +1 555 111 2222."].metadata)
    assert not is_superseded(memories["My new phone number is +1 555 333 4444."].metadata)
