"""A fake Slack Socket Mode server: ``apps.connections.open`` on ``FakeSlackAPI`` and a websocket server on
127.0.0.1 that speaks Slack's protocol to slack_sdk's real ``SocketModeClient``.

In a test::

    with FakeSlackAPI() as api, FakeSocketMode(api) as socket:
        settings = SlackSettings(bot_token=api.token, app_token=socket.app_token, api_base_url=api.api_url)
        ...
        socket.send_event(payload)               # an events_api envelope
        await socket.wait_for(lambda: socket.acked(event_id))

The protocol, as Slack's Socket Mode documents it: ``apps.connections.open`` (the app-level token,
``xapp-``, as a bearer token) answers ``{"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=..."}``; the
ticket is good for one connection. On connecting, the server sends ``{"type": "hello", ...}``, then
envelopes ``{"envelope_id", "type": "events_api" | "interactive", "payload", "accepts_response_payload",
"retry_attempt", "retry_reason"}``; the app answers each with ``{"envelope_id": ...}``. A ``disconnect``
(``reason``: ``refresh_requested``, ``warning``, ...) asks the app to open a new connection; the old one
is closed after ``disconnect_grace`` seconds if the app has not closed it.

Hostile, as the real one is:

- an envelope not acknowledged when its connection goes away is delivered again on the next connection,
  with ``retry_attempt`` + 1, ``retry_reason: "timeout"`` and a new ``envelope_id`` (at most 3 retries);
- ``send_event(..., duplicate=True)`` sends a second copy at once with ``retry_attempt: 1``;
- ``disconnect()`` sends ``disconnect`` and later closes the socket; ``drop()`` cuts every connection
  without a closing handshake;
- an acknowledgement counts only on the connection the envelope went out on.

Observations: ``acks`` (in arrival order), ``deliveries`` (every envelope sent), ``connections`` (opened);
``on_ack`` is called in the server's thread when an acknowledgement arrives, before it is recorded (a test
looks at the store there: was the message committed before the ack?).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import WSMsgType, web

from tests.fakes.slack_api import FakeSlackAPI

DEFAULT_APP_TOKEN = "xapp-1-A0FAKE0001-1234567890-0123456789abcdef0123456789abcdef"
MAX_RETRIES = 3
HOST = "127.0.0.1"


@dataclass(slots=True, kw_only=True)
class Envelope:
    """One delivery of an envelope (a retry is another ``Envelope`` with the same ``key``)."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    retry_attempt: int
    retry_reason: str
    key: str  # what stays the same across retries: the event_id, or a made-up id for interactions
    connection: int = 0  # the connection it went out on (0: not yet sent)

    def frame(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.type != "events_api",
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
        }


@dataclass(frozen=True, slots=True)
class Ack:
    envelope_id: str
    key: str
    connection: int
    payload: dict[str, Any] | None = None


@dataclass
class _Connection:
    number: int
    ws: web.WebSocketResponse
    request: web.Request
    unacked: dict[str, Envelope] = field(default_factory=dict)


