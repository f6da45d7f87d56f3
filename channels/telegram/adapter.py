"""``TelegramAdapter``: the Telegram ``ChannelAdapter`` (see ``channels.telegram`` for each step).

Verification, sending (and mapping PTB's errors) and the lazily built ``ExtBot`` live here; an update's
customer message is ``channels.telegram.updates``, what is kept of it ``channels.telegram.message``,
splitting a reply ``channels.telegram.split``, the token, secret and PTB set-up ``channels.telegram.config``,
and the send rate ``channels.telegram.pacing`` (shared by every process once ``bind_limits`` hands in the
database's).
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
from telegram.request import HTTPXRequest

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
from channels.telegram.pacing import TelegramPacer
from channels.telegram.polling import TelegramPoller
from channels.telegram.send_files import caption_for, send_files
from channels.telegram.split import split_text
from channels.telegram.updates import customer_message
from core.errors import (
    BadRequest,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import (
    Address,
    Delivery,
    FetchedMedia,
    MediaRef,
    OutboundMessage,
)
from core.ports import FileSource, NamedLease, SharedLimits
from core.settings import TelegramSettings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)

_GROUP_CHATS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})

# Seconds the Bot API's answer to one call is waited for (PTB's default is 5 s). An answer later than
# this counts as a failure and the reply is retried, though Telegram may have delivered it (the Bot API
# has no idempotency key): a slow answer must not become a second reply. Slack's and Twilio's clients
# wait 30 s as well.
ANSWER_TIMEOUT = 30.0


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
        message = customer_message(update, channel=self.name, bot_id=self.bot_id, normalize=self._normalize)
        if message is None:
            return Parsed()
        return Parsed(messages=[message])

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
                request=HTTPXRequest(read_timeout=ANSWER_TIMEOUT),
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
