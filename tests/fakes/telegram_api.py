"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that python-telegram-bot talks to.

In a test::

    async with FakeTelegramAPI(token=TOKEN) as fake:
        settings = TelegramSettings(bot_token=TOKEN, secret_token="s", api_base_url=fake.api_base_url)
        fake.push_rate_limit(retry_after=1)       # the next sendMessage answers 429
        ...
        assert fake.sent[-1]["text"] == "hello"

Routes: ``POST|GET /bot<TOKEN>/<method>`` for getMe, sendMessage, setWebhook, deleteWebhook and
getWebhookInfo. Parameters are read from a JSON body, a form (PTB sends
``application/x-www-form-urlencoded`` with JSON-encoded values for arrays and objects) or the query
string. Answers follow the Bot API: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "..."}``; a wrong token answers 401 Unauthorized and an
unknown method 404 Not Found, as Telegram does. ``sendMessage`` checks the text like Telegram (empty →
400 "message text is empty", longer than 4,096 UTF-16 code units → 400 "message is too long").

Failure injection: ``push(...)`` queues forced responses per method (first in, first out; default
``sendMessage``), with shortcuts ``push_rate_limit``, ``push_blocked``, ``push_chat_not_found`` and
``push_server_error``. Observations: ``calls`` (every request: method and parameters), ``sent`` (the
Message objects sendMessage returned, with their parameters), ``webhooks`` (setWebhook parameters).