class FakeSocketMode:
    """The Socket Mode side of ``api`` (a started or not-yet-started ``FakeSlackAPI``)."""

    def __init__(
        self, api: FakeSlackAPI, *, app_token: str = DEFAULT_APP_TOKEN, disconnect_grace: float = 0.5
    ) -> None:
        self.api = api
        self.app_token = app_token
        self.disconnect_grace = disconnect_grace
        self.on_ack: Callable[[Envelope], None] | None = None
        self.port = 0
        self._lock = threading.Lock()
        self._tickets: set[str] = set()
        self._ids = itertools.count(1)
        self._connections: dict[int, _Connection] = {}
        self._waiting: list[Envelope] = []  # to send on the next connection
        self._given_up: list[Envelope] = []
        self.acks: list[Ack] = []
        self.deliveries: list[Envelope] = []
        self.connections = 0
        self.stray_acks: list[dict[str, Any]] = []  # acks for an envelope not sent on that connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        api.socket_mode = self

    # ----- apps.connections.open (called by FakeSlackAPI in its own thread) -----------------------

    def open_connection(self, token: str) -> dict[str, Any]:
        if token.startswith(("xoxb-", "xoxp-")):
            return {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        ticket = secrets.token_hex(8)
        with self._lock:
            self._tickets.add(ticket)
        return {"ok": True, "url": f"ws://{HOST}:{self.port}/link/?ticket={ticket}&app_id=A0FAKE0001"}

    # ----- life cycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="FakeSocketMode", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeSocketMode did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    async def _shutdown(self) -> None:
        for conn in list(self._connections.values()):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- the test's side ----------------------------------------------------------------------------

    def send_event(self, payload: dict[str, Any], *, duplicate: bool = False) -> str:
        """Send an ``events_api`` envelope (now, or on the next connection); returns its first envelope id."""
        key = str(payload.get("event_id") or f"event-{next(self._ids)}")
        return self._send("events_api", payload, key, duplicate=duplicate)

    def send_interactive(self, payload: dict[str, Any], *, key: str | None = None) -> str:
        """Send an ``interactive`` envelope; ``key`` names it in ``acks`` (default ``interactive-N``)."""
        return self._send("interactive", payload, key or f"interactive-{next(self._ids)}", duplicate=False)

    def _send(self, kind: str, payload: dict[str, Any], key: str, *, duplicate: bool) -> str:
        first = self._envelope(kind, payload, key, 0, "")
        self._call(self._deliver(first))
        if duplicate:
            self._call(self._deliver(self._envelope(kind, payload, key, 1, "timeout")))
        return first.envelope_id

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """``disconnect`` on every open connection; each is closed ``disconnect_grace`` s later."""
        self._call(self._disconnect(reason))

    def drop(self) -> None:
        """Cut every connection: no closing handshake (a load balancer restart, a network blip)."""
        self._call(self._drop())

    def acked(self, key: str) -> bool:
        with self._lock:
            return any(ack.key == key for ack in self.acks)

    def ack_count(self, key: str) -> int:
        with self._lock:
            return sum(1 for ack in self.acks if ack.key == key)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; connections {self.connections}, acks {len(self.acks)}, "
                    f"deliveries {len(self.deliveries)}"
                )
            await asyncio.sleep(0.02)

    def _call(self, coro: Any) -> None:
        assert self._loop is not None, "FakeSocketMode is not started"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _envelope(self, kind: str, payload: dict[str, Any], key: str, attempt: int, reason: str) -> Envelope:
        return Envelope(
            envelope_id=f"env-{next(self._ids):06d}-{secrets.token_hex(4)}",
            type=kind,
            payload=payload,
            retry_attempt=attempt,
            retry_reason=reason,
            key=key,
        )

    # ----- the server (its own thread and loop) -------------------------------------------------------

    async def _deliver(self, envelope: Envelope) -> None:
        with self._lock:
            live = [c for c in self._connections.values() if not c.ws.closed]
        if not live:
            self._waiting.append(envelope)
            return
        conn = live[-1]  # the newest: a connection that got ``disconnect`` is being replaced
        envelope.connection = conn.number
        conn.unacked[envelope.envelope_id] = envelope
        with self._lock:
            self.deliveries.append(envelope)
        with contextlib.suppress(ConnectionError, RuntimeError):  # going away: redelivered on the next one
            await conn.ws.send_str(json.dumps(envelope.frame()))

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            self.connections += 1
            conn = _Connection(self.connections, ws, request)
            self._connections[conn.number] = conn
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._connections),
                    "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0FAKE0001"},
                }
            )
        )
        waiting, self._waiting = self._waiting, []
        for envelope in waiting:
            await self._deliver(envelope)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._ack(conn, message.data)
        finally:
            with self._lock:
                self._connections.pop(conn.number, None)
            await self._redeliver(conn)
        return ws

    def _ack(self, conn: _Connection, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            return
        envelope = conn.unacked.pop(str(frame.get("envelope_id")), None) if isinstance(frame, dict) else None
        if envelope is None:
            with self._lock:
                self.stray_acks.append(frame)
            return
        if self.on_ack is not None:
            self.on_ack(envelope)
        with self._lock:
            self.acks.append(Ack(envelope.envelope_id, envelope.key, conn.number, frame.get("payload")))

    async def _redeliver(self, conn: _Connection) -> None:
        """What ``conn`` left unacknowledged goes out again (on a live connection, or the next one)."""
        left, conn.unacked = list(conn.unacked.values()), {}
        for old in left:
            if old.retry_attempt >= MAX_RETRIES:
                self._given_up.append(old)
                continue
            await self._deliver(
                self._envelope(old.type, old.payload, old.key, old.retry_attempt + 1, "timeout")
            )

    async def _disconnect(self, reason: str) -> None:
        with self._lock:
            conns = list(self._connections.values())
        frame = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}})
        for conn in conns:
            if not conn.ws.closed:
                await conn.ws.send_str(frame)

        async def close_later(ws: web.WebSocketResponse) -> None:
            await asyncio.sleep(self.disconnect_grace)
            if not ws.closed:
                await ws.close(code=1001, message=b"disconnect")

        for conn in conns:
            asyncio.get_running_loop().create_task(close_later(conn.ws))

    async def _drop(self) -> None:
        with self._lock:
            conns = list(self._connections.values())
        for conn in conns:
            if conn.request.transport is not None:
                conn.request.transport.abort()
