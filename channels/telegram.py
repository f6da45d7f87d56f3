"""The Telegram channel: Bot API webhooks in, ``sendMessage`` out, through python-telegram-bot.

- ``verify``: the ``X-Telegram-Bot-Api-Secret-Token`` header must equal the secret given to
  ``setWebhook`` (constant-time compare); missing or wrong → 403, as PTB's own webhook server answers.
- ``parse``: ``telegram.Update.de_json``. Only a new ``message`` from a person (not a bot) in a private
  chat, group or supergroup, carrying text, a caption or a shared contact, is a customer message.
  Edits, channel posts, callback queries, member updates and service messages are noise: no messages,
  200. The inbox key is ``"<bot id>:<update_id>"``: update ids are per bot and restart at a random
  value after a week without updates.
- ``send``: ``ExtBot.send_message`` as plain text (no parse mode: model output is not markup), split to
  4,096 UTF-16 code units on paragraph, line or word boundaries, through ``AIORateLimiter`` (30 msg/s
  overall, 20/min per group). A 429 is not waited out here: it becomes ``TransientDeliveryError`` with
  the platform's ``retry_after`` and the worker schedules the retry.
- ``set_webhook``: points the bot's webhook at ``<public base url>/webhooks/telegram``; used by
  ``threadline setup telegram``.

The bot token is part of every Bot API URL, and PTB puts it in some error texts: every error message
that leaves this module has the token scrubbed, and nothing here logs a message body or a phone number.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn

from telegram import Bot, Chat, Message, ReplyParameters, Update
from telegram.constants import ChatType
from telegram.error import (
    BadRequest as TelegramBadRequest,
)
from telegram.error import (
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, ExtBot

from channels.base import DEFAULT_MAX_BODY_BYTES, Parsed, WebhookRequest
from core.errors import (
    BadRequest,
    ConfigError,
    InvalidAddress,
    PermanentDeliveryError,
    ThreadlineError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import Address, Assurance, Delivery, InboundMessage, OutboundMessage, SharedContact
from core.settings import TelegramSettings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
WEBHOOK_PATH = "/webhooks/telegram"
MAX_TEXT_LENGTH = 4096  # Bot API: 1-4096 characters after entity parsing, counted in UTF-16 code units
CONTACT_TEXT = "[shared a contact]"

_TOKEN_SETTING = "THREADLINE_TELEGRAM__BOT_TOKEN"  # noqa: S105 (a setting name)
_SECRET_SETTING = "THREADLINE_TELEGRAM__SECRET_TOKEN"  # noqa: S105 (a setting name)
_TOKEN_SHAPE = re.compile(r"^([0-9]+):[A-Za-z0-9_-]+$")
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts as secret_token
_CUSTOMER_CHATS = frozenset({ChatType.PRIVATE, ChatType.GROUP, ChatType.SUPERGROUP})
_GROUP_CHATS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})


class TelegramAdapter:
    """The Telegram ``ChannelAdapter``. Builds no client and does no I/O until first used."""

    name = "telegram"
    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    def __init__(self, settings: TelegramSettings, *, normalize: Callable[[str], Address]) -> None:
        self._token, self.bot_id = _bot_token(settings)
        self._secret = _secret_token(settings).encode("utf-8")
        self._api_base_url = settings.api_base_url
        self._normalize = normalize
        self._bot: ExtBot[int] | None = None
        self._ready = False
        self._init_lock = asyncio.Lock()
        self._get_bot()  # built now (no network): not inside the first webhook's acknowledgement

    def __repr__(self) -> str:
        return f"TelegramAdapter(bot_id={self.bot_id!r}, api_base_url={self._api_base_url!r})"

    # ----- inbound ---------------------------------------------------------------------------

    async def verify(self, request: WebhookRequest) -> None:
        given = request.header(SECRET_HEADER)
        if given is None:
            raise VerificationFailed("missing Telegram secret token header", status=403)
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret):
            raise VerificationFailed("wrong Telegram secret token", status=403)

    async def parse(self, request: WebhookRequest) -> Parsed:
        try:
            data = json.loads(request.body)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise BadRequest("the update is not JSON") from exc
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise BadRequest("the update is not an object with an integer update_id")
        try:
            update = Update.de_json(data, self._get_bot())
        except Exception as exc:  # PTB raises KeyError/TypeError/ValueError on malformed objects
            raise BadRequest("the update does not match the Bot API schema") from exc
        message = self._customer_message(update)
        if message is None:
            return Parsed()
        return Parsed(messages=[message])

    def _customer_message(self, update: Update) -> InboundMessage | None:
        update_id = update.update_id
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
        if not text:
            log.debug("telegram update %s dropped: no text", update_id)
            return None
        try:
            sender = self._normalize(f"telegram:{user.id}")
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
            channel=self.name,
            provider_message_id=f"{self.bot_id}:{update_id}",
            sender=sender,
            text=text,
            reply_target=reply_target,
            received_at=_aware(message.date),
            attachments=tuple(_attachment_ids(message)),
            sender_assurance=Assurance.PLATFORM_ATTESTED,  # Telegram authenticates its users
            private=message.chat.type == ChatType.PRIVATE,  # a group reads every reply
            shared_contact=_shared_contact(message),
            extras=_extras(message),
        )

    # ----- outbound --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> Delivery:
        target = message.reply_target
        chat_id: int | str = target.get("chat_id") or _chat_id(message.recipient.handle)
        thread_id = target.get("message_thread_id")
        quote = target.get("message_id") if target.get("chat_type") in _GROUP_CHATS else None
        parts = split_text(message.text)
        if not parts:
            raise PermanentDeliveryError("empty reply: Telegram refuses an empty message")
        sent: list[str] = []
        try:
            bot = await self._ready_bot()
            for index, part in enumerate(parts):
                if index < message.parts_sent:
                    continue
                reply_to = quote if index == 0 else None  # in groups, the first part quotes the customer
                try:
                    result = await _send_part(bot, chat_id, part, thread_id, reply_to)
                except ChatMigrated as exc:  # a group became a supergroup: same chat, new id
                    log.info("telegram chat migrated to %s", exc.new_chat_id)
                    chat_id = exc.new_chat_id
                    result = await _send_part(bot, chat_id, part, thread_id, reply_to)
                sent.append(str(result.message_id))
        except TelegramError as exc:
            self._raise_delivery_error(exc, tuple(sent))
        log.info("telegram sent %d part(s) to chat %s", len(sent), chat_id)
        return Delivery(provider_message_ids=tuple(sent))

    def _raise_delivery_error(self, exc: TelegramError, sent: tuple[str, ...]) -> NoReturn:
        """Map a PTB error; the mapping lives here only. Order matters: BadRequest is a NetworkError."""
        kind = type(exc).__name__
        if isinstance(exc, RetryAfter):
            wait = exc.retry_after
            seconds = float(wait) if isinstance(wait, int | float) else wait.total_seconds()
            raise TransientDeliveryError(
                f"Telegram rate limit: retry after {seconds:g} s", retry_after=seconds, sent_ids=sent
            ) from exc
        if isinstance(exc, InvalidToken):
            # the bot token was refused (PTB's text names the token): fixable by configuration, so retried
            raise TransientDeliveryError(
                f"Telegram refused the bot token ({_TOKEN_SETTING})", sent_ids=sent
            ) from None
        detail = _scrub(exc.message, self._token)
        if isinstance(exc, Forbidden | TelegramBadRequest):  # blocked, kicked, chat not found, too long
            raise PermanentDeliveryError(f"Telegram {kind}: {detail}", sent_ids=sent) from exc
        # TimedOut and NetworkError (timeouts, connection errors, 5xx), and anything PTB adds later
        raise TransientDeliveryError(f"Telegram {kind}: {detail}", sent_ids=sent) from exc

    # ----- the PTB client ----------------------------------------------------------------------

    def _get_bot(self) -> ExtBot[int]:
        """The bot object, built on first use without any network call."""
        if self._bot is None:
            _opt_into_timedelta()
            self._bot = ExtBot(
                self._token,
                base_url=self._api_base_url,
                base_file_url=_file_base_url(self._api_base_url),
                # max_retries=0: a 429 goes back to the worker, which honours retry_after with backoff
                rate_limiter=AIORateLimiter(max_retries=0),
            )
        return self._bot

    async def _ready_bot(self) -> ExtBot[int]:
        """The bot, initialised once (``initialize`` calls getMe); a failed attempt is tried again."""
        bot = self._get_bot()
        if not self._ready:
            async with self._init_lock:
                if not self._ready:
                    await bot.initialize()
                    self._ready = True
        return bot

    async def aclose(self) -> None:
        bot, self._bot, self._ready = self._bot, None, False
        if bot is not None:
            await bot.shutdown()


def _chat_id(handle: str) -> int | str:
    """A private chat's id is the user's id: the handle of a ``telegram:<id>`` address."""
    return int(handle) if handle.lstrip("-").isdigit() else handle


async def _send_part(
    bot: Bot, chat_id: int | str, text: str, thread_id: int | None, reply_to: int | None
) -> Message:
    return await bot.send_message(
        chat_id=chat_id,
        text=text,
        message_thread_id=thread_id,
        reply_parameters=(
            ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
            if reply_to is not None
            else None
        ),
    )


# ----- splitting ---------------------------------------------------------------------------------


def split_text(text: str, limit: int = MAX_TEXT_LENGTH) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-16 code units (Telegram's measure of length).

    Cuts at the last paragraph break, else line break, else space in the second half of the window,
    else hard at the limit. The cut separator is dropped and blank parts are skipped, since Telegram
    refuses empty messages. Deterministic, so a retry skips exactly the parts already sent.
    """
    return [part for part in _chunks(text.strip(), limit) if part.strip()]


