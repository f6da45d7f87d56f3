"""Flood control: one sender over its rate is stored but not answered; others are answered as usual."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from core.messages import Address, Assurance, Control, InboundMessage
from core.pipeline.flood import SenderLimits
from core.store.models import InboxRow
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender
from tests.messages import telegram_message


def tg(user: int, update: int, text: str) -> InboundMessage:
    return telegram_message(update, text, user)


def sms(update: int, text: str, control: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="sms",
        provider_message_id=f"SM{update}",
        sender=Address(channel="sms", handle="+15551230000"),
        text=text,
        reply_target={"to": "+15551230000"},
        control=Control(control) if control else None,
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


async def test_a_flood_from_one_handle_is_stored_but_only_its_burst_is_answered(tmp_path: Path) -> None:
    # a burst of 5 and (practically) no refill: exactly 5 of the flood may be answered
    settings = make_settings(tmp_path, sender_burst=5, sender_rate_per_minute=0.001)
    telegram = RecordingSender("telegram")
    async with running_hub(settings, telegram) as hub:
        for update in range(40):
            await hub.accept(tg(666, update, f"spam {update}"))
        await hub.accept(tg(666, 3, "spam 3"))  # a platform's repeat: no second row, no token taken
        await hub.accept(tg(42, 1000, "hello, my router is broken"))
        assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
        async with hub.db.session() as session:
            statuses = dict(
                (await session.execute(select(InboxRow.status, func.count()).group_by(InboxRow.status))).all()
            )
    assert statuses == {"done": 6, "throttled": 35}  # nothing lost: all 41 distinct messages are stored
    assert len(telegram.texts_to("telegram:666")) == 5
    assert len(telegram.texts_to("telegram:42")) == 1  # the other customer is answered as usual
    assert hub.metrics.inbound_throttled.labels("telegram")._value.get() == 35


async def test_opt_out_keywords_are_never_throttled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sender_burst=1, sender_rate_per_minute=0.001)
    sender = RecordingSender("sms")
    async with running_hub(settings, sender) as hub:
        await hub.accept(sms(1, "hello"))
        await hub.accept(sms(2, "hello again"))  # over the rate
        await hub.accept(sms(3, "STOP", control="stop"))
        await hub.wait_idle(timeout=60)
        async with hub.db.session() as session:
            rows = {row.provider_message_id: row.status for row in await session.scalars(select(InboxRow))}
    assert rows == {"SM1": "done", "SM2": "throttled", "SM3": "done"}


async def test_buckets_are_per_sender_and_forget_the_least_recent_one() -> None:
    limits = SenderLimits(per_minute=0.001, burst=2, max_senders=2)  # no refill within the test
    assert limits.has_room("a")
    await limits.take("a")
    await limits.take("a")
    assert not limits.has_room("a")
    assert limits.has_room("b")  # another sender has its own bucket
    limits.has_room("c")  # a, the least recently seen, is dropped
    assert limits.has_room("a")  # a fresh bucket
