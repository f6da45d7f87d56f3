"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1, for tests and benchmarks.

In a test (sync or async)::

    with FakeOpenAI(delay=0.1) as fake:
        settings = LLMSettings(api_key="k", base_url=fake.base_url)  # http://127.0.0.1:PORT/v1
        ...
        fake.push(500, headers={"retry-after-ms": "1"})               # next call fails
        assert fake.calls[-1]["model"] == "gpt-4o-mini"

``async with FakeOpenAI() as fake:`` works too. The server runs uvicorn in a background thread with its
own event loop, so it serves the same way whatever loop (if any) the test runs. Every setting can be
changed while it runs; state is guarded by a lock.

Standalone, for tests that run the hub as a subprocess::

    python -m tests.fakes.openai_server [--port N] [--delay S] [--log FILE]

prints its base URL (``http://127.0.0.1:N/v1``) on the first line of stdout, appends one JSON line
per call to ``FILE``, and stops on SIGTERM / SIGINT.

Routes: ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models``. Responders: the default
``echo_responder``; ``restating_responder``, a model that restates its whole context (what it was shown
becomes a memory, or the reply).

Tool calls (function calling): ``tool_triggers`` make the fake call an offered tool when the last user
message contains a phrase (``ToolTrigger``; ``--tool-trigger PHRASE`` standalone), still answering the
responder's text beside the call unless ``with_text=False``: a restating fake stays hostile. A call is made
only when the request offers that tool (Mem0's extraction requests offer none). A scripted call:
``push(200, tool_call_body("request_human", {"reason": "..."}))``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

Responder = Callable[[dict[str, Any]], str]

DEFAULT_MODEL = "gpt-4o-mini"


def _last_user_text(request_json: Mapping[str, Any]) -> str:
    messages = request_json.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                ).strip()
    return ""


def echo_responder(request_json: dict[str, Any]) -> str:
    """The default reply: ``"echo: "`` and the first 200 characters of the last user message.

    When the request asks for ``response_format={"type": "json_object"}`` the same text comes back
    as ``{"echo": "..."}`` so that the reply is valid JSON.
    """
    text = "echo: " + _last_user_text(request_json)[:200]
    response_format = request_json.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return json.dumps({"echo": text})
    return text


def restating_responder(request_json: dict[str, Any]) -> str:
    """A model that restates what it is shown, context included.

    An extraction request (``response_format={"type": "json_object"}``, as Mem0 sends) is answered with
    every non-empty line of its user messages as one fact (``{"memory": [{"text": line}, ...]}``),
    headings (``#``) left out: whatever the extractor was shown (the new messages, and any context such as
    earlier messages or existing memories) becomes a memory. A chat request is answered with its whole
    conversation on one line, so whatever reached the prompt reaches the reply.
    """
    messages = request_json.get("messages")
    listed = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    response_format = request_json.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        lines = [
            line.strip()
            for m in listed
            if m.get("role") == "user"
            for line in str(m.get("content", "")).splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        return json.dumps({"memory": [{"text": line} for line in dict.fromkeys(lines)]})
    return "I see: " + " | ".join(str(m.get("content", "")).replace("\n", " | ") for m in listed)


def tool_call_body(
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    content: str | None = None,
    model: str = DEFAULT_MODEL,
) -> dict[str, Any]:
    """A well-formed chat completion that calls the tool ``name`` (``arguments``: a JSON object, or a raw
    string sent as it is, e.g. broken JSON), with ``content`` beside it: handy with ``push``."""
    raw = arguments if isinstance(arguments, str) else json.dumps(dict(arguments or {}))
    body = completion_body(content, model=model, finish_reason="tool_calls")
    body["choices"][0]["message"]["tool_calls"] = [
        {
            "id": f"call_fake_{time.monotonic_ns()}",
            "type": "function",
            "function": {"name": name, "arguments": raw},
        }
    ]
    return body


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolTrigger:
    """Call the tool ``tool`` with ``arguments`` when the last user message contains ``phrase`` (any case)
    and the request offers that tool; ``with_text``: the responder's text comes along (else no text)."""

    phrase: str
    tool: str = "request_human"
    arguments: Mapping[str, Any] = field(default_factory=lambda: {"reason": "the customer asks for a person"})
    with_text: bool = True

    def fires(self, request_json: Mapping[str, Any]) -> bool:
        return (
            self.tool in _offered_tools(request_json)
            and self.phrase.lower() in _last_user_text(request_json).lower()
        )


def _offered_tools(request_json: Mapping[str, Any]) -> set[str]:
    tools = request_json.get("tools")
    if not isinstance(tools, list):
        return set()
    names: set[str] = set()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def completion_body(
    content: str | None, *, model: str = DEFAULT_MODEL, finish_reason: str = "stop"
) -> dict[str, Any]:
    """A well-formed chat completion carrying ``content``: handy with ``push`` (e.g. ``content=""``)."""
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedResponse:
    """One queued answer that replaces the responder for one call.

    ``body`` is sent as JSON unless it is ``str``/``bytes`` (sent raw, e.g. garbage that is not JSON).
    """

    status: int = 500
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def to_response(self) -> Response:
        body = self.body
        if body is None:
            body = {"error": {"message": f"forced {self.status}", "type": "server_error", "code": None}}
        if isinstance(body, str | bytes):
            return Response(
                body, status_code=self.status, headers=dict(self.headers), media_type=self.content_type
            )
        return JSONResponse(body, status_code=self.status, headers=dict(self.headers))


class FakeOpenAI(LoopbackServer):
    """A fake OpenAI-compatible endpoint on ``127.0.0.1:port`` (0 = a free port).

    Runtime knobs (thread-safe): ``delay`` (seconds each chat call is held, with ``asyncio.sleep`` so
    many calls overlap), ``responder`` (``request_json -> reply text``), ``tool_triggers`` (phrases that
    make it call an offered tool), ``push(...)`` (queue forced responses, served first-in first-out, one
    per call). Observations: ``calls`` (request JSON of
    every chat call, in arrival order), ``in_flight``, ``max_in_flight``. ``reset()`` restores defaults.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        delay: float = 0.0,
        responder: Responder | None = None,
        api_key: str | None = None,
        log_path: str | Path | None = None,
        model: str = DEFAULT_MODEL,
        tool_triggers: Sequence[ToolTrigger] = (),
    ) -> None:
        super().__init__(port=port)
        self._lock = threading.Lock()
        self._tool_triggers: tuple[ToolTrigger, ...] = tuple(tool_triggers)
        self._delay = delay
        self._responder: Responder = responder or echo_responder
        self._api_key = api_key
        self._log_path = Path(log_path) if log_path is not None else None
        self._model = model
        self._calls: list[dict[str, Any]] = []
        self._forced: collections.deque[ForcedResponse] = collections.deque()
        self._in_flight = 0
        self._max_in_flight = 0
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what ``LLMSettings.base_url`` / ``OPENAI_BASE_URL`` takes."""
        if not self.port:
            raise RuntimeError("FakeOpenAI is not started")
        return f"{self.url}/v1"

    # ----- runtime knobs and observations ----------------------------------------------------

    @property
    def delay(self) -> float:
        with self._lock:
            return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    @property
    def responder(self) -> Responder:
        with self._lock:
            return self._responder

    @responder.setter
    def responder(self, responder: Responder | None) -> None:
        with self._lock:
            self._responder = responder or echo_responder

    @property
    def tool_triggers(self) -> tuple[ToolTrigger, ...]:
        with self._lock:
            return self._tool_triggers

    @tool_triggers.setter
    def tool_triggers(self, triggers: Sequence[ToolTrigger]) -> None:
        with self._lock:
            self._tool_triggers = tuple(triggers)

    def push(
        self,
        status: int = 500,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        times: int = 1,
    ) -> None:
        """Queue ``times`` forced responses. ``body=None`` is an OpenAI-style error object.

        Examples: ``push(500)``, ``push(429, headers={"retry-after": "1"})``,
        ``push(200, {"id": "x", "choices": []})``, ``push(200, completion_body(""))``,
        ``push(200, "not json")``. Tip: ``headers={"retry-after-ms": "1"}`` keeps SDK retries fast.
        """
        forced = ForcedResponse(
            status=status, body=body, headers=dict(headers or {}), content_type=content_type
        )
        with self._lock:
            self._forced.extend([forced] * times)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """A copy of the request JSON of every chat call, in arrival order."""
        with self._lock:
            return list(self._calls)

    @property
    def pending_forced(self) -> int:
        with self._lock:
            return len(self._forced)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        """Forget calls and forced responses; default delay and responder. Calls in flight still count."""
        with self._lock:
            self._calls.clear()
            self._forced.clear()
            self._delay = 0.0
            self._responder = echo_responder
            self._tool_triggers = ()
            self._max_in_flight = self._in_flight

    # ----- routes ----------------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        if self._api_key is None or request.headers.get("authorization") == f"Bearer {self._api_key}":
            return None
        return JSONResponse(
            {
                "error": {
                    "message": "invalid api key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            status_code=401,
        )

    async def _models(self, request: Request) -> Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": self._model, "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def _chat_completions(self, request: Request) -> Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body is not a JSON object")
        with self._lock:
            self._calls.append(body)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            forced = self._forced.popleft() if self._forced else None
            delay, responder, triggers = self._delay, self._responder, self._tool_triggers
            call_number = next(self._ids)
        self._log(body)
        try:
            if not await self._hold(delay):
                return _error(503, "the fake is shutting down")
            if forced is not None:
                return forced.to_response()
            if body.get("stream"):
                return _error(400, "the fake serves non-streaming calls only")
            try:
                text = responder(body)
            except Exception as exc:  # a broken responder is the test's bug: answer 500 and say so
                return _error(500, f"responder raised {type(exc).__name__}")
            model = str(body.get("model") or self._model)
            trigger = next((t for t in triggers if t.fires(body)), None)
            if trigger is not None:
                reply = tool_call_body(
                    trigger.tool, trigger.arguments, content=text if trigger.with_text else None, model=model
                )
            else:
                reply = completion_body(text, model=model)
            reply["id"] = f"chatcmpl-fake-{call_number}"
            return JSONResponse(reply)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _hold(self, delay: float) -> bool:
        """Sleep ``delay`` seconds in short slices; ``False`` when the server stops meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (remaining := deadline - loop.time()) > 0:
            if self.closing.is_set():
                return False
            await asyncio.sleep(min(remaining, 0.05))
        return True

    def _log(self, body: dict[str, Any]) -> None:
        if self._log_path is None:
            return
        line = json.dumps({"ts": time.time(), "path": "/v1/chat/completions", "request": body})
        with self._lock, self._log_path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _error(status: int, message: str) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "code": None}}, status
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 = a free port)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to hold each chat call")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per chat call here")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument(
        "--tool-trigger",
        action="append",
        default=[],
        metavar="PHRASE",
        help="call the offered tool request_human when the last user message contains PHRASE (repeatable)",
    )
    args = parser.parse_args(argv)
    fake = FakeOpenAI(
        port=args.port,
        delay=args.delay,
        log_path=args.log,
        api_key=args.api_key,
        tool_triggers=[ToolTrigger(phrase=phrase) for phrase in args.tool_trigger],
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after a clean shutdown
        fake.serve_forever(on_ready=lambda url: print(f"{url}/v1", flush=True))


if __name__ == "__main__":
    main()
