"""A Telegram update → the customer message it carries (``TelegramAdapter.parse_update``): a new message
in a private chat or a group (its text or caption, files, a shared contact), or a press of one of our
inline-keyboard buttons. Everything else (edits, bots, channel posts) is dropped with a debug line that
names the update only. What is kept of a message is ``channels.telegram.message``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from telegram import CallbackQuery, Chat, Update
from telegram.constants import ChatType

from channels.telegram.message import _attachments, _aware, _button_label, _extras, _shared_contact
from core.errors import BadRequest, InvalidAddress
from core.messages import Address, Assurance, InboundMessage

log = logging.getLogger(__name__)

CONTACT_TEXT = "[shared a contact]"

_CUSTOMER_CHATS = frozenset({ChatType.PRIVATE, ChatType.GROUP, ChatType.SUPERGROUP})


def customer_message(
    update: Update, *, channel: str, bot_id: str, normalize: Callable[[str], Address]
) -> InboundMessage | None:
    """The customer message an update carries (a new message, or a press of one of our buttons); None for
    an update that is not one (an edit, a bot, a channel post, a message without text or files)."""
    update_id = update.update_id
    if update.callback_query is not None:
        return _button_press(
            update_id, update.callback_query, channel=channel, bot_id=bot_id, normalize=normalize
        )
    message = update.message
    if message is None:
        log.debug("telegram update %s dropped: not a new message", update_id)
        return None
    chat = message.chat  # de_json does not insist on the required chat and date
    if not isinstance(chat, Chat) or not isinstance(chat.type, str) or message.date is None:
        raise BadRequest("the message lacks a chat or a date")
    user = message.from_user
    if user is None or user.is_bot:
        log.debug("telegram update %s dropped: not from a person", update_id)
        return None
    if message.chat.type not in _CUSTOMER_CHATS:
        log.debug("telegram update %s dropped: chat type %s", update_id, message.chat.type)
        return None
    text = message.text if message.text is not None else message.caption
    if text is not None and not isinstance(text, str):
        raise BadRequest("the message text is not a string")
    if text is None and message.contact is not None:
        text = CONTACT_TEXT
    files = tuple(_attachments(message))  # fetched by the worker (``channels.telegram.media``)
    if not text and not files:  # a photo without a caption is still a message
        log.debug("telegram update %s dropped: no text", update_id)
        return None
    try:
        sender = normalize(f"telegram:{user.id}")
    except InvalidAddress:
        raise BadRequest("the sender's id is not a Telegram user id", status=422) from None
    reply_target: dict[str, Any] = {
        "chat_id": message.chat.id,
        "message_id": message.message_id,
        "chat_type": str(message.chat.type),
    }
    if message.is_topic_message and message.message_thread_id is not None:
        reply_target["message_thread_id"] = message.message_thread_id
    return InboundMessage(
        channel=channel,
        provider_message_id=f"{bot_id}:{update_id}",
        sender=sender,
        text=text or "",
        reply_target=reply_target,
        received_at=_aware(message.date),
        attachments=files,
        sender_assurance=Assurance.PLATFORM_ATTESTED,  # Telegram authenticates its users
        private=message.chat.type == ChatType.PRIVATE,  # a group reads every reply
        shared_contact=_shared_contact(message),
        extras=_extras(message),
    )


def _button_press(
    update_id: int, query: CallbackQuery, *, channel: str, bot_id: str, normalize: Callable[[str], Address]
) -> InboundMessage | None:
    """A press of one of our inline-keyboard buttons: a message whose text is the button's label and
    whose ``extras["button"]`` is its ``callback_data`` (which the core checks: a modified client can
    send any data). Presses on inline-mode messages, games and bots are noise."""
    user, data, message = query.from_user, query.data, query.message
    if user is None or user.is_bot or not isinstance(data, str) or not data or message is None:
        log.debug("telegram update %s dropped: not a button press of a person on our message", update_id)
        return None
    chat = message.chat
    if not isinstance(chat, Chat) or chat.type not in _CUSTOMER_CHATS:
        log.debug("telegram update %s dropped: button press outside a customer chat", update_id)
        return None
    try:
        sender = normalize(f"telegram:{user.id}")
    except InvalidAddress:
        raise BadRequest("the presser's id is not a Telegram user id", status=422) from None
    return InboundMessage(
        channel=channel,
        provider_message_id=f"{bot_id}:{update_id}",
        sender=sender,
        text=_button_label(message, data),
        reply_target={
            "chat_id": chat.id,
            "chat_type": str(chat.type),
            # answered (the client's spinner stops) and its keyboard removed when the reply is sent
            "callback_query_id": query.id,
            "buttons_message_id": message.message_id,
        },
        sender_assurance=Assurance.PLATFORM_ATTESTED,  # Telegram authenticates its users
        private=chat.type == ChatType.PRIVATE,
        extras={"chat_type": str(chat.type), "button": data[:64]},
    )