def _chunks(text: str, limit: int) -> Iterator[str]:
    while _utf16_len(text) > limit:
        window = text[: _prefix_fitting(text, limit)]
        cut, skip = _best_cut(window)
        yield window[:cut].rstrip()
        text = text[cut + skip :].lstrip("\n")
    yield text


def _best_cut(window: str) -> tuple[int, int]:
    """Where to cut ``window`` and how many separator characters to drop there."""
    floor = len(window) // 2
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= floor and at > 0:
            return at, len(separator)
    return len(window), 0


def _utf16_len(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _prefix_fitting(text: str, limit: int) -> int:
    """The number of characters of ``text`` that fit in ``limit`` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


# ----- parsing helpers ---------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _attachment_ids(message: Message) -> Iterator[str]:
    """Telegram ``file_id``s of the media a captioned message carries (largest photo size only)."""
    if message.photo:
        yield message.photo[-1].file_id
    for media in (message.document, message.video, message.audio, message.voice, message.animation):
        if media is not None:
            yield media.file_id


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


# ----- configuration and set-up ------------------------------------------------------------------


def _bot_token(settings: TelegramSettings) -> tuple[str, str]:
    """The token and the bot's numeric id (the token's prefix), or ``ConfigError``."""
    token = settings.bot_token.get_secret_value() if settings.bot_token is not None else ""
    if not token:
        raise ConfigError(f"the Telegram channel needs {_TOKEN_SETTING}", setting=_TOKEN_SETTING)
    shape = _TOKEN_SHAPE.match(token)
    if shape is None:
        raise ConfigError(
            f"{_TOKEN_SETTING} is not a bot token (<bot id>:<secret> from @BotFather)",
            setting=_TOKEN_SETTING,
        )
    return token, shape.group(1)


def _secret_token(settings: TelegramSettings) -> str:
    secret = settings.secret_token.get_secret_value() if settings.secret_token is not None else ""
    if not secret:
        raise ConfigError(
            f"the Telegram channel needs {_SECRET_SETTING} to check webhook deliveries",
            setting=_SECRET_SETTING,
        )
    if not _SECRET_SHAPE.match(secret):
        raise ConfigError(
            f"{_SECRET_SETTING} must be 1-256 characters of A-Z, a-z, 0-9, _ and -", setting=_SECRET_SETTING
        )
    return secret


def _opt_into_timedelta() -> None:
    """PTB 22 warns (``PTBDeprecationWarning``, raised inside ``RetryAfter.__init__``) unless time periods
    are opted into as ``timedelta``, their type in its next major version. Opt in before any bot exists:
    this module reads ``retry_after`` as either type, and Threadline uses PTB nowhere else.
    """
    os.environ.setdefault("PTB_TIMEDELTA", "true")


def _file_base_url(api_base_url: str) -> str:
    """``https://api.telegram.org/bot`` → ``https://api.telegram.org/file/bot`` (same host as the API)."""
    root = api_base_url.rstrip("/")
    if root.endswith("/bot"):
        return root[: -len("/bot")] + "/file/bot"
    return "https://api.telegram.org/file/bot"


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "<bot token>") if token else text


