"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that slack_sdk's ``AsyncWebClient`` talks to.

In a test::

    with FakeSlackAPI(token="xoxb-test") as fake:
        settings = SlackSettings(bot_token="xoxb-test", signing_secret="s", api_base_url=fake.api_url)
        ...
        fake.fail_ratelimited(retry_after=3)            # the next call answers 429
        assert fake.posted[-1].text == "hello"

``api_url`` is ``fake.url + "/api/"`` (slack_sdk wants the trailing slash).

Routes: ``POST /api/chat.postMessage`` (JSON body, as slack_sdk sends it, or form-encoded) and
``POST /api/auth.test``; any other method answers ``{"ok": false, "error": "unknown_method"}``.
The token is checked the way Slack does (``Authorization: Bearer``, or a ``token`` form field):
missing → ``not_authed``, wrong → ``invalid_auth``, both with HTTP 200.

Failure injection: ``push(...)`` queues forced answers, served first-in first-out, one per call
(``fail_ratelimited``, ``fail_server_error``, ``fail_error`` are shorthands); ``delay`` holds every
call that long first. Observations: ``calls`` (every request), ``posted`` (messages accepted).

Standalone: ``python -m tests.fakes.slack_api [--port N] [--token T]`` prints its API URL.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

MAX_TEXT = 40_000  # Slack refuses longer text with msg_too_long
DEFAULT_TOKEN = "xoxb-fake-token"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCall:
    """One request as the fake received it."""

    method: str
    content_type: str
    params: dict[str, Any]
    authorization: str | None
    answered_status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedMessage:
    """A message the fake accepted through chat.postMessage."""

    channel: str
    text: str
    thread_ts: str | None
    ts: str
    blocks: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedResponse:
    """A queued answer for the next call. ``body`` is sent as JSON unless it is ``str``/``bytes``."""

    status: int = 500
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    method: str | None = None  # only a call to this API method takes it (None: any)

    def to_response(self) -> Response:
        if isinstance(self.body, str | bytes):
            return Response(
                self.body, status_code=self.status, headers=dict(self.headers), media_type=self.content_type
            )
        body = self.body if self.body is not None else {"ok": False, "error": "fatal_error"}
        return JSONResponse(body, status_code=self.status, headers=dict(self.headers))


