"""What is kept of a customer's Telegram message: its time, media, shared contact and extras.

Helpers of the update parsing (``channels.telegram.updates``, behind ``TelegramAdapter.parse_update``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from telegram import Message

from core.messages import MediaRef, SharedContact


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _attachments(message: Message) -> Iterator[MediaRef]:
    """The media a message carries, by ``file_id`` (the largest photo size only), with what Telegram
    says of each (untrusted: ``core.media`` sniffs the bytes)."""
    if message.photo:
        largest = message.photo[-1]
        yield MediaRef(ref=largest.file_id, media_type="image/jpeg", size=largest.file_size)
    for media in (message.document, message.video, message.audio, message.voice, message.animation):
        if media is not None:
            yield MediaRef(
                ref=media.file_id,
                name=getattr(media, "file_name", None),
                media_type=getattr(media, "mime_type", None),
                size=media.file_size,
            )


def _button_label(message: object, data: str) -> str:
    """The label of the button of ``message``'s inline keyboard whose callback data is ``data``; a
    neutral text when the message (older than 48 hours, or inaccessible) no longer shows it."""
    markup = message.reply_markup if isinstance(message, Message) else None
    for row in markup.inline_keyboard if markup is not None else ():
        for button in row:
            if button.callback_data == data and button.text:
                return button.text
    return "[pressed a button]"


def _shared_contact(message: Message) -> SharedContact | None:
    """A contact the sender shared: Telegram vouches for its number, and says whether it is the sender's."""
    contact, user = message.contact, message.from_user
    if contact is None or not contact.phone_number:
        return None
    own = user is not None and contact.user_id is not None and contact.user_id == user.id
    return SharedContact(phone=contact.phone_number, is_senders_own=own)


def _extras(message: Message) -> dict[str, Any]:
    user = message.from_user
    extras: dict[str, Any] = {"chat_type": str(message.chat.type), "message_id": message.message_id}
    if user is not None:
        for key, value in (
            ("first_name", user.first_name),
            ("username", user.username),
            ("language_code", user.language_code),
        ):
            if value:
                extras[key] = value
    contact = message.contact
    if contact is not None:  # the phone itself is InboundMessage.shared_contact; never logged
        extras["contact_user_id"] = contact.user_id
    unknown = dict(message.api_kwargs)
    if unknown and _json_safe(unknown):
        extras["unknown_fields"] = unknown
    return extras


def _json_safe(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
