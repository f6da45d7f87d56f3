"""``TelegramAdapter``: the Telegram ``ChannelAdapter`` (see ``channels.telegram`` for each step).

Verification, parsing an update, sending (and mapping PTB's errors) and the lazily built ``ExtBot`` live
here; what is kept of a message is ``channels.telegram.message``, splitting a reply
``channels.telegram.split``, the token, secret and PTB set-up ``channels.telegram.config``, and the send
rate ``channels.telegram.pacing`` (shared by every process once ``bind_limits`` hands in the database's).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, NoReturn

from telegram import (
    Bot,
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
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
from telegram.ext import ExtBot

from channels.base import DEFAULT_MAX_BODY_BYTES, AcceptFn, Parsed, WebhookRequest
from channels.telegram.config import (
    _TOKEN_SETTING,
    _bot_token,
    _file_base_url,
    _opt_into_timedelta,
    _scrub,
    _secret_token,
)
from channels.telegram.media import TelegramFiles
from channels.telegram.message import _attachments, _aware, _button_label, _extras, _shared_contact
from channels.telegram.pacing import TelegramPacer
from channels.telegram.polling import TelegramPoller
from channels.telegram.send_files import caption_for, send_files
from channels.telegram.split import split_text
from core.errors import (
    BadRequest,
    InvalidAddress,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import (
    Address,
    Assurance,
    Delivery,
    FetchedMedia,
    InboundMessage,
    MediaRef,
    OutboundMessage,
)
from core.ports import FileSource, NamedLease, SharedLimits
from core.settings import TelegramSettings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
CONTACT_TEXT = "[shared a contact]"

_CUSTOMER_CHATS = frozenset({ChatType.PRIVATE, ChatType.GROUP, ChatType.SUPERGROUP})
_GROUP_CHATS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})


class TelegramAdapter:
    """The Telegram ``ChannelAdapter``. Builds no client and does no I/O until first used."""

    name = "telegram"
    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    def __init__(
        self,
        settings: TelegramSettings,
        *,
        normalize: Callable[[str], Address],
        pacer: TelegramPacer | None = None,
    ) -> None:
        self._token, self.bot_id = _bot_token(settings)
        self._pacer = pacer if pacer is not None else TelegramPacer(self.bot_id)
        self.mode = settings.mode
        # polling takes no webhook, so it needs no secret (the route answers 404: no unauthenticated door)
        self._secret = _secret_token(settings).encode("utf-8") if self.mode == "webhook" else b""
        self._api_base_url = settings.api_base_url
        self._poll_timeout = settings.poll_timeout
        self._poller: TelegramPoller | None = None
        self._leases: NamedLease | None = None
        self._normalize = normalize
        self._bot: ExtBot[int] | None = None
        self._ready = False
        self._init_lock = asyncio.Lock()
        self._files = TelegramFiles(self._ready_bot)  # photos and documents customers send
        self._outgoing: FileSource | None = None  # the files of replies (``bind_files``)
        self._get_bot()  # built now (no network): not inside the first webhook's acknowledgement

    def __repr__(self) -> str:
        return f"TelegramAdapter(bot_id={self.bot_id!r}, api_base_url={self._api_base_url!r})"

    def bind_limits(self, limits: SharedLimits) -> None:
        """Take the send rate's slots from ``limits`` (``core.ports.UsesSharedLimits``)."""
        self._pacer.bind(limits)

    def bind_files(self, files: FileSource) -> None:
        """Read the files of replies from ``files`` (``core.ports.UsesFileSource``)."""
        self._outgoing = files

    def bind_leases(self, leases: NamedLease) -> None:
        """One poller among the processes on the store (``core.ports.UsesNamedLeases``)."""
        self._leases = leases

    # ----- inbound ---------------------------------------------------------------------------

    async def start_inbound(self, accept: AcceptFn) -> None:
        """Polling mode: long-poll ``getUpdates`` (``channels.telegram.polling``). Webhook mode: nothing."""
        if self.mode != "polling" or self._poller is not None:
            return
        self._poller = TelegramPoller(
            url=self._get_bot().base_url + "/getUpdates",
            token=self._token,
            bot_id=self.bot_id,
            timeout=self._poll_timeout,
            parse=self.parse_update,
            leases=self._leases,
        )
        await self._poller.start(accept)

    async def stop_inbound(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            await poller.stop()

    async def verify(self, request: WebhookRequest) -> None:
        if self.mode != "webhook":
            raise VerificationFailed("the Telegram webhook is off: this hub polls", status=404)
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
        return self.parse_update(data)

    def parse_update(self, data: Any) -> Parsed:
        """One update's JSON object (a webhook's body, or one of ``getUpdates``'s) → its customer message."""
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
        if update.callback_query is not None:
            return self._button_press(update_id, update.callback_query)
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
            text=text or "",
            reply_target=reply_target,
            received_at=_aware(message.date),
            attachments=files,
            sender_assurance=Assurance.PLATFORM_ATTESTED,  # Telegram authenticates its users
            private=message.chat.type == ChatType.PRIVATE,  # a group reads every reply
            shared_contact=_shared_contact(message),
            extras=_extras(message),
        )

    def _button_press(self, update_id: int, query: CallbackQuery) -> InboundMessage | None:
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
            sender = self._normalize(f"telegram:{user.id}")
        except InvalidAddress:
            raise BadRequest("the presser's id is not a Telegram user id", status=422) from None
        return InboundMessage(
            channel=self.name,
            provider_message_id=f"{self.bot_id}:{update_id}",
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

    # ----- outbound --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> Delivery:
        target = message.reply_target
        chat_id: int | str = target.get("chat_id") or _chat_id(message.recipient.handle)
        thread_id = target.get("message_thread_id")
        quote = target.get("message_id") if target.get("chat_type") in _GROUP_CHATS else None
        caption = caption_for(message)  # the text rides on the first file when it fits
        parts = (
            split_text(message.text)
            if caption is None and (message.text.strip() or not message.files)
            else []
        )
        if not parts and not message.files:
            raise PermanentDeliveryError("empty reply: Telegram refuses an empty message")
        keyboard = (
            InlineKeyboardMarkup(
                [[InlineKeyboardButton(b.label, callback_data=b.value) for b in message.buttons]]
            )
            if message.buttons
            else None
        )
        sent: list[str] = []
        try:
            bot = await self._ready_bot()
            if message.parts_sent == 0:
                await _settle_press(bot, chat_id, target)
            for index, part in enumerate(parts):
                if index < message.parts_sent:
                    continue
                reply_to = quote if index == 0 else None  # in groups, the first part quotes the customer
                markup = keyboard if index == len(parts) - 1 else None  # the buttons go under the last part
                try:
                    result = await _send_part(bot, chat_id, part, thread_id, reply_to, markup)
                except ChatMigrated as exc:  # a group became a supergroup: same chat, new id
                    log.info("telegram chat migrated to %s", exc.new_chat_id)
                    chat_id = exc.new_chat_id
                    result = await _send_part(bot, chat_id, part, thread_id, reply_to, markup)
                # message ids count per chat: two chats' replies share ids, so the chat is part of it
                sent.append(f"{chat_id}:{result.message_id}")
            skip = max(0, message.parts_sent - len(parts))  # files after the text, one part each
            await send_files(
                bot,
                self._outgoing,
                chat_id=chat_id,
                thread_id=thread_id,
                todo=message.files[skip:],
                caption=caption if skip == 0 else None,
                sent=sent,
            )
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
                # 30 msg/s per bot and 20/min per group, shared (channels.telegram.pacing); a 429 goes back
                # to the worker, which honours retry_after with backoff
                rate_limiter=self._pacer,
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

    async def fetch_media(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia:
        """A photo or document (``core.ports.MediaFetcher``): ``getFile``, then the file URL, capped
        (``channels.telegram.media``)."""
        return await self._files.fetch(ref, max_bytes=max_bytes)

    async def aclose(self) -> None:
        await self.stop_inbound()
        await self._files.aclose()
        bot, self._bot, self._ready = self._bot, None, False
        if bot is not None:
            await bot.shutdown()


def _chat_id(handle: str) -> int | str:
    """A private chat's id is the user's id: the handle of a ``telegram:<id>`` address."""
    return int(handle) if handle.lstrip("-").isdigit() else handle


async def _settle_press(bot: Bot, chat_id: int | str, target: dict[str, Any]) -> None:
    """For a reply to a button press: answer the callback query (the client's spinner stops) and remove
    the keyboard from the message that carried it (one press per question). Best effort: a query older
    than Telegram keeps (about 15 minutes) or a message edited already is not a reason to hold the reply."""
    query_id, message_id = target.get("callback_query_id"), target.get("buttons_message_id")
    if isinstance(query_id, str) and query_id:
        try:
            await bot.answer_callback_query(query_id)
        except TelegramError as exc:
            log.info("telegram callback query not answered: %s", type(exc).__name__)
    if isinstance(message_id, int):
        try:
            await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id, reply_markup=None)
        except TelegramError as exc:
            log.info("telegram keyboard of message %s not removed: %s", message_id, type(exc).__name__)


async def _send_part(
    bot: Bot,
    chat_id: int | str,
    text: str,
    thread_id: int | None,
    reply_to: int | None,
    markup: InlineKeyboardMarkup | None = None,
) -> Message:
    return await bot.send_message(
        chat_id=chat_id,
        text=text,
        reply_markup=markup,
        message_thread_id=thread_id,
        reply_parameters=(
            ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
            if reply_to is not None
            else None
        ),
    )