class FakeSlackAPI(LoopbackServer):
    """Fake ``slack.com/api`` for one bot token. Thread-safe: the server runs in its own thread."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        port: int = 0,
        team_id: str = "T123ABC456",
        bot_user_id: str = "UBOT0001",
        bot_id: str = "BBOT0001",
        channels: set[str] | None = None,
        delay: float = 0.0,
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.channels = channels  # None: every channel exists; else others are channel_not_found
        self.delay = delay
        self._lock = threading.Lock()
        self._calls: list[ApiCall] = []
        self._posted: list[PostedMessage] = []
        self._forced: collections.deque[ForcedResponse] = collections.deque()
        self._ts = itertools.count(1)
        # users.info: user id -> profile email (``known_users`` exist without an email)
        self.profile_emails: dict[str, str] = {}
        self.socket_mode: Any = None  # a FakeSocketMode answers apps.connections.open
        self.known_users: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
                Route("/api/auth.test", self._auth_test, methods=["POST", "GET"]),
                Route("/api/{method}", self._unknown, methods=["POST", "GET"]),
            ]
        )

    # ----- knobs and observations -----------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What ``SlackSettings.api_base_url`` takes: ``http://127.0.0.1:PORT/api/``."""
        return self.url + "/api/"

    def push(
        self,
        status: int = 500,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        method: str | None = None,
        times: int = 1,
    ) -> None:
        forced = ForcedResponse(
            status=status, body=body, headers=dict(headers or {}), content_type=content_type, method=method
        )
        with self._lock:
            self._forced.extend([forced] * times)

    def fail_ratelimited(self, retry_after: int | str = 1, *, times: int = 1) -> None:
        """Answer 429 with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``."""
        self.push(
            429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": str(retry_after)}, times=times
        )

    def fail_server_error(self, status: int = 500, *, times: int = 1) -> None:
        """Answer a 5xx with an HTML body, as a load balancer in front of Slack does."""
        self.push(
            status, "<html><body>Internal Server Error</body></html>", content_type="text/html", times=times
        )

    def fail_error(self, error: str, *, times: int = 1) -> None:
        """Answer HTTP 200 with ``{"ok": false, "error": error}`` (e.g. ``channel_not_found``)."""
        self.push(200, {"ok": False, "error": error}, times=times)

    @property
    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    @property
    def posted(self) -> list[PostedMessage]:
        with self._lock:
            return list(self._posted)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._posted.clear()
            self._forced.clear()

    # ----- the API ------------------------------------------------------------------------

    async def _post_message(self, request: Request) -> Response:
        return await self._handle(request, "chat.postMessage")

    async def _auth_test(self, request: Request) -> Response:
        return await self._handle(request, "auth.test")

    async def _unknown(self, request: Request) -> Response:
        return await self._handle(request, request.path_params["method"])

    async def _handle(self, request: Request, method: str) -> Response:
        params = await _read_params(request)
        authorization = request.headers.get("authorization")
        waited = 0.0
        while waited < self.delay and not self.closing.is_set():
            await asyncio.sleep(0.01)
            waited += 0.01
        with self._lock:
            forced = self._take_forced(method)
        if forced is not None:
            response = forced.to_response()
        else:
            response = JSONResponse(self._answer(method, params, authorization))
        with self._lock:
            self._calls.append(
                ApiCall(
                    method=method,
                    content_type=request.headers.get("content-type", ""),
                    params=params,
                    authorization=authorization,
                    answered_status=response.status_code,
                )
            )
        return response

    def _take_forced(self, method: str) -> ForcedResponse | None:
        for index, forced in enumerate(self._forced):
            if forced.method is None or forced.method == method:
                del self._forced[index]
                return forced
        return None

    def _answer(self, method: str, params: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        token = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        elif isinstance(params.get("token"), str):
            token = params["token"]
        if not token:
            return {"ok": False, "error": "not_authed"}
        if method == "apps.connections.open":  # the app-level token's method (tests/fakes/slack_socket.py)
            socket_mode = self.socket_mode
            return (
                socket_mode.open_connection(token) if socket_mode else {"ok": False, "error": "invalid_auth"}
            )
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake-team.slack.com/",
                "team": "Fake Team",
                "user": "threadline",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            return self._post(params)
        if method == "users.info":
            return self._user_info(params)
        return {"ok": False, "error": "unknown_method"}

    def _user_info(self, params: dict[str, Any]) -> dict[str, Any]:
        """``users.info`` as Slack answers it with ``users:read.email``: the profile email, if set."""
        user = params.get("user")
        with self._lock:
            email = self.profile_emails.get(user) if isinstance(user, str) else None
        if not isinstance(user, str) or (email is None and user not in self.known_users):
            return {"ok": False, "error": "user_not_found"}
        profile: dict[str, Any] = {"real_name": "Fake Person", "display_name": "fake"}
        if email is not None:
            profile["email"] = email
        return {
            "ok": True,
            "user": {"id": user, "team_id": self.team_id, "is_bot": False, "profile": profile},
        }

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        text = params.get("text")
        thread_ts = params.get("thread_ts")
        if not isinstance(channel, str) or not channel:
            return {"ok": False, "error": "channel_not_found"}
        if self.channels is not None and channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        if not isinstance(text, str) or not text.strip():
            return {"ok": False, "error": "no_text"}
        if len(text) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        blocks = params.get("blocks")
        if isinstance(blocks, str):  # a form-encoded call sends them as a JSON string
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return {"ok": False, "error": "invalid_blocks_format"}
        if blocks is not None and not _valid_blocks(blocks):
            return {"ok": False, "error": "invalid_blocks"}
        ts = f"1700000000.{next(self._ts):06d}"
        with self._lock:
            self._posted.append(
                PostedMessage(
                    channel=channel,
                    text=text,
                    thread_ts=thread_ts if isinstance(thread_ts, str) else None,
                    ts=ts,
                    blocks=blocks,
                )
            )
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": ts,
            "team": self.team_id,
        }
        if isinstance(thread_ts, str):
            message["thread_ts"] = thread_ts
        if blocks is not None:
            message["blocks"] = blocks
        return {"ok": True, "channel": channel, "ts": ts, "message": message}


def _valid_blocks(blocks: object) -> bool:
    """Block Kit's limits that matter for replies: at most 50 blocks, a section's text at most 3,000
    characters, an actions block of 1-25 elements, a button's label at most 75 and its value 2,000."""
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return False
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section":
            text = (block.get("text") or {}).get("text")
            if not isinstance(text, str) or not 0 < len(text) <= 3000:
                return False
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 25:
                return False
            for element in elements:
                label = (element.get("text") or {}).get("text") if isinstance(element, dict) else None
                value = element.get("value") if isinstance(element, dict) else None
                if not isinstance(label, str) or not 0 < len(label) <= 75:
                    return False
                if not isinstance(value, str) or len(value) > 2000:
                    return False
        else:
            return False
    return True


async def _read_params(request: Request) -> dict[str, Any]:
    """The call's arguments: JSON body, form body, or query string (what slack_sdk may send)."""
    params: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" and raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict):
            params.update(body)
    elif raw:
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        params.update({k: v[-1] for k, v in form.items()})
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Slack Web API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args()
    fake = FakeSlackAPI(port=args.port, token=args.token)
    fake.serve_forever(on_ready=lambda url: print(url + "/api/", flush=True))


if __name__ == "__main__":
    main()
