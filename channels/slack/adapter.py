"""``SlackAdapter``: the Slack ``ChannelAdapter`` (see ``channels.slack`` for what each step does).

Verification, parsing, sending, the profile attestation and the lazily built ``AsyncWebClient`` live
here; an event's customer message is ``channels.slack.event_message`` (what an event means
``channels.slack.events``), shaping a reply ``channels.slack.text``, pacing ``channels.slack.pacing`` and
the Web API's failures ``channels.slack.api_errors``.

The channel pacing and the attestation mark (a sender's profile is asked about once a day, by one
process) come from ``core.ports.SharedLimits``: this process's own until ``bind_limits`` hands in the
database's, which every process on it shares.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler, default_interval_calculator
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import DEFAULT_MAX_BODY_BYTES, AcceptFn, Parsed, WebhookReply, WebhookRequest
from channels.limits import LocalLimits
from channels.slack.api_errors import _api_error, _BoundedRateLimitRetryHandler
from channels.slack.event_message import event_message
from channels.slack.files import SlackFiles
from channels.slack.interactions import blocks_for, button_press, interaction_payload
from channels.slack.pacing import ChannelPacer
from channels.slack.text import escape_text, split_text
from channels.slack.upload import upload_files
from core.errors import (
    BadRequest,
    InvalidAddress,
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
from core.ports import FileSource, SharedLimits
from core.settings import SlackSettings

if TYPE_CHECKING:
    from channels.slack.socket_mode import SocketModeReceiver

log = logging.getLogger(__name__)

# slack_sdk logs whole request bodies (message text) at DEBUG whenever its logger's own level is
# NOTSET or DEBUG, whatever the handlers do; its client gets a logger pinned above DEBUG.
_SDK_LOG = logging.getLogger(f"{__name__}.sdk")
_SDK_LOG.setLevel(logging.INFO)

SIGNATURE_WINDOW_SECONDS = 300
INTERACTIVE_SUFFIX = "/interactive"  # the Interactivity Request URL: /webhooks/slack/interactive
# a sender's profile email is asked for once in this long, by whichever process sees them first
ATTEST_EVERY_SECONDS = 24 * 3600.0


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
        self._limits: SharedLimits = LocalLimits()
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
        self._socket: SocketModeReceiver | None = None  # Socket Mode, while the hub runs (app token set)
        self._outgoing: FileSource | None = None  # the reply's files (``bind_files``)
        self._files = SlackFiles(settings.bot_token, settings.api_base_url)  # files customers share

    def __repr__(self) -> str:
        return f"SlackAdapter(api_base_url={self._settings.api_base_url!r})"

    def bind_limits(self, limits: SharedLimits) -> None:
        """Pace channels and mark attested senders in ``limits`` (``core.ports.UsesSharedLimits``)."""
        self._limits = limits
        self._pacer.bind(limits)

    def bind_files(self, files: FileSource) -> None:
        """Read the files of replies from ``files`` (``core.ports.UsesFileSource``)."""
        self._outgoing = files

    # ----- inbound ----------------------------------------------------------------------------

    async def verify(self, request: WebhookRequest) -> None:
        if self._verifier is None:  # Socket Mode without a signing secret: no webhook door at all
            raise VerificationFailed("the Slack signing secret is not configured", status=404)
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
        if request.path.rstrip("/").endswith(INTERACTIVE_SUFFIX):  # a button press (form, ``payload=``)
            return self.parse_interaction(interaction_payload(request.body))
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
        return self.parse_event(
            payload,
            retry_num=request.header("x-slack-retry-num"),
            retry_reason=request.header("x-slack-retry-reason"),
        )

    def parse_event(
        self, payload: dict[str, Any], *, retry_num: str | None = None, retry_reason: str | None = None
    ) -> Parsed:
        """An authentic ``event_callback`` payload, from the webhook or a Socket Mode ``events_api``
        envelope: at most one message, keyed by ``event_id``. ``BadRequest`` when it cannot be read."""
        message = event_message(
            payload,
            own_user_ids=self._own_user_ids,
            normalize=self._normalize,
            channel_name=self.name,
            retry_num=retry_num,
            retry_reason=retry_reason,
        )
        return Parsed(messages=[message] if message is not None else [])

    def parse_interaction(self, payload: dict[str, Any]) -> Parsed:
        """An interaction payload (from the Interactivity Request URL or a Socket Mode ``interactive``
        envelope): a press of one of our buttons is a message (``channels.slack.interactions``)."""
        message = button_press(payload, normalize=self._normalize, channel_name=self.name)
        if message is None:
            log.debug("Slack interaction of type %r ignored", payload.get("type"))
        return Parsed(messages=[message] if message is not None else [])

    # ----- inbound: Socket Mode (``core.ports.InboundServer``) ---------------------------------------

    async def start_inbound(self, accept: AcceptFn) -> None:
        """With an app token, receive over Socket Mode (``channels.slack.socket_mode``); else nothing."""
        if self._socket is not None or not (
            self._settings.app_token and self._settings.app_token.get_secret_value()
        ):
            return
        from channels.slack.socket_mode import SocketModeReceiver  # slack-bolt is loaded only when used

        receiver = SocketModeReceiver(
            self._settings,
            parse_event=self.parse_event,
            parse_interaction=self.parse_interaction,
            accept=accept,
        )
        await receiver.start()
        self._socket = receiver

    async def stop_inbound(self) -> None:
        receiver, self._socket = self._socket, None
        if receiver is not None:
            await receiver.stop()

    # ----- outbound ---------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> Delivery:
        channel, thread_ts = _target(message)
        parts = split_text(escape_text(message.text)) if message.text.strip() or not message.files else []
        if not parts and not message.files:
            raise PermanentDeliveryError("empty reply: Slack refuses a message without text")
        client = self._get_client()
        sent: list[str] = []
        last = len(parts) - 1
        for index, part in enumerate(parts):
            if index < message.parts_sent:
                continue
            # the buttons go under the last part, the text in its sections (and in ``text`` for notifications)
            blocks = blocks_for(part, message.buttons) if message.buttons and index == last else None
            try:
                await self._pacer.wait(channel)
            except Exception as exc:  # the shared limits' store failed: later, keeping what went out
                raise TransientDeliveryError(
                    f"Slack pacing unavailable: {type(exc).__name__}", sent_ids=tuple(sent)
                ) from exc
            try:
                response = await client.chat_postMessage(
                    channel=channel, text=part, thread_ts=thread_ts, blocks=blocks
                )
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
        # the files after the text, one part each (channels.slack.upload)
        skip = max(0, message.parts_sent - len(parts))
        await upload_files(
            client,
            self._outgoing,
            channel=channel,
            thread_ts=thread_ts,
            todo=message.files[skip:],
            sent=sent,
        )
        log.debug("Slack reply sent to %s in %d part(s)", channel, len(sent))
        return Delivery(provider_message_ids=tuple(sent))

    async def attested_handles(self, sender: Address) -> list[Address]:
        """The sender's profile email, when its workspace is in ``trusted_teams`` (``core.ports.Attestor``).

        Calls ``users.info`` (scope ``users:read.email``) once per sender in ``ATTEST_EVERY_SECONDS``,
        whichever process asks first (a shared single-use mark; ``[]`` to the others meanwhile). Any
        failure, a missing or unreadable email, or an untrusted workspace gives ``[]``: attestation is a
        bonus, never a reason to fail a message.
        """
        team, _, user = sender.handle.partition(":")
        if sender.channel != "slack" or not user or team.upper() not in self._settings.trusted_teams:
            return []
        try:
            mark = await self._limits.reserve(
                f"slack:attested:{sender}", limit=1, window=ATTEST_EVERY_SECONDS
            )
        except Exception as exc:  # the shared limits' store failed: not asked this time
            log.info("Slack profile of a trusted-workspace sender not asked: %s", type(exc).__name__)
            return []
        if mark is None:
            log.debug("Slack profile of a trusted-workspace sender asked for recently; not asked again")
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

    async def fetch_media(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia:
        """A shared file (``core.ports.MediaFetcher``): ``url_private`` with the bot token, on Slack's file
        host only (``channels.slack.files``)."""
        return await self._files.fetch(ref, max_bytes=max_bytes)

    async def aclose(self) -> None:
        await self._files.aclose()
        session, self._session, self._client = self._session, None, None
        if session is not None and not session.closed:
            await session.close()


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
