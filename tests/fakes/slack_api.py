"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that slack_sdk's ``AsyncWebClient`` talks to.

In a test::

    with FakeSlackAPI(token="xoxb-test") as fake:
        settings = SlackSettings(bot_token="xoxb-test", signing_secret="s", api_base_url=fake.api_url)
        ...
        fake.fail_ratelimited(retry_after=3)            # the next call answers 429
        assert fake.posted[-1].text == "hello"

``api_url`` is ``fake.url + "/api/"`` (slack_sdk wants the trailing slash).

Routes: ``POST /api/chat.postMessage`` (JSON body, as slack_sdk sends it, or form-encoded) and
``POST /api/auth.test``; the three steps of ``files_upload_v2`` (``files.getUploadURLExternal`` hands out
an upload URL on this server, ``POST /upload/v1/<file id>`` takes the bytes, ``files.completeUploadExternal``
shares the files into a channel, refusing a file whose bytes never arrived or whose length differs from
the one announced) and ``conversations.open``; any other method answers ``{"ok": false, "error":
"unknown_method"}``.
The token is checked the way Slack does (``Authorization: Bearer``, or a ``token`` form field):
missing → ``not_authed``, wrong → ``invalid_auth``, both with HTTP 200.

Files customers share: ``add_file(data, name=, mimetype=)`` keeps one and returns its file object as a
``file_share`` event carries it (``id``, ``name``, ``mimetype``, ``size``, ``url_private`` on this server:
``GET /files-pri/{team}-{file id}/{name}``). That route wants ``Authorization: Bearer <bot token>`` with
``files:read``; without it (no token, a wrong one, or ``files_scope = False``) it answers, as Slack does,
200 with its HTML sign-in page. ``push_file(status)`` forces the next file answer (a 502 once),
``redirect_file_to(url)`` makes it a redirect to another host; ``file_requests`` records each request's
path and whether it carried the right token.

Failure injection: ``push(...)`` queues forced answers, served first-in first-out, one per call
(``fail_ratelimited``, ``fail_server_error``, ``fail_error`` are shorthands); ``delay`` holds every
call that long first. Observations: ``calls`` (every request), ``posted`` (messages accepted),
``uploaded`` (files shared by ``completeUploadExternal``, with their bytes).

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
from starlette.responses import HTMLResponse, JSONResponse, Response
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
class FileRequest:
    """One request of the ``url_private`` route."""

    path: str
    authorized: bool  # the bot token, as a bearer token
    authorization_sent: bool


