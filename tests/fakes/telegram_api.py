"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that python-telegram-bot talks to.

In a test::

    async with FakeTelegramAPI(token=TOKEN) as fake:
        settings = TelegramSettings(bot_token=TOKEN, secret_token="s", api_base_url=fake.api_base_url)
        fake.push_rate_limit(retry_after=1)       # the next sendMessage answers 429
        ...
        assert fake.sent[-1]["text"] == "hello"

Routes: ``POST|GET /bot<TOKEN>/<method>`` for getMe, sendMessage, setWebhook, deleteWebhook,
getWebhookInfo, answerCallbackQuery (once per query id, as Telegram) and editMessageReplyMarkup (only a
message this fake sent). Parameters are read from a JSON body, a form (PTB sends
``application/x-www-form-urlencoded`` with JSON-encoded values for arrays and objects) or the query
string. Answers follow the Bot API: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "..."}``; a wrong token answers 401 Unauthorized and an
unknown method 404 Not Found, as Telegram does. ``sendMessage`` checks the text like Telegram (empty →
400 "message text is empty", longer than 4,096 UTF-16 code units → 400 "message is too long").

Failure injection: ``push(...)`` queues forced responses per method (first in, first out; default
``sendMessage``), with shortcuts ``push_rate_limit``, ``push_blocked``, ``push_chat_not_found`` and
``push_server_error``. Observations: ``calls`` (every request: method and parameters), ``sent`` (the
Message objects sendMessage returned, with their parameters), ``webhooks`` (setWebhook parameters).

