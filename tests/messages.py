"""Inbound messages as the channel adapters would hand them to the hub, for tests that skip the webhook."""

from __future__ import annotations

from core.messages import Address, Assurance, InboundMessage


def sms_message(sid: str, text: str, phone: str = "+15551230000") -> InboundMessage:
    """An SMS from ``phone`` with Twilio message id ``sid``."""
    return InboundMessage(
        channel="sms",
        provider_message_id=sid,
        sender=Address(channel="sms", handle=phone),
        text=text,
        reply_target={"to": phone},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


def telegram_message(update: int, text: str, user: int = 42) -> InboundMessage:
    """A private Telegram message from ``user`` in update ``update``."""
    return InboundMessage(
        channel="telegram",
        provider_message_id=str(update),
        sender=Address(channel="telegram", handle=str(user)),
        text=text,
        reply_target={"chat_id": user},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )
