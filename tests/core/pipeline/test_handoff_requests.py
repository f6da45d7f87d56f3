"""Who may open a handoff by asking (``core.pipeline.handoff_requests.HandoffInterception``), through the hub.

Only a sender its channel vouches for, in a private conversation: a forged sender must not silence the bot
for the customer it claims to be, and a group must not hand a customer's conversation to a person.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy import select

from core.messages import Assurance
from core.store.models import Handoff
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import telegram_message


async def handoffs_after(tmp_path: Path, **changes: object) -> tuple[list[tuple[str, str]], list[str]]:
    sender = RecordingSender("telegram")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        message = dataclasses.replace(telegram_message(1, "talk to a human please"), **changes)
        await hub.accept(message)
        await sender.wait_for(1)
        await hub.wait_idle(timeout=30)
        async with hub.db.read() as session:
            rows = [(h.status, h.requested_by) for h in await session.scalars(select(Handoff))]
    return rows, [m.text for m in sender.sent]


async def test_a_vouched_private_request_opens_one(tmp_path: Path) -> None:
    rows, sent = await handoffs_after(tmp_path)
    assert rows == [("waiting", "customer")]
    assert sent[0].startswith("I've asked a person from our team")


async def test_an_unvouched_sender_asking_is_answered_by_the_bot_and_opens_none(tmp_path: Path) -> None:
    rows, sent = await handoffs_after(tmp_path, sender_assurance=Assurance.UNVERIFIED)
    assert rows == []
    assert not sent[0].startswith("I've asked a person")


async def test_a_group_message_asking_opens_none(tmp_path: Path) -> None:
    rows, sent = await handoffs_after(tmp_path, private=False)
    assert rows == []
    assert not sent[0].startswith("I've asked a person")