async def set_webhook(settings: TelegramSettings, public_base_url: str) -> str:
    """Point the bot's webhook at ``<public_base_url>/webhooks/telegram`` with our secret token.

    Only ``message`` updates are asked for, and updates still pending are kept. Returns one line that
    says what was done (no secrets). Raises ``ConfigError`` when Telegram refuses the token or the URL.
    """
    token, bot_id = _bot_token(settings)
    secret = _secret_token(settings)
    url = public_base_url.rstrip("/") + WEBHOOK_PATH
    _opt_into_timedelta()
    bot = Bot(token, base_url=settings.api_base_url, base_file_url=_file_base_url(settings.api_base_url))
    try:
        async with bot:
            await bot.set_webhook(
                url=url, secret_token=secret, allowed_updates=["message"], drop_pending_updates=False
            )
            info = await bot.get_webhook_info()
            username = bot.username
    except InvalidToken:
        raise ConfigError(
            f"Telegram refused the bot token ({_TOKEN_SETTING})", setting=_TOKEN_SETTING
        ) from None
    except TelegramBadRequest as exc:
        raise ConfigError(
            f"Telegram refused the webhook {url}: {_scrub(exc.message, token)}",
            setting="THREADLINE_PUBLIC_BASE_URL",
        ) from None
    except TelegramError as exc:
        raise ThreadlineError(f"Telegram setWebhook failed: {_scrub(exc.message, token)}") from None
    pending = info.pending_update_count
    return (
        f"Telegram webhook of @{username} (bot {bot_id}) now points at {url}: "
        f"message updates only, checked with the secret token, {pending} pending update(s) kept."
    )
