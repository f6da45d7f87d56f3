"""The Slack channel: Events API over HTTP in, ``chat.postMessage`` through slack_sdk out.

- ``verify``: slack_sdk's ``SignatureVerifier`` over the raw body (``v0`` HMAC-SHA256 of
  ``v0:{timestamp}:{body}``, five-minute window); anything missing, stale or wrong is a 401.
- ``parse``: ``url_verification`` is answered with its challenge; an ``event_callback`` carrying a
  ``message`` (channel or DM) or an ``app_mention`` becomes one ``InboundMessage`` keyed by
  ``event_id`` (stable across Slack's retries), sent by ``slack:TEAM:USER``. Bot messages, our own
  messages, edits, deletions, joins and other subtypes that are not a person writing are dropped with
  a plain 200, and so is every other envelope type.
- ``send``: ``AsyncWebClient.chat_postMessage`` with bounded in-SDK retries on 429 (honouring
  ``Retry-After``) and on 500/503, replies split at 4,000 characters on paragraph, line, sentence or
  word boundaries, and paced to about one message a second per Slack channel (``ChannelPacer``).

``app_manifest`` builds the Slack app manifest that ``threadline setup slack`` prints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler, default_interval_calculator
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import DEFAULT_MAX_BODY_BYTES, Parsed, WebhookReply, WebhookRequest
from core.errors import (
    BadRequest,
    InvalidAddress,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import Address, Assurance, Delivery, InboundMessage, OutboundMessage
from core.settings import SlackSettings

log = logging.getLogger(__name__)

# slack_sdk logs whole request bodies (message text) at DEBUG whenever its logger's own level is
# NOTSET or DEBUG, whatever the handlers do; its client gets a logger pinned above DEBUG.
_SDK_LOG = logging.getLogger(f"{__name__}.sdk")
_SDK_LOG.setLevel(logging.INFO)

MAX_TEXT_CHARS = 4_000
"""Slack truncates past 40,000 characters and advises keeping ``text`` at or below 4,000."""

SIGNATURE_WINDOW_SECONDS = 300
EVENTS_PATH = "/webhooks/slack/events"

BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "im:history",
    "users:read",
    "users:read.email",  # profile emails of trusted workspaces (THREADLINE_SLACK__TRUSTED_TEAMS)
)
BOT_EVENTS = ("app_mention", "message.channels", "message.im")

# Message subtypes that are still a person writing to us; every other subtype is noise.
_PERSON_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message"})
_EVENT_TYPES = frozenset({"message", "app_mention"})

# chat.postMessage errors that no retry can fix.
_PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "not_authed",
        "missing_scope",
        "not_allowed_token_type",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "invalid_arguments",
        "invalid_blocks",
        "ekm_access_denied",
        "team_access_not_granted",
        "access_denied",
        "no_permission",
        "org_login_required",
        "enterprise_is_restricted",
    }
)
# Errors Slack documents as temporary.
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))

Sleep = Callable[[float], Awaitable[None]]


class ChannelPacer:
    """About one message per ``interval`` seconds per Slack channel, after a burst of ``burst``.

    A per-channel GCRA: each call reserves the next slot (no await between reading and writing the
    slot, so no lock is needed) and sleeps until it. ``interval=0`` turns pacing off. ``clock`` and
    ``sleep`` are injectable so tests need no wall clock.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_channels: int = 4_096,
    ) -> None:
        if interval < 0 or burst < 1:
            raise ValueError("interval must be >= 0 and burst >= 1")
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._max_channels = max_channels
        self._next: dict[str, float] = {}  # channel -> theoretical arrival time of its next message

    def reserve(self, channel: str) -> float:
        """Reserve the channel's next slot; returns how long to wait for it (seconds)."""
        if self.interval == 0:
            return 0.0
        now = self._clock()
        if len(self._next) >= self._max_channels:
            self._next = {ch: t for ch, t in self._next.items() if t > now}
        tat = max(self._next.get(channel, now), now)
        self._next[channel] = tat + self.interval
        return max(0.0, tat - now - (self.burst - 1) * self.interval)

    async def wait(self, channel: str) -> None:
        delay = self.reserve(channel)
        if delay > 0:
            await self._sleep(delay)


