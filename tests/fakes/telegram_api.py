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

Sending files: ``sendPhoto`` and ``sendDocument`` take the file as a multipart upload (as PTB sends bytes)
and refuse what Telegram refuses (no file, a photo over 10 MB, a caption over 1,024 characters); their
Message objects (with ``photo`` sizes or a ``document``) are in ``sent`` like a text's, and ``sent_files``
keeps each upload: method, chat, file name, caption and bytes.

Files (``getFile`` and ``GET /file/bot<TOKEN>/<file_path>``, as Telegram serves them): ``add_file(data)``
returns a ``file_id`` (``photo_sizes(file_id)`` the ``photo`` array of a message that carries it);
``getFile`` answers its ``file_size`` (left out with ``declare_size=False``) and ``file_path``, or 400
"invalid file_id" for an unknown id and 400 "file is too big" above the bots' 20 MB (``add_file(size=N)``
makes a file of ``N`` zero bytes, produced as it is streamed). The file route checks the token (401) and the
path (404), streams the bytes in 64 KiB chunks and counts what it actually sent (``file_bytes_sent``);
``push_file(status)`` forces the next file answer (a 502 once). ``file_requests`` lists the paths asked.

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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

DEFAULT_TOKEN = "123456789:AAHfakeTOKENfor-threadline_tests0"
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a multipart request carried."""

    filename: str
    data: bytes = field(repr=False)


BOT_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses larger files: "file is too big"
_FILE_CHUNK = 64 * 1024
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeFile:
    """A file the fake serves: ``data``, or ``size`` zero bytes made as they are streamed."""

    file_id: str
    path: str
    data: bytes | None
    size: int
    declare_size: bool


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
        self._sent_files: list[dict[str, Any]] = []
        self._answered_queries: set[str] = set()
        self._webhooks: list[dict[str, Any]] = []
        self._webhook: dict[str, Any] = {}
        self._forced: dict[str, collections.deque[ForcedResponse]] = collections.defaultdict(
            collections.deque
        )
        self._late: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._message_ids: dict[str, itertools.count[int]] = {}
        self._updates: list[dict[str, Any]] = []  # queued, not yet confirmed by an offset
        self._confirmed: list[int] = []
        self._next_update_id = random.randint(100_000_000, 900_000_000)
        self._allowed_updates: list[str] = []  # [] = every type, as Telegram
        self._poll_generation = 0  # a newer getUpdates ends an older one (409)
        self._handed_out: collections.Counter[int] = collections.Counter()  # update id -> times returned
        # called (in the fake's thread) with the update ids of each non-empty batch, before it is answered
        self.on_batch: Callable[[list[int]], None] | None = None
        self._files: dict[str, FakeFile] = {}
        self._file_forced: collections.deque[ForcedResponse] = collections.deque()
        self._file_requests: list[str] = []
        self._file_bytes_sent = 0
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._dispatch, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
            ]
        )

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

    def answer_late(self, seconds: float, *, method: str = "sendMessage", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` are carried out at once (a message is delivered) but
        answered only ``seconds`` later, as a slow Bot API: a client that gives up first cannot tell."""
        with self._lock:
            self._late[method.lower()].extend([seconds] * times)

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

    # ----- files (getFile and the file URL) ----------------------------------------------------

    def add_file(
        self,
        data: bytes | None = None,
        *,
        size: int | None = None,
        folder: str = "photos",
        extension: str = "jpg",
        declare_size: bool = True,
    ) -> str:
        """Keep a file (``data``, or ``size`` zero bytes made as they are streamed); returns its file_id."""
        with self._lock:
            number = len(self._files)
            file_id = f"AgACAgQAAxkBAAI{number:04d}{random.randint(10**8, 10**9)}"
            length = len(data) if data is not None else int(size or 0)
            path = f"{folder}/file_{number}.{extension}"
            self._files[file_id] = FakeFile(
                file_id=file_id, path=path, data=data, size=length, declare_size=declare_size
            )
        return file_id

    def photo_sizes(self, file_id: str) -> list[dict[str, Any]]:
        """A message's ``photo`` array with ``file_id`` as its largest size (a thumbnail first)."""
        with self._lock:
            size = self._files[file_id].size
        thumb = {
            "file_id": "thumb-" + file_id,
            "file_unique_id": "t" + file_id[-8:],
            "width": 90,
            "height": 90,
        }
        largest = {"file_id": file_id, "file_unique_id": "u" + file_id[-8:], "width": 1280, "height": 960}
        return [{**thumb, "file_size": 1200}, {**largest, "file_size": size}]

    def push_file(self, status: int, body: Any = None) -> None:
        """Force the next answer of the file route (``body=None``: a Bot API error body)."""
        forced = ForcedResponse(
            status=status,
            body=body if body is not None else error_body(status, _default_description(status)),
            headers={},
        )
        with self._lock:
            self._file_forced.append(forced)

    @property
    def file_requests(self) -> list[str]:
        """The file paths asked of the file route, in order (forced answers included)."""
        with self._lock:
            return list(self._file_requests)

    @property
    def file_bytes_sent(self) -> int:
        """Bytes of file bodies actually written to clients (a client that stops reading stops this)."""
        with self._lock:
            return self._file_bytes_sent

    def _get_file(self, params: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            found = self._files.get(str(params.get("file_id") or ""))
        if found is None:
            return 400, error_body(400, "Bad Request: invalid file_id")
        if found.size > BOT_DOWNLOAD_LIMIT:
            return 400, error_body(400, "Bad Request: file is too big")
        result: dict[str, Any] = {
            "file_id": found.file_id,
            "file_unique_id": "u" + found.file_id[-8:],
            "file_path": found.path,
        }
        if found.declare_size:
            result["file_size"] = found.size
        return 200, result

    async def _download(self, request: Request) -> Response:
        path = str(request.path_params["path"])
        with self._lock:
            self._file_requests.append(path)
            forced = self._file_forced.popleft() if self._file_forced else None
            found = next((f for f in self._files.values() if f.path == path), None)
        if forced is not None:
            return forced.to_response()
        if request.path_params["token"] != self.token:
            return JSONResponse(error_body(401, "Unauthorized"), status_code=401)
        if found is None:
            return JSONResponse(error_body(404, "Not Found"), status_code=404)
        headers = {"content-length": str(found.size)} if found.declare_size else {}
        return StreamingResponse(
            self._file_body(request, found), headers=headers, media_type="application/octet-stream"
        )

    async def _file_body(self, request: Request, found: FakeFile) -> Any:
        zeros = b"\x00" * _FILE_CHUNK
        for start in range(0, found.size, _FILE_CHUNK):
            end = min(found.size, start + _FILE_CHUNK)
            chunk = found.data[start:end] if found.data is not None else zeros[: end - start]
            if await request.is_disconnected():  # the client hung up: stop, as a real server does
                return
            yield chunk
            with self._lock:
                self._file_bytes_sent += len(chunk)

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
    def sent_files(self) -> list[dict[str, Any]]:
        """Every file sendPhoto/sendDocument accepted: method, chat_id, filename, caption, data."""
        with self._lock:
            return list(self._sent_files)

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
            self._sent_files.clear()
            self._answered_queries.clear()
            self._webhooks.clear()
            self._forced.clear()
            self._late.clear()
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
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": self._get_updates_now,
            "answercallbackquery": self._answer_callback_query,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "getfile": self._get_file,
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
        with self._lock:
            late = self._late.get(method.lower())
            delay = late.popleft() if late else 0.0
        if delay:
            await asyncio.sleep(delay)
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

    def _send_photo(self, params: dict[str, Any]) -> tuple[int, Any]:
        return self._send_file("sendPhoto", "photo", params)

    def _send_document(self, params: dict[str, Any]) -> tuple[int, Any]:
        return self._send_file("sendDocument", "document", params)

    def _send_file(self, method: str, field: str, params: dict[str, Any]) -> tuple[int, Any]:
        chat_id, upload, caption = params.get("chat_id"), params.get(field), params.get("caption")
        if chat_id in (None, ""):
            return 400, error_body(400, "Bad Request: chat_id is empty")
        if not isinstance(upload, Upload) or not upload.data:
            return 400, error_body(400, f"Bad Request: there is no {field} in the request")
        if field == "photo" and len(upload.data) > MAX_PHOTO_BYTES:
            return 400, error_body(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        if isinstance(caption, str) and len(caption.encode("utf-16-le")) // 2 > MAX_CAPTION_LENGTH:
            return 400, error_body(400, "Bad Request: message caption is too long")
        with self._lock:
            counter = self._message_ids.setdefault(str(chat_id), itertools.count(1001))
            message_id = next(counter)
            file_number = len(self._sent_files) + 1
        unique = f"AQAD{file_number:06d}"
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": _chat(chat_id),
            "date": int(time.time()),
        }
        if field == "photo":
            message["photo"] = [
                {"file_id": f"AgAC{unique}", "file_unique_id": unique, "width": 90, "height": 90}
            ]
        else:
            message["document"] = {
                "file_id": f"BQAC{unique}",
                "file_unique_id": unique,
                "file_name": upload.filename,
                "file_size": len(upload.data),
            }
        if isinstance(caption, str) and caption:
            message["caption"] = caption
        thread_id = params.get("message_thread_id")
        if thread_id is not None:
            message["message_thread_id"] = int(thread_id)
        recorded = {key: value for key, value in params.items() if not isinstance(value, Upload)}
        with self._lock:
            self._sent.append({**message, "params": recorded})
            self._sent_files.append(
                {
                    "method": method,
                    "chat_id": chat_id,
                    "filename": upload.filename,
                    "caption": caption if isinstance(caption, str) else None,
                    "data": upload.data,
                }
            )
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
        for key, value in form.items():  # uploaded files (sendPhoto, sendDocument)
            if isinstance(value, UploadFile):
                params[key] = Upload(filename=value.filename or "", data=await value.read())
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