Long polling (getUpdates): ``queue_update(update)`` / ``queue_message(user_id, text)`` put updates in
the bot's queue (update ids counting up from a random start, as Telegram's). ``getUpdates`` behaves like
Telegram's, and as hostile: ``offset`` confirms (discards) every update below it and nothing else does,
so an update is returned again and again until a later call confirms it; ``timeout`` holds the call
until an update arrives or the time is up; ``allowed_updates`` is remembered and updates of other types
are never returned; ``limit`` caps a batch. While a webhook is set it answers 409 Conflict ("can't use
getUpdates method while webhook is active"), and a newer getUpdates ends a waiting one with 409
("terminated by other getUpdates request"). ``push_bad_gateway()`` makes the next getUpdates fail with a
502, ``push_conflict()`` with a 409; ``on_batch`` sees each batch before it is answered (a crash test
kills the poller there). ``handed_out`` counts the answers that carried each update, ``confirmed``
lists the update ids confirmed so far, ``pending_updates`` the updates still queued; ``deleteWebhook``
keeps them unless told to drop them.

Standalone: ``python -m tests.fakes.telegram_api --token T [--port N]`` prints the ``api_base_url`` to
use (``http://127.0.0.1:N/bot``) and serves until SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
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
_TERMINATED = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)


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
        self._answered_queries: set[str] = set()
        self._webhooks: list[dict[str, Any]] = []
        self._webhook: dict[str, Any] = {}
        self._forced: dict[str, collections.deque[ForcedResponse]] = collections.defaultdict(
            collections.deque
        )
        self._message_ids: dict[str, itertools.count[int]] = {}
        self._updates: list[dict[str, Any]] = []  # queued, not yet confirmed by an offset
        self._confirmed: list[int] = []
        self._next_update_id = random.randint(100_000_000, 900_000_000)
        self._allowed_updates: list[str] = []  # [] = every type, as Telegram
        self._poll_generation = 0  # a newer getUpdates ends an older one (409)
        self._handed_out: collections.Counter[int] = collections.Counter()  # update id -> times returned
        # called (in the fake's thread) with the update ids of each non-empty batch, before it is answered
        self.on_batch: Callable[[list[int]], None] | None = None
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

    def push_bad_gateway(self, *, method: str = "getUpdates", times: int = 1) -> None:
        self.push(502, error_body(502, "Bad Gateway"), method=method, times=times)

    def push_conflict(self, *, method: str = "getUpdates", times: int = 1) -> None:
        """409 as Telegram answers a second poller (a set webhook answers it by itself)."""
        self.push(409, error_body(409, _TERMINATED), method=method, times=times)

    # ----- the update queue (getUpdates) -------------------------------------------------------

    def queue_update(self, update: dict[str, Any]) -> int:
        """Queue ``update`` (its ``update_id`` is given here unless it has one); returns the id."""
        with self._lock:
            if "update_id" not in update:
                update = {"update_id": self._next_update_id, **update}
                self._next_update_id += 1
            self._updates.append(update)
            return int(update["update_id"])

    def queue_message(self, user_id: int, text: str, *, message_id: int = 1) -> int:
        """Queue a private text message from person ``user_id``; returns its update id."""
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": "Customer"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Customer"},
            "text": text,
        }
        return self.queue_update({"message": message})

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._updates)

    @property
    def handed_out(self) -> collections.Counter[int]:
        """How many getUpdates answers carried each update id (more than one: returned again)."""
        with self._lock:
            return collections.Counter(self._handed_out)

    @property
    def confirmed(self) -> list[int]:
        """The update ids a getUpdates offset confirmed, in order."""
        with self._lock:
            return list(self._confirmed)

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
            self._answered_queries.clear()
            self._webhooks.clear()
            self._forced.clear()
            self._updates.clear()
            self._confirmed.clear()

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
            "getupdates": self._get_updates_now,
            "answercallbackquery": self._answer_callback_query,
            "editmessagereplymarkup": self._edit_message_reply_markup,
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
        if method.lower() == "getupdates":
            status, result = await self._get_updates(params)
        else:
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
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            message["reply_markup"] = markup
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

    def _answer_callback_query(self, params: dict[str, Any]) -> tuple[int, Any]:
        """A callback query can be answered once; a second answer is refused, as Telegram does."""
        query_id = str(params.get("callback_query_id") or "")
        with self._lock:
            if not query_id or query_id in self._answered_queries:
                return 400, error_body(
                    400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
                )
            self._answered_queries.add(query_id)
        return 200, True

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> tuple[int, Any]:
        """Only a message this fake sent, in its chat, can be edited; the keyboard is replaced."""
        chat_key, message_id = str(params.get("chat_id")), params.get("message_id")
        with self._lock:
            for sent in self._sent:
                if str(sent["chat"]["id"]) == chat_key and str(sent["message_id"]) == str(message_id):
                    markup = params.get("reply_markup")
                    sent.pop("reply_markup", None)
                    if isinstance(markup, dict) and markup.get("inline_keyboard"):
                        sent["reply_markup"] = markup
                    return 200, {k: v for k, v in sent.items() if k != "params"}
        return 400, error_body(400, "Bad Request: message to edit not found")

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
            if params.get("drop_pending_updates") is True:
                self._updates.clear()
        return 200, True

    def _get_updates_now(self, params: dict[str, Any]) -> tuple[int, Any]:
        raise AssertionError("getUpdates is answered by _get_updates")  # the table lists it as known

    async def _get_updates(self, params: dict[str, Any]) -> tuple[int, Any]:
        """Confirm below ``offset``, then answer the queue (waiting up to ``timeout`` for an update)."""
        try:
            offset = int(params.get("offset") or 0)
            timeout = max(0.0, float(params.get("timeout") or 0))
            limit = min(100, max(1, int(params.get("limit") or 100)))
        except (TypeError, ValueError):
            return 400, error_body(400, "Bad Request: wrong parameter")
        allowed = params.get("allowed_updates")
        with self._lock:
            if self._webhook.get("url"):
                return 409, error_body(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            self._poll_generation += 1
            generation = self._poll_generation
            if offset > 0:
                self._confirmed.extend(u["update_id"] for u in self._updates if u["update_id"] < offset)
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if isinstance(allowed, list):
                self._allowed_updates = [str(kind) for kind in allowed]
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if generation != self._poll_generation:
                    return 409, error_body(409, _TERMINATED)
                if self._allowed_updates:  # updates of other types are never delivered
                    self._updates = [u for u in self._updates if _kind(u) in self._allowed_updates]
                batch = [dict(u) for u in self._updates[:limit]]
            if batch or time.monotonic() >= deadline or self.closing.is_set():
                with self._lock:
                    self._handed_out.update(u["update_id"] for u in batch)
                if batch and self.on_batch is not None:
                    self.on_batch([u["update_id"] for u in batch])
                return 200, batch
            await asyncio.sleep(0.02)

    def _get_webhook_info(self, params: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            webhook = dict(self._webhook)
            pending = len(self._updates)
        info: dict[str, Any] = {
            "url": webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": pending,
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


def _kind(update: dict[str, Any]) -> str:
    """An update's type: its one key besides ``update_id`` (``message``, ``callback_query``, ...)."""
    return next((key for key in update if key != "update_id"), "")


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
_INT_FIELDS = frozenset(
    {"chat_id", "message_thread_id", "max_connections", "reply_to_message_id", "offset", "limit", "timeout"}
)
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
