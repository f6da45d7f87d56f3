"""A send that happened is recorded even when the database is busy at that moment: never sent twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from core.messages import Address, Assurance, InboundMessage
from core.pipeline.delivery import Delivery
from core.store.models import OutboxRow
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender


async def test_a_busy_database_after_the_send_does_not_send_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Delivery._record_parts
    failures = {"left": 3}

    async def busy_at_first(self: Delivery, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("done") and failures["left"]:
            failures["left"] -= 1
            raise OperationalError("UPDATE outbox", {}, Exception("database is locked"))
        await real(self, *args, **kwargs)

    monkeypatch.setattr(Delivery, "_record_parts", busy_at_first)
    sender = RecordingSender("telegram")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        await hub.accept(
            InboundMessage(
                channel="telegram",
                provider_message_id="1",
                sender=Address(channel="telegram", handle="42"),
                text="hello",
                reply_target={"chat_id": 42},
                sender_assurance=Assurance.PLATFORM_ATTESTED,
                private=True,
            )
        )
        assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
        async with hub.db.session() as session:
            row = await session.scalar(select(OutboxRow))
    assert len(sender.attempts) == 1  # sent once; only the bookkeeping was retried
    assert failures["left"] == 0
    assert row is not None and row.status == "sent" and row.provider_message_ids == ["telegram-1"]