SIGN_IN_PAGE = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedFile:
    """A file shared into a channel by files.completeUploadExternal."""

    file_id: str
    channel: str
    thread_ts: str | None
    filename: str
    title: str | None
    data: bytes = field(repr=False)
    initial_comment: str | None = None


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
        self._file_ids = itertools.count(1)
        self._pending_uploads: dict[str, dict[str, Any]] = {}  # file id -> announced name, length, bytes
        self._uploaded: list[UploadedFile] = []
        # users.info: user id -> profile email (``known_users`` exist without an email)
        self.profile_emails: dict[str, str] = {}
        self.socket_mode: Any = None  # a FakeSocketMode answers apps.connections.open
        self.known_users: set[str] = set()
        self.files_scope = True  # False: the token lacks files:read, and files answer the sign-in page
        self._files: dict[str, tuple[bytes, str]] = {}  # url_private path -> (bytes, mimetype)
        self._file_forced: collections.deque[ForcedResponse] = collections.deque()
        self._file_redirects: collections.deque[str] = collections.deque()
        self._file_requests: list[FileRequest] = []
        self.app = Starlette(
            routes=[
                Route("/files-pri/{file}/{name:path}", self._file, methods=["GET"]),
                Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
                Route("/api/auth.test", self._auth_test, methods=["POST", "GET"]),
                Route("/upload/v1/{file_id}", self._upload_bytes, methods=["POST"]),
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

    def add_file(self, data: bytes, *, name: str, mimetype: str) -> dict[str, Any]:
        """Keep a shared file; returns its file object as a ``file_share`` event's ``files`` list has it."""
        with self._lock:
            file_id = f"F{len(self._files) + 1:08d}"
            path = f"/files-pri/{self.team_id}-{file_id}/{urllib.parse.quote(name, safe='')}"
            self._files[urllib.parse.unquote(path)] = (data, mimetype)  # the route sees the decoded path
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rpartition(".")[2] or "binary",
            "size": len(data),
            "mode": "hosted",
            "is_external": False,
            "url_private": self.url + path,
            "url_private_download": self.url + path.replace("/files-pri/", "/files-pri-download/", 1),
        }

    def push_file(self, status: int, body: str = "<html><body>Bad Gateway</body></html>") -> None:
        """Force the next answer of the file route (HTML, as a load balancer in front of Slack answers)."""
        with self._lock:
            self._file_forced.append(ForcedResponse(status=status, body=body, content_type="text/html"))

    def redirect_file_to(self, url: str) -> None:
        """The next file request is answered with a redirect to ``url``."""
        with self._lock:
            self._file_redirects.append(url)

    @property
    def file_requests(self) -> list[FileRequest]:
        with self._lock:
            return list(self._file_requests)

    async def _file(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        authorized = authorization == f"Bearer {self.token}"
        with self._lock:
            self._file_requests.append(
                FileRequest(
                    path=request.url.path, authorized=authorized, authorization_sent=authorization is not None
                )
            )
            forced = self._file_forced.popleft() if self._file_forced else None
            redirect = self._file_redirects.popleft() if self._file_redirects else None
            found = self._files.get(request.url.path)
        if forced is not None:
            return forced.to_response()
        if redirect is not None:
            return Response(status_code=302, headers={"location": redirect})
        if not authorized or not self.files_scope:
            return HTMLResponse(SIGN_IN_PAGE)  # Slack's answer to a request it will not serve: 200 and a page
        if found is None:
            return HTMLResponse("<html><body>File not found</body></html>", status_code=404)
        data, mimetype = found
        return Response(data, media_type=mimetype)

    @property
    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    @property
    def posted(self) -> list[PostedMessage]:
        with self._lock:
            return list(self._posted)

    @property
    def uploaded(self) -> list[UploadedFile]:
        with self._lock:
            return list(self._uploaded)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._posted.clear()
            self._pending_uploads.clear()
            self._uploaded.clear()
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
        if method == "files.getUploadURLExternal":
            return self._upload_url(params)
        if method == "files.completeUploadExternal":
            return self._complete_upload(params)
        if method == "conversations.open":
            users = params.get("users")
            if not isinstance(users, str) or not users:
                return {"ok": False, "error": "users_list_not_supplied"}
            return {"ok": True, "channel": {"id": "D" + users.split(",")[0].lstrip("UW")}}
        return {"ok": False, "error": "unknown_method"}

    # ----- files_upload_v2 ------------------------------------------------------------------

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename, length = params.get("filename"), str(params.get("length") or "")
        if not isinstance(filename, str) or not filename:
            return {"ok": False, "error": "invalid_arguments"}
        if not length.isdigit() or int(length) <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._file_ids):09d}"
        with self._lock:
            self._pending_uploads[file_id] = {"filename": filename, "length": int(length), "data": None}
        return {"ok": True, "upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}

    async def _upload_bytes(self, request: Request) -> Response:
        """The upload URL: no token (the URL is the permission), the bytes as the body."""
        data = await request.body()
        with self._lock:
            pending = self._pending_uploads.get(request.path_params["file_id"])
            if pending is None:
                return Response("not found", status_code=404)
            pending["data"] = data
        return Response(f"OK - {len(data)}", media_type="text/plain")

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            files = json.loads(params.get("files") or "[]")
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        channel = params.get("channel_id")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(channel, str) or not channel or channel.startswith(("U", "W")):
            return {"ok": False, "error": "channel_not_found"}
        if self.channels is not None and channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        thread_ts, comment = params.get("thread_ts"), params.get("initial_comment")
        done: list[dict[str, Any]] = []
        with self._lock:
            for item in files:
                file_id = item.get("id") if isinstance(item, dict) else None
                pending = self._pending_uploads.get(file_id) if isinstance(file_id, str) else None
                if pending is None or pending["data"] is None:
                    return {"ok": False, "error": "file_not_found"}
                if len(pending["data"]) != pending["length"]:
                    return {"ok": False, "error": "file_upload_size_mismatch"}
            for item in files:
                pending = self._pending_uploads.pop(item["id"])
                self._uploaded.append(
                    UploadedFile(
                        file_id=item["id"],
                        channel=channel,
                        thread_ts=thread_ts if isinstance(thread_ts, str) and thread_ts else None,
                        filename=pending["filename"],
                        title=item.get("title"),
                        data=pending["data"],
                        initial_comment=comment if isinstance(comment, str) and comment else None,
                    )
                )
                done.append({"id": item["id"], "name": pending["filename"], "title": item.get("title")})
        return {"ok": True, "files": done}

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