class _BoundedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps ``Retry-After`` then retries), but only for short waits.

    A longer ``Retry-After`` is handed to the worker as ``TransientDeliveryError(retry_after=...)``
    instead of holding the delivery (and the channel's pacer slot) for that long.
    """

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
        if not values:
            return True  # the SDK waits about a second
        try:
            wait = int(values[0])
        except ValueError:
            return False  # the SDK's own int() would fail; let the worker back off instead
        return 0 <= wait <= self.max_wait


def escape_text(text: str) -> str:
    """Escape Slack's three control characters so a reply cannot form links, mentions or ``<!channel>``."""
    for raw, entity in _ESCAPES:
        text = text.replace(raw, entity)
    return text


def split_text(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, none of them blank.

    Cuts at the last paragraph break, else line break, else sentence end, else space in the window
    (when that keeps the part at least half / a quarter full); else a hard cut, moved back so it does
    not break an ``&amp;``-style entity. Deterministic, so a retry skips exactly the parts already sent.
    """
    if limit < 8:
        raise ValueError("limit is too small to split on")
    rest = text.strip()
    parts: list[str] = []
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest:
        parts.append(rest)
    return parts


def _cut_point(text: str, limit: int) -> int:
    window = text[: limit + 1]  # a separator right after the limit still counts
    for sep, keep, floor in (("\n\n", 0, limit // 2), ("\n", 0, limit // 2), (". ", 1, limit // 2)):
        at = window.rfind(sep, 0, limit + 1 - keep)
        if at >= floor:
            return at + keep
    at = window.rfind(" ")
    if at >= limit // 4:
        return at
    cut = limit
    amp = text.rfind("&", max(0, cut - 5), cut)
    if amp > 0 and ";" not in text[amp:cut]:
        cut = amp
    return cut


def app_manifest(public_base_url: str) -> dict[str, Any]:
    """A Slack app manifest for Threadline: bot user, DM tab, events at our public URL, bot scopes."""
    base = public_base_url.strip().rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ValueError("the public base URL must start with https://")
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": "Threadline",
            "description": "Customer support that remembers you on every channel.",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": "Threadline", "always_online": True},
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {
                "request_url": base + EVENTS_PATH,
                "bot_events": list(BOT_EVENTS),
            },
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


class SlackAdapter:
    """The Slack ``ChannelAdapter``. Builds no client and does no I/O until the first ``send``."""

    name = "slack"
    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    def __init__(
        self,
        settings: SlackSettings,
        *,
        normalize: Callable[[str], Address],
        pacer: ChannelPacer | None = None,
        rate_limit_retries: int = 1,
        max_rate_limit_wait: float = 10.0,
        server_error_retries: int = 1,
        retry_interval: RetryIntervalCalculator | None = None,
        timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._normalize = normalize
        self._pacer = pacer if pacer is not None else ChannelPacer()
        self._rate_limit_retries = rate_limit_retries
        self._max_rate_limit_wait = max_rate_limit_wait
        self._server_error_retries = server_error_retries
        self._retry_interval = retry_interval
        self._timeout = timeout
        secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        self._verifier = SignatureVerifier(secret, clock or Clock()) if secret.strip() else None
        self._client: AsyncWebClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._own_user_ids: set[str] = set()  # our bot user, once auth.test or a post told us

    def __repr__(self) -> str:
        return f"SlackAdapter(api_base_url={self._settings.api_base_url!r})"

    # ----- inbound ----------------------------------------------------------------------------

    async def verify(self, request: WebhookRequest) -> None:
        if self._verifier is None:
            raise VerificationFailed("the Slack signing secret is not configured", status=401)
        timestamp = request.header("x-slack-request-timestamp")
        if not timestamp or not request.header("x-slack-signature"):
            raise VerificationFailed("Slack signature headers missing", status=401)
        try:
            skew = abs(self._verifier.clock.now() - int(timestamp))
            valid = self._verifier.is_valid_request(request.body, request.headers)
        except (ValueError, OverflowError):  # a non-numeric timestamp, or a body that is not UTF-8
            raise VerificationFailed("unreadable Slack signature", status=401) from None
        if skew > SIGNATURE_WINDOW_SECONDS:
            raise VerificationFailed("stale Slack request timestamp", status=401)
        if not valid:
            raise VerificationFailed("wrong Slack signature", status=401)

    async def parse(self, request: WebhookRequest) -> Parsed:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
            raise BadRequest("Slack body is not JSON", status=400) from None
        if not isinstance(payload, dict):
            raise BadRequest("Slack body is not a JSON object", status=400)
        kind = payload.get("type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise BadRequest("url_verification without a challenge", status=400)
            return Parsed(reply=WebhookReply(body=challenge.encode(), content_type="text/plain"))
        if kind != "event_callback":
            if kind == "app_rate_limited":
                log.warning("Slack is rate-limiting our event deliveries (app_rate_limited)")
            else:
                log.debug("Slack envelope type %r ignored", kind)
            return Parsed()
        message = self._message(payload, request)
        return Parsed(messages=[message] if message is not None else [])

    def _message(self, payload: dict[str, Any], request: WebhookRequest) -> InboundMessage | None:
        event = payload.get("event")
        event_id = payload.get("event_id")
        if not isinstance(event, dict) or not isinstance(event_id, str) or not event_id:
            raise BadRequest("event_callback without an event or event_id", status=400)
        event_type = event.get("type")
        if not isinstance(event_type, str) or not isinstance(event.get("subtype"), str | None):
            raise BadRequest("Slack event with a malformed type or subtype", status=400)
        if event_type not in _EVENT_TYPES:
            log.debug("Slack event %s of type %r ignored", event_id, event_type)
            return None
        own_ids = self._own_user_ids | _bot_authorizations(payload)
        user = event.get("user")
        noise = _noise_reason(event, user, own_ids)
        if noise is not None:
            log.debug("Slack event %s dropped: %s", event_id, noise)
            return None
        assert isinstance(user, str)  # _noise_reason drops events without a user
        channel, ts = event.get("channel"), event.get("ts")
        if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
            raise BadRequest("Slack message event without channel or ts", status=422)
        text = event.get("text")
        assert isinstance(text, str)
        if event_type == "message" and event.get("channel_type") != "im" and _mentions(text, own_ids):
            # the app_mention event for the same message carries it; answering both would reply twice
            log.debug("Slack event %s dropped: channel message that mentions us", event_id)
            return None
        text = _strip_mentions(text, own_ids)
        if not text:
            log.debug("Slack event %s dropped: nothing but a mention", event_id)
            return None
        team = event.get("user_team") or payload.get("team_id")
        if not isinstance(team, str) or not team:
            raise BadRequest("Slack event without a team id", status=422)
        try:
            sender = self._normalize(f"slack:{team}:{user}")
        except InvalidAddress:
            raise BadRequest("Slack event with an unusable team or user id", status=422) from None
        thread_ts = event.get("thread_ts")
        return InboundMessage(
            channel=self.name,
            provider_message_id=event_id,
            sender=sender,
            text=text,
            reply_target={"channel": channel, "thread_ts": thread_ts if isinstance(thread_ts, str) else ts},
            received_at=_received_at(payload, ts),
            sender_assurance=Assurance.PLATFORM_ATTESTED,  # Slack signs the event and names the member
            # a direct message only: a channel message or an app_mention is read by the whole channel
            private=event_type == "message" and event.get("channel_type") == "im",
            extras=_extras(payload, event, request),
        )

    # ----- outbound ---------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> Delivery:
        channel, thread_ts = _target(message)
        parts = split_text(escape_text(message.text))
        if not parts:
            raise PermanentDeliveryError("empty reply: Slack refuses a message without text")
        client = self._get_client()
        sent: list[str] = []
        for part in parts[message.parts_sent :]:
            await self._pacer.wait(channel)
            try:
                response = await client.chat_postMessage(channel=channel, text=part, thread_ts=thread_ts)
            except SlackApiError as exc:
                raise _api_error(exc, tuple(sent)) from None  # its text repeats the response body
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientDeliveryError(
                    f"Slack unreachable: {type(exc).__name__}", sent_ids=tuple(sent)
                ) from exc
            except SlackClientError as exc:
                raise TransientDeliveryError(
                    f"Slack client error: {type(exc).__name__}", sent_ids=tuple(sent)
                ) from None
            ts = response.get("ts")
            posted = response.get("message")
            if isinstance(posted, dict) and isinstance(posted.get("user"), str):
                self._own_user_ids.add(posted["user"])
            if not isinstance(ts, str) or not ts:
                log.warning("Slack accepted a message to %s without returning its ts", channel)
                ts = ""
            sent.append(ts)
        log.debug("Slack reply sent to %s in %d part(s)", channel, len(sent))
        return Delivery(provider_message_ids=tuple(sent))

    async def attested_handles(self, sender: Address) -> list[Address]:
        """The sender's profile email, when its workspace is in ``trusted_teams`` (``core.ports.Attestor``).

        Calls ``users.info`` (scope ``users:read.email``). Any failure, a missing or unreadable email,
        or an untrusted workspace gives ``[]``: attestation is a bonus, never a reason to fail a message.
        """
        team, _, user = sender.handle.partition(":")
        if sender.channel != "slack" or not user or team.upper() not in self._settings.trusted_teams:
            return []
        try:
            response = await self._get_client().users_info(user=user)
            profile = (response.get("user") or {}).get("profile") or {}
            email = profile.get("email")
            return [self._normalize(f"email:{email}")] if isinstance(email, str) and email else []
        except (SlackApiError, SlackClientError, aiohttp.ClientError, TimeoutError, InvalidAddress) as exc:
            log.info("Slack profile of a trusted-workspace sender not attested: %s", type(exc).__name__)
            return []

    async def auth_test(self) -> dict[str, str]:
        """Call ``auth.test``: who our token is (team, bot user). Remembers the bot user id."""
        try:
            response = await self._get_client().auth_test()
        except SlackApiError as exc:
            raise _api_error(exc, ()) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientDeliveryError(f"Slack unreachable: {type(exc).__name__}") from exc
        info = {
            k: str(response.get(k))
            for k in ("team_id", "team", "user_id", "bot_id", "url")
            if response.get(k) is not None
        }
        if "user_id" in info:
            self._own_user_ids.add(info["user_id"])
        return info

    def _get_client(self) -> AsyncWebClient:
        if self._client is None:
            token = self._settings.bot_token.get_secret_value() if self._settings.bot_token else None
            interval = self._retry_interval or default_interval_calculator
            handlers: list[AsyncRetryHandler] = [
                # what the SDK does by default: one retry on a reset or refused connection
                AsyncConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
                _BoundedRateLimitRetryHandler(self._rate_limit_retries, self._max_rate_limit_wait),
                AsyncServerErrorRetryHandler(
                    max_retry_count=self._server_error_retries, interval_calculator=interval
                ),
            ]
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._client = AsyncWebClient(
                token=token,
                base_url=self._settings.api_base_url,
                session=self._session,
                logger=_SDK_LOG,
                retry_handlers=handlers,
            )
        return self._client

    async def aclose(self) -> None:
        session, self._session, self._client = self._session, None, None
        if session is not None and not session.closed:
            await session.close()


def _bot_authorizations(payload: Mapping[str, Any]) -> set[str]:
    """Our bot user's id as the envelope's ``authorizations`` give it (the entries with ``is_bot``)."""
    found: set[str] = set()
    authorizations = payload.get("authorizations")
    if isinstance(authorizations, list):
        for item in authorizations:
            if isinstance(item, dict) and item.get("is_bot") is True and isinstance(item.get("user_id"), str):
                found.add(item["user_id"])
    return found


def _noise_reason(event: Mapping[str, Any], user: object, own_ids: set[str]) -> str | None:
    if event.get("bot_id"):
        return "bot message"
    subtype = event.get("subtype")
    if subtype and subtype not in _PERSON_SUBTYPES:
        return f"subtype {subtype}"
    if not isinstance(user, str) or not user:
        return "no user"
    if user in own_ids:
        return "our own message"
    text = event.get("text")
    if not isinstance(text, str) or not text.strip():
        return "no text"
    return None


def _mentions(text: str, user_ids: set[str]) -> bool:
    return any(f"<@{uid}>" in text or f"<@{uid}|" in text for uid in user_ids)


def _strip_mentions(text: str, user_ids: set[str]) -> str:
    """The text without mentions of our own bot user (``<@U…>`` / ``<@U…|name>``).

    The label stops at the next ``<`` as well as at ``>`` (Slack escapes both in text as ``&lt;`` and
    ``&gt;``): a mention left open would otherwise be searched to the end of the text from every one of
    its repeats, quadratic time on the event loop for a 40,000-character message.
    """
    for uid in user_ids:
        text = re.sub(rf"<@{re.escape(uid)}(?:\|[^<>]*+)?>[ \t]?", "", text)
    return text.strip()


def _received_at(payload: Mapping[str, Any], ts: str) -> datetime:
    candidates: tuple[Any, ...] = (payload.get("event_time"), ts)
    for value in candidates:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if 0 < seconds < 1e11:
            return datetime.fromtimestamp(seconds, tz=UTC)
    return datetime.now(UTC)


def _extras(payload: Mapping[str, Any], event: Mapping[str, Any], request: WebhookRequest) -> dict[str, Any]:
    extras: dict[str, Any] = {"event_type": event.get("type")}
    for key in ("team_id", "api_app_id", "enterprise_id", "event_time", "is_ext_shared_channel"):
        if payload.get(key) is not None:
            extras[key] = payload[key]
    for key in ("channel_type", "ts", "event_ts", "thread_ts", "subtype", "client_msg_id", "user_team"):
        if isinstance(event.get(key), str):
            extras[key] = event[key]
    files = event.get("files")
    if isinstance(files, list):
        extras["file_ids"] = [f["id"] for f in files if isinstance(f, dict) and isinstance(f.get("id"), str)]
    retry_num = request.header("x-slack-retry-num")
    if retry_num is not None:
        # isdigit() alone also takes '²' (latin-1 header bytes) and int() refuses it, or a 5000-digit run
        digits = retry_num.isascii() and retry_num.isdigit() and len(retry_num) <= 9
        extras["retry_num"] = int(retry_num) if digits else retry_num
    retry_reason = request.header("x-slack-retry-reason")
    if retry_reason is not None:
        extras["retry_reason"] = retry_reason
    return extras


def _target(message: OutboundMessage) -> tuple[str, str | None]:
    """(channel, thread_ts) for ``chat.postMessage``; without a channel, the user's DM with the app."""
    target = message.reply_target
    channel = target.get("channel")
    if not isinstance(channel, str) or not channel:
        # chat.postMessage accepts a user id as channel: the message lands in the app's DM with them
        _, _, user = message.recipient.handle.rpartition(":")
        if message.recipient.channel != "slack" or not user:
            raise PermanentDeliveryError("no Slack channel to reply in")
        channel = user
    thread_ts = target.get("thread_ts")
    return channel, thread_ts if isinstance(thread_ts, str) and thread_ts else None


def _api_error(exc: SlackApiError, sent: tuple[str, ...]) -> TransientDeliveryError | PermanentDeliveryError:
    """Map a failed Web API call. Messages name the error code and status, never the response body."""
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    code = error if isinstance(error, str) else None
    what = f"Slack API error {code or 'unknown'} (HTTP {status})"
    if status == 429 or code == "ratelimited":
        return TransientDeliveryError(what, retry_after=_retry_after(response), sent_ids=sent)
    if code in _PERMANENT_ERRORS:
        return PermanentDeliveryError(what, sent_ids=sent)
    if status >= 500 or code in _TRANSIENT_ERRORS:
        return TransientDeliveryError(what, retry_after=_retry_after(response), sent_ids=sent)
    if code is None and status != 200 and 400 <= status < 500:
        return PermanentDeliveryError(what, sent_ids=sent)
    if code is None:
        return TransientDeliveryError(what, sent_ids=sent)
    return PermanentDeliveryError(what, sent_ids=sent)  # an ok:false on HTTP 200 is a deterministic refusal


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and seconds >= 0 else None