Standalone: ``python -m tests.fakes.telegram_api --token T [--port N]`` prints the ``api_base_url`` to
use (``http://127.0.0.1:N/bot``) and serves until SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

DEFAULT_TOKEN = "123456789:AAHfakeTOKENfor-threadline_tests0"
MAX_TEXT_LENGTH = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedResponse:
    """One queued answer for one call of ``method``. ``body`` is sent as JSON unless str/bytes."""

    status: int
    body: Any
    headers: Mapping[str, str]

    def to_response(self) -> Response:
        if isinstance(self.body, str | bytes):
            return Response(self.body, status_code=self.status, headers=dict(self.headers))
        return JSONResponse(self.body, status_code=self.status, headers=dict(self.headers))


def error_body(code: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


class FakeTelegramAPI(LoopbackServer):
    """The Bot API for one bot. ``api_base_url`` (``<url>/bot``) is what PTB's ``base_url`` takes."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        username: str = "threadline_test_bot",
        first_name: str = "Threadline Test",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.username = username
        self.first_name = first_name
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._sent: list[dict[str, Any]] = []
        self._webhooks: list[dict[str, Any]] = []
        self._webhook: dict[str, Any] = {}
        self._forced: dict[str, collections.deque[ForcedResponse]] = collections.defaultdict(
            collections.deque
        )
        self._message_ids: dict[str, itertools.count[int]] = {}
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self._dispatch, methods=["GET", "POST"])])

    @property
    def api_base_url(self) -> str:
        return self.url + "/bot"

    # ----- failure injection -------------------------------------------------------------------

    def push(
        self,
        status: int,
        body: Any = None,
        *,
        method: str = "sendMessage",
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Queue ``times`` forced answers for ``method``. ``body=None`` is a Bot API error for ``status``."""
        if body is None:
            body = error_body(status, _default_description(status))
        forced = ForcedResponse(status=status, body=body, headers=dict(headers or {}))
        with self._lock:
            self._forced[method.lower()].extend([forced] * times)

    def push_rate_limit(self, *, retry_after: int = 1, method: str = "sendMessage", times: int = 1) -> None:
        self.push(
            429,
            error_body(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after),
            method=method,
            times=times,
        )

    def push_blocked(self, *, method: str = "sendMessage") -> None:
        self.push(403, error_body(403, "Forbidden: bot was blocked by the user"), method=method)

    def push_chat_not_found(self, *, method: str = "sendMessage") -> None:
        self.push(400, error_body(400, "Bad Request: chat not found"), method=method)

    def push_server_error(self, *, method: str = "sendMessage", times: int = 1) -> None:
        self.push(500, error_body(500, "Internal Server Error"), method=method, times=times)

    # ----- observations ------------------------------------------------------------------------

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every request that reached a known method: ``{"method": ..., "params": {...}}``."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call["params"] for call in self.calls if call["method"].lower() == method.lower()]

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The Message objects sendMessage answered with, in order (forced failures are not here)."""
        with self._lock:
            return list(self._sent)

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """The parameters of every successful setWebhook call."""
        with self._lock:
            return list(self._webhooks)

    @property
    def pending_forced(self) -> int:
        with self._lock:
            return sum(len(queue) for queue in self._forced.values())

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._sent.clear()
            self._webhooks.clear()
            self._forced.clear()

    # ----- the API -----------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return JSONResponse(error_body(401, "Unauthorized"), status_code=401)
        method = str(request.path_params["method"])
        handler = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
        }.get(method.lower())
        if handler is None:
            return JSONResponse(error_body(404, "Not Found"), status_code=404)
        try:
            params = await _read_params(request)
        except ValueError:
            return JSONResponse(error_body(400, "Bad Request: can't parse request body"), status_code=400)
        with self._lock:
            self._calls.append({"method": method, "params": params})
            queue = self._forced.get(method.lower())
            forced = queue.popleft() if queue else None
        if forced is not None:
            return forced.to_response()
        status, result = handler(params)
        if status != 200:
            return JSONResponse(result, status_code=status)
        return JSONResponse({"ok": True, "result": result})

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_me(self, params: dict[str, Any]) -> tuple[int, Any]:
        return 200, self._bot_user()

    def _send_message(self, params: dict[str, Any]) -> tuple[int, Any]:
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id in (None, ""):
            return 400, error_body(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return 400, error_body(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_LENGTH:
            return 400, error_body(400, "Bad Request: message is too long")
        chat_key = str(chat_id)
        with self._lock:
            counter = self._message_ids.setdefault(chat_key, itertools.count(1001))
            message_id = next(counter)
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": _chat(chat_id),
            "date": int(time.time()),
            "text": text,
        }
        thread_id = params.get("message_thread_id")
        if thread_id is not None:
            message["message_thread_id"] = int(thread_id)
            message["is_topic_message"] = True
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and "message_id" in reply:
            message["reply_to_message"] = {
                "message_id": int(reply["message_id"]),
                "date": int(time.time()) - 60,
                "chat": _chat(chat_id),
            }
        with self._lock:
            self._sent.append({**message, "params": params})
        return 200, message

    def _set_webhook(self, params: dict[str, Any]) -> tuple[int, Any]:
        url = params.get("url")
        if not isinstance(url, str):
            return 400, error_body(400, "Bad Request: bad webhook: URL must be provided")
        if url and not url.startswith("https://"):
            return 400, error_body(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            self._webhooks.append(params)
            self._webhook = dict(params)
        return 200, True

    def _delete_webhook(self, params: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self._webhook = {}
        return 200, True

    def _get_webhook_info(self, params: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            webhook = dict(self._webhook)
        info: dict[str, Any] = {
            "url": webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if webhook.get("url"):
            info["max_connections"] = int(webhook.get("max_connections", 40))
            if webhook.get("allowed_updates") is not None:
                info["allowed_updates"] = webhook["allowed_updates"]
        return 200, info


def _default_description(status: int) -> str:
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(status, "Error")


def _chat(chat_id: Any) -> dict[str, Any]:
    try:
        numeric = int(chat_id)
    except (TypeError, ValueError):  # @channelusername
        return {"id": -1001000000001, "type": "channel", "title": "Channel", "username": str(chat_id)[1:]}
    if numeric > 0:
        return {"id": numeric, "type": "private", "first_name": "Customer"}
    if str(numeric).startswith("-100"):
        return {"id": numeric, "type": "supergroup", "title": "Support group"}
    return {"id": numeric, "type": "group", "title": "Support group"}


async def _read_params(request: Request) -> dict[str, Any]:
    """Parameters from the query string and a JSON, form or empty body (form values typed by ``_decode``)."""
    params: dict[str, Any] = {key: _decode(key, value) for key, value in request.query_params.items()}
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("JSON body is not an object")
        params.update(data)
    elif content_type.startswith("multipart/form-data"):
        form = await request.form()
        params.update({key: _decode(key, value) for key, value in form.items() if isinstance(value, str)})
    else:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        params.update({key: _decode(key, value) for key, value in pairs})
    return params


_JSON_FIELDS = frozenset(
    {"allowed_updates", "reply_parameters", "reply_markup", "entities", "link_preview_options"}
)
_INT_FIELDS = frozenset({"chat_id", "message_thread_id", "max_connections", "reply_to_message_id"})
_BOOL_FIELDS = frozenset(
    {"drop_pending_updates", "disable_notification", "protect_content", "allow_sending_without_reply"}
)


def _decode(key: str, value: str) -> Any:
    """A form value as Telegram reads it: JSON-serialised fields decoded, numeric ids and flags typed."""
    if key in _JSON_FIELDS:
        with contextlib.suppress(ValueError):
            return json.loads(value)
    if key in _INT_FIELDS and value.lstrip("-").isdigit():
        return int(value)
    if key in _BOOL_FIELDS and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Telegram Bot API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 = a free port)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token to accept")
    args = parser.parse_args(argv)
    fake = FakeTelegramAPI(port=args.port, token=args.token)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after a clean shutdown
        fake.serve_forever(on_ready=lambda url: print(url + "/bot", flush=True))


if __name__ == "__main__":
    main()
