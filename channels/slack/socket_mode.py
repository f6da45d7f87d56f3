"""Slack over Socket Mode (``THREADLINE_SLACK__APP_TOKEN``): slack-bolt's ``AsyncApp`` behind its
``AsyncSocketModeHandler``. The hub dials out to Slack, so it needs no public URL and no signing secret.

How an envelope travels, and why it is held this way:

- slack_sdk's aiohttp ``SocketModeClient`` (aiohttp is already ours: the Web API client runs on it) asks
  ``apps.connections.open`` with the app-level token for a ``wss://`` URL, connects, answers pings, and
  connects anew when Slack sends ``disconnect`` (``refresh_requested``, ``warning``, ...) or the socket
  drops. Slack spreads envelopes over up to 10 connections: every ``serve`` process may hold one.
- The handler acknowledges an envelope (``{"envelope_id": ...}``) only when bolt answers 200. The app runs
  with ``process_before_response=True``, so bolt answers after our listener returned, and the listener
  returns only once every message of the envelope is committed through ``accept``. When that fails the
  listener raises, bolt answers 500 and nothing is acknowledged: Slack redelivers (``retry_attempt`` 1-3).
- A redelivered envelope (the same ``event_id``, ``retry_attempt`` > 0, on this connection or another
  process's) meets the inbox's unique key: a no-op, acknowledged.
- Events are read by ``SlackAdapter.parse_event``, button presses (``interactive`` envelopes of type
  ``block_actions``) by ``SlackAdapter.parse_interaction``: the same code as the webhooks. An event that
  cannot be read is acknowledged (a redelivery would carry the same bytes) and logged by its id.
- bolt's own authorization is replaced by a local ``authorize``: with a token, bolt would call
  ``auth.test`` on the first event and, when Slack answered an error (``ratelimited``, say), answer 200
  with a note for the user: an acknowledgement for an envelope that was never committed. The adapter
  drops our own messages itself (the envelope's ``authorizations``, the bot user the send path learned).
- ``stop`` refuses new envelopes (no acknowledgement: Slack redelivers them to a live connection), lets
  the ones being committed finish and acknowledge, then closes the socket.
- slack_sdk's socket client logs every frame it receives (message text) at DEBUG, bolt its requests: both
  loggers are pinned at INFO, as the Web API client's is.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import AcceptFn, Parsed
from core.errors import BadRequest, ConfigError
from core.settings import SlackSettings, env_name

log = logging.getLogger(__name__)

# pinned above DEBUG: at DEBUG these log whole frames and requests, message text included
_SDK_LOG = logging.getLogger(f"{__name__}.sdk")
_SDK_LOG.setLevel(logging.INFO)

# apps.connections.open errors that say the app token is wrong: start-up is refused, naming the setting
_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "not_allowed_token_type", "token_revoked", "account_inactive"}
)
DRAIN_SECONDS = 5.0  # how long ``stop`` waits for envelopes being committed to finish and be acknowledged
CLOSE_SECONDS = 5.0  # how long ``stop`` waits for the socket's closing handshake

EventParser = Callable[..., Parsed]  # SlackAdapter.parse_event(payload, retry_num=..., retry_reason=...)
InteractionParser = Callable[[dict[str, Any]], Parsed]  # SlackAdapter.parse_interaction(payload)


class _NotCommitted(Exception):
    """Raised by a listener when an envelope's messages were not committed: bolt answers 500, no ack."""


