"""Opt-out keywords, partial sends of split replies, and platform status reports that never go backwards."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from core.errors import TransientDeliveryError
from core.messages import Address, Assurance, Control, InboundMessage, StatusUpdate
from core.pipeline.delivery_status import record_status
from core.pipeline.interceptions import HELP_REPLY
from core.store.db import Database
from core.store.models import OptOut, OutboundPart, OutboxRow, Turn
from tests.core.harness import make_settings, running_hub
from tests.fakes.recording import RecordingSender


def sms(update: str, text: str, control: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="sms",
        provider_message_id=update,
        sender=Address(channel="sms", handle="+15551230000"),
        text=text,
        reply_target={"to": "+15551230000"},
        control=Control(control) if control else None,
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


async def test_stop_records_the_opt_out_and_nothing_is_sent_until_start(tmp_path: Path) -> None:
    sender = RecordingSender("sms")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        await hub.accept(sms("SM1", "STOP", "stop"))
        await hub.wait_idle(timeout=30)
        assert sender.attempts == []  # STOP is never answered
        async with hub.db.session() as session:
            assert await session.get(OptOut, "sms:+15551230000") is not None
            assert list(await session.scalars(select(Turn))) == []  # nor logged or remembered

        await hub.accept(sms("SM2", "hello, are you there?"))
        await hub.wait_idle(timeout=30)
        assert sender.attempts == []  # answered, but the reply is held back: opted out
        async with hub.db.session() as session:
            row = await session.scalar(select(OutboxRow))
        assert row is not None and row.status == "failed" and row.last_error == "opted_out"

        await hub.accept(sms("SM3", "START", "start"))
        await hub.accept(sms("SM4", "HELP", "help"))
        await sender.wait_for(1)
        await hub.wait_idle(timeout=30)
        assert [m.text for m in sender.sent] == [HELP_REPLY]
        async with hub.db.session() as session:
            assert await session.get(OptOut, "sms:+15551230000") is None


async def test_a_retry_skips_the_parts_already_sent(tmp_path: Path) -> None:
    sender = RecordingSender("sms")
    # the first attempt got two parts out, then hit a rate limit
    sender.fail_next(TransientDeliveryError("429", retry_after=0.1, sent_ids=("SMa", "SMb")))
    async with running_hub(make_settings(tmp_path), sender) as hub:
        await hub.accept(sms("SM1", "tell me everything"))
        await sender.wait_for(1)
        await hub.wait_idle(timeout=30)
        assert [m.parts_sent for m in sender.attempts] == [0, 2]
        async with hub.db.session() as session:
            row = await session.scalar(select(OutboxRow))
            parts = list(await session.scalars(select(OutboundPart).order_by(OutboundPart.id)))
        assert row is not None and row.status == "sent" and row.parts_sent == 3
        assert row.provider_message_ids == ["SMa", "SMb", "sms-1"]
        assert [(p.provider_message_id, p.outbox_id) for p in parts] == [
            ("SMa", row.id),
            ("SMb", row.id),
            ("sms-1", row.id),
        ]


async def test_status_reports_never_move_backwards_and_may_come_first(database_url: str) -> None:
    db = await Database.open(database_url)
    try:
        # a callback for a message whose send we have not recorded yet
        await record_status(db, "sms", StatusUpdate(provider_message_id="SM9", status="sent"))
        await record_status(db, "sms", StatusUpdate(provider_message_id="SM9", status="delivered"))
        await record_status(db, "sms", StatusUpdate(provider_message_id="SM9", status="sending"))  # late
        await record_status(db, "sms", StatusUpdate(provider_message_id="SM9", status="delivered"))  # repeat
        async with db.session() as session:
            part = await session.scalar(select(OutboundPart))
        assert part is not None and part.status == "delivered" and part.outbox_id is None

        await record_status(
            db, "sms", StatusUpdate(provider_message_id="SM10", status="undelivered", error_code="30003")
        )
        await record_status(db, "sms", StatusUpdate(provider_message_id="SM10", status="sent"))
        async with db.session() as session:
            other = await session.scalar(
                select(OutboundPart).where(OutboundPart.provider_message_id == "SM10")
            )
        assert other is not None and other.status == "undelivered" and other.error_code == "30003"
    finally:
        await db.aclose()


async def test_delivery_reports_settle_the_reply(tmp_path: Path) -> None:
    sender = RecordingSender("sms")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        await hub.accept(sms("SM1", "hello"))
        await sender.wait_for(1)
        await hub.wait_idle(timeout=30)
        await hub.record_status("sms", StatusUpdate(provider_message_id="sms-1", status="sent"))
        async with hub.db.session() as session:
            assert await session.scalar(select(OutboxRow.status)) == "sent"
        await hub.record_status("sms", StatusUpdate(provider_message_id="sms-1", status="delivered"))
        await hub.record_status("sms", StatusUpdate(provider_message_id="sms-1", status="queued"))
        async with hub.db.session() as session:
            assert await session.scalar(select(OutboxRow.status)) == "delivered"