class SocketModeReceiver:
    """One Socket Mode connection of this process, from ``start`` until ``stop``."""

    def __init__(
        self,
        settings: SlackSettings,
        *,
        parse_event: EventParser,
        parse_interaction: InteractionParser,
        accept: AcceptFn,
        ping_interval: float = 10.0,
    ) -> None:
        if settings.app_token is None or not settings.app_token.get_secret_value():
            raise ConfigError(
                f"{env_name('slack', 'app_token')} is not set", setting=env_name("slack", "app_token")
            )
        self._settings = settings
        self._parse_event = parse_event
        self._parse_interaction = parse_interaction
        self._accept = accept
        self._ping_interval = ping_interval
        self._handler: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __repr__(self) -> str:
        return f"SocketModeReceiver(api_base_url={self._settings.api_base_url!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._handler is not None

    # ----- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the app and handler (in the running loop: the client starts tasks), open the first
        connection's URL here, then connect in the background. ``ConfigError`` naming
        ``THREADLINE_SLACK__APP_TOKEN`` when Slack refuses the token; any other failure is retried by the
        client (a Slack outage at start-up does not stop the hub)."""
        if self._handler is not None:
            raise RuntimeError("Slack Socket Mode is already running")
        assert self._settings.app_token is not None  # __init__ refuses a missing one
        app = self._app()
        handler = _Handler(
            app,
            app_token=self._settings.app_token.get_secret_value(),
            logger=_SDK_LOG,
            ping_interval=self._ping_interval,
        )
        handler.track = self._tracked
        client: SocketModeClient = handler.client
        try:
            opened = await client.web_client.apps_connections_open(app_token=handler.app_token)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in _REFUSED:
                await client.close()  # type: ignore[no-untyped-call]
                setting = env_name("slack", "app_token")
                raise ConfigError(
                    f"{setting} was refused by Slack ({error}): it must be the app-level token (xapp-...) "
                    "of this app, with the connections:write scope",
                    setting=setting,
                ) from None
            log.warning("Slack Socket Mode: apps.connections.open failed (%s); retrying", error)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack Socket Mode: Slack unreachable (%s); retrying", type(exc).__name__)
        else:
            url = opened.get("url")
            client.wss_uri = url if isinstance(url, str) else None
        self._handler = handler
        self._stopping = False
        # connect() retries by itself (every ping_interval) until it holds a connection or is closed
        self._connecting = asyncio.create_task(
            client.connect(),  # type: ignore[no-untyped-call]
            name="slack:socket-mode:connect",
        )
        log.info("Slack Socket Mode started")

    async def stop(self) -> None:
        """Refuse new envelopes, let those being committed finish and be acknowledged, close the socket."""
        handler, self._handler = self._handler, None
        if handler is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), DRAIN_SECONDS)
        except TimeoutError:
            log.warning("Slack Socket Mode: %d envelope(s) still being committed at stop", self._in_flight)
        client: SocketModeClient = handler.client
        try:
            await asyncio.wait_for(client.close(), CLOSE_SECONDS)  # type: ignore[no-untyped-call]
        except TimeoutError:
            log.warning("Slack Socket Mode: the socket did not close in time; dropped")
        finally:
            client.closed = True
            if not client.aiohttp_client_session.closed:
                await client.aiohttp_client_session.close()
            for task in (self._connecting, client.message_processor, client.current_session_monitor):
                if task is not None and not task.done():
                    task.cancel()
            if client.message_receiver is not None and not client.message_receiver.done():
                client.message_receiver.cancel()
            self._connecting = None
        log.info("Slack Socket Mode stopped")

    # ----- the bolt app ---------------------------------------------------------------------------

    def _app(self) -> AsyncApp:
        bot_token = self._settings.bot_token.get_secret_value() if self._settings.bot_token else None

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            # local: no auth.test on the acknowledgement path (see the module docstring)
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=bot_token)

        app = AsyncApp(
            name="threadline",
            logger=_SDK_LOG,
            # the Web API client of the socket (apps.connections.open), at api_base_url; the token is the
            # authorize result's (a client token would bring back bolt's auth.test authorization)
            client=AsyncWebClient(base_url=self._settings.api_base_url, logger=_SDK_LOG),
            authorize=authorize,
            process_before_response=True,  # acknowledge after the listener, i.e. after the commit
            request_verification_enabled=False,  # the socket is authenticated by the app-level token
            ssl_check_enabled=False,
            url_verification_enabled=False,
            ignoring_self_events_enabled=False,  # the adapter drops our own messages (parse_event)
        )
        app.event(re.compile(".*"))(self._on_event)
        app.action(re.compile(".*"))(self._on_action)
        app.error(self._on_error)
        return app

    async def _on_event(self, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        """An ``events_api`` envelope: commit its message (if any); bolt acknowledges when this returns."""
        event_id = body.get("event_id")
        if self._stopping:
            raise _NotCommitted("stopping")
        try:
            parsed = self._parse_event(
                body,
                retry_num=_header(request, "x-slack-retry-num"),
                retry_reason=_header(request, "x-slack-retry-reason"),
            )
        except BadRequest as exc:
            log.warning("Slack Socket Mode event %s unreadable (%s); acknowledged", event_id, exc)
            return
        await self._commit(parsed, f"event {event_id}")

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """An ``interactive`` envelope: a press of one of our buttons is committed, then acknowledged."""
        if self._stopping:
            raise _NotCommitted("stopping")
        if body.get("type") == "block_actions":
            try:
                parsed = self._parse_interaction(body)
            except BadRequest as exc:
                log.warning("Slack Socket Mode interaction unreadable (%s); acknowledged", exc)
            else:
                await self._commit(parsed, "interaction")
        await ack()  # actions are not acknowledged by bolt itself

    async def _commit(self, parsed: Parsed, what: str) -> None:
        for message in parsed.messages:
            try:
                accepted = await self._accept(message)
            except Exception as exc:
                log.warning(
                    "Slack Socket Mode %s not committed (%s); not acknowledged, Slack redelivers",
                    what,
                    type(exc).__name__,
                )
                raise _NotCommitted(type(exc).__name__) from None
            log.debug("Slack Socket Mode %s committed as inbox %s", what, accepted.inbox_id)

    async def _on_error(self, error: Exception) -> None:
        """bolt's error hook: the 500 stays (no acknowledgement); only the exception's type is logged (the
        default hook logs its text, which for a database error holds the message's text)."""
        if not isinstance(error, _NotCommitted):
            log.warning("Slack Socket Mode listener failed (%s); not acknowledged", type(error).__name__)

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()


class _Handler(AsyncSocketModeHandler):
    """bolt's handler, counting each envelope from its arrival until its acknowledgement was sent (or not),
    so that ``stop`` can let them finish."""

    track: Callable[[], Any]

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self.track():
            await super().handle(client, req)


def _header(request: AsyncBoltRequest, name: str) -> str | None:
    values = request.headers.get(name)
    return values[0] if values else None
