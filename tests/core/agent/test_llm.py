"""OpenAIChatModel drives the real openai SDK against the fake OpenAI server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core.agent.llm import OpenAIChatModel, build_chat_model
from core.errors import LLMError
from core.messages import ChatMessage, Tool
from core.ports import ChatModel
from core.settings import LLMSettings
from tests.fakes.openai_server import FakeOpenAI, ToolTrigger, completion_body, tool_call_body

KEY = "sk-test-very-secret-key-123"
SECRET_TEXT = "my card number is 4111 1111 1111 1111"
FAST_RETRY = {"retry-after-ms": "1"}
ROOT = Path(__file__).resolve().parents[3]

ModelFactory = Callable[..., OpenAIChatModel]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def make_model(fake: FakeOpenAI) -> AsyncIterator[ModelFactory]:
    made: list[OpenAIChatModel] = []

    def factory(**overrides: Any) -> OpenAIChatModel:
        options: dict[str, Any] = {
            "api_key": SecretStr(KEY),
            "base_url": fake.base_url,
            "timeout": 5.0,
            "max_retries": 0,
        }
        options.update(overrides)
        model = OpenAIChatModel(LLMSettings(**options))
        made.append(model)
        return model

    yield factory
    for model in made:
        await model.aclose()


def conversation(text: str = "hello there") -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content="You are a support bot."),
        ChatMessage(role="user", content=text),
    ]


async def test_returns_the_reply_text(make_model: ModelFactory) -> None:
    model = make_model()
    assert (await model.complete(conversation("where is my order?"))).text == "echo: where is my order?"


async def test_request_carries_model_messages_and_max_tokens(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    model = make_model(model="fake-model-7", max_tokens=123)
    await model.complete([*conversation("first"), ChatMessage(role="assistant", content="ok")])
    (call,) = fake.calls
    assert call["model"] == "fake-model-7"
    assert call["max_tokens"] == 123
    assert "tools" not in call  # none offered: an endpoint without function calling still serves it
    assert call["messages"] == [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
    ]


async def test_custom_responder(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.responder = lambda request: f"{len(request['messages'])} messages"
    assert (await make_model().complete(conversation())).text == "2 messages"


async def test_server_error_after_retries_is_llm_error(
    fake: FakeOpenAI, make_model: ModelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.agent.llm")
    fake.push(500, headers=FAST_RETRY, times=3)
    with pytest.raises(LLMError, match="HTTP 500") as info:
        await make_model(max_retries=2).complete(conversation(SECRET_TEXT))
    assert len(fake.calls) == 3
    assert SECRET_TEXT not in str(info.value)
    assert SECRET_TEXT not in caplog.text
    assert KEY not in caplog.text


async def test_rate_limit_is_retried_then_succeeds(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.push(429, headers={"retry-after": "0.01"})
    assert (await make_model(max_retries=1).complete(conversation("hi"))).text == "echo: hi"
    assert len(fake.calls) == 2


async def test_client_error_is_not_retried(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.push(400, times=3)
    with pytest.raises(LLMError, match="HTTP 400"):
        await make_model(max_retries=2).complete(conversation())
    assert len(fake.calls) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"id": "chatcmpl-x", "object": "chat.completion", "choices": []}, id="empty-choices"),
        pytest.param({"id": "chatcmpl-x", "object": "chat.completion"}, id="no-choices"),
        pytest.param(completion_body(""), id="empty-content"),
        pytest.param(completion_body("  \n\t "), id="whitespace-content"),
        pytest.param(completion_body(None), id="null-content"),
        pytest.param(
            {**completion_body("x"), "choices": [{"index": 0, "message": {"content": 42}}]}, id="int"
        ),
        pytest.param({**completion_body("x"), "choices": ["nonsense"]}, id="choice-not-object"),
        pytest.param([1, 2, 3], id="json-array"),
        pytest.param("this is not json {", id="not-json"),
    ],
)
async def test_garbage_is_llm_error(fake: FakeOpenAI, make_model: ModelFactory, body: Any) -> None:
    fake.push(200, body)
    with pytest.raises(LLMError):
        await make_model().complete(conversation(SECRET_TEXT))


async def test_refusal_is_llm_error(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    body = completion_body(None)
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    fake.push(200, body)
    with pytest.raises(LLMError, match="refused"):
        await make_model().complete(conversation())


async def test_hold_longer_than_timeout_is_llm_error(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.delay = 2.0
    with pytest.raises(LLMError, match="timed out"):
        await make_model(timeout=0.2, max_retries=0).complete(conversation())
    assert len(fake.calls) == 1


async def test_unreachable_endpoint_is_llm_error(make_model: ModelFactory) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = make_model(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(LLMError, match="unreachable"):
        await model.complete(conversation())


async def test_no_messages_is_llm_error(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    with pytest.raises(LLMError):
        await make_model().complete([])
    assert fake.calls == []


async def test_calls_run_concurrently(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.delay = 0.5
    model = make_model()
    replies = await asyncio.gather(*(model.complete(conversation(f"n{i}")) for i in range(10)))
    assert [reply.text for reply in replies] == [f"echo: n{i}" for i in range(10)]
    assert fake.max_in_flight >= 5
    assert fake.in_flight == 0


async def test_injected_http_client_is_used_and_closed(fake: FakeOpenAI) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.url.path)

    client = httpx.AsyncClient(event_hooks={"request": [record]})
    model = OpenAIChatModel(
        LLMSettings(api_key=SecretStr(KEY), base_url=fake.base_url, max_retries=0), http_client=client
    )
    assert (await model.complete(conversation("via injected"))).text == "echo: via injected"
    await model.aclose()
    assert seen == ["/v1/chat/completions"]
    assert client.is_closed


async def test_build_chat_model_offline_without_key() -> None:
    assert build_chat_model(LLMSettings()) is None
    assert build_chat_model(LLMSettings(api_key=SecretStr(""))) is None


async def test_build_chat_model_with_key(fake: FakeOpenAI) -> None:
    model = build_chat_model(LLMSettings(api_key=SecretStr(KEY), base_url=fake.base_url))
    assert isinstance(model, OpenAIChatModel)
    assert isinstance(model, ChatModel)
    await model.aclose()


async def test_repr_hides_the_key(make_model: ModelFactory) -> None:
    model = make_model(base_url="http://user:pw-secret@127.0.0.1:9/v1?key=q-secret")
    for text in (repr(model), str(model)):
        assert KEY not in text
        assert "secret" not in text
        assert "gpt-4o-mini" in text


# ----- tools (function calling) ------------------------------------------------------------------

HANDOFF = Tool(
    name="request_human",
    description="Hand the conversation to a person.",
    parameters={"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
)


async def test_offered_tools_go_out_as_functions(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    answer = await make_model().complete(conversation("hi"), tools=[HANDOFF])
    assert (answer.text, answer.tool_calls) == ("echo: hi", ())
    (call,) = fake.calls
    assert call["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "request_human",
                "description": "Hand the conversation to a person.",
                "parameters": HANDOFF.parameters,
            },
        }
    ]


async def test_a_tool_call_without_text_is_valid(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.push(200, tool_call_body("request_human", {"reason": "refund decision"}))
    answer = await make_model().complete(conversation(), tools=[HANDOFF])
    assert answer.text == ""
    called = answer.called("request_human")
    assert called is not None and called.arguments == {"reason": "refund decision"}


async def test_a_tool_call_with_text_keeps_both(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.push(200, tool_call_body("request_human", {"reason": "angry"}, content="  One moment.  "))
    answer = await make_model().complete(conversation(), tools=[HANDOFF])
    assert answer.text == "One moment." and answer.called("request_human") is not None


async def test_a_call_to_a_tool_not_offered_is_dropped(fake: FakeOpenAI, make_model: ModelFactory) -> None:
    fake.push(200, tool_call_body("delete_account", {"id": 1}, content="Done."))
    answer = await make_model().complete(conversation(), tools=[HANDOFF])
    assert (answer.text, answer.tool_calls) == ("Done.", ())
    fake.push(200, tool_call_body("delete_account", {"id": 1}))
    with pytest.raises(LLMError, match="without text"):
        await make_model().complete(conversation(), tools=[HANDOFF])


async def test_a_tool_call_is_ignored_when_no_tool_was_offered(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    fake.push(200, tool_call_body("request_human", {"reason": "x"}, content="Hello."))
    answer = await make_model().complete(conversation())
    assert (answer.text, answer.tool_calls) == ("Hello.", ())
    fake.push(200, tool_call_body("request_human", {"reason": "x"}))
    with pytest.raises(LLMError):
        await make_model().complete(conversation())


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param("not json {", id="not-json"),
        pytest.param("[1, 2]", id="json-array"),
        pytest.param('"a string"', id="json-string"),
        pytest.param("", id="empty"),
        pytest.param(json.dumps({"reason": "x" * 5000}), id="too-long"),
    ],
)
async def test_malformed_arguments_count_as_none(
    fake: FakeOpenAI, make_model: ModelFactory, arguments: str
) -> None:
    fake.push(200, tool_call_body("request_human", arguments))
    answer = await make_model().complete(conversation(), tools=[HANDOFF])
    called = answer.called("request_human")
    assert answer.text == "" and called is not None and called.arguments == {}


def _with_tool_calls(tool_calls: Any, content: str | None = None) -> dict[str, Any]:
    body = completion_body(content)
    body["choices"][0]["message"]["tool_calls"] = tool_calls
    return body


@pytest.mark.parametrize(
    "tool_calls",
    [
        pytest.param("nonsense", id="not-a-list"),
        pytest.param([42], id="item-not-object"),
        pytest.param([{"type": "function"}], id="no-function"),
        pytest.param([{"id": "c", "type": "function", "function": {"arguments": "{}"}}], id="no-name"),
        pytest.param(
            [{"id": "c", "type": "function", "function": {"name": 7, "arguments": "{}"}}], id="int-name"
        ),
        pytest.param(
            [{"id": "c", "type": "custom", "custom": {"name": "request_human", "input": "x"}}], id="custom"
        ),
        pytest.param({"request_human": {}}, id="object"),
    ],
)
async def test_malformed_tool_calls_never_crash(
    fake: FakeOpenAI, make_model: ModelFactory, tool_calls: Any
) -> None:
    fake.push(200, _with_tool_calls(tool_calls))  # no text: nothing usable
    with pytest.raises(LLMError):
        await make_model().complete(conversation(), tools=[HANDOFF])
    fake.push(200, _with_tool_calls(tool_calls, content="Hello."))  # with text: the text, no call
    answer = await make_model().complete(conversation(), tools=[HANDOFF])
    assert (answer.text, answer.tool_calls) == ("Hello.", ())


async def test_tool_arguments_are_never_logged(
    fake: FakeOpenAI, make_model: ModelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.push(200, tool_call_body("request_human", {"reason": SECRET_TEXT}))
    answer = await make_model().complete(conversation(SECRET_TEXT), tools=[HANDOFF])
    called = answer.called("request_human")
    assert called is not None and called.arguments == {"reason": SECRET_TEXT}
    assert SECRET_TEXT not in caplog.text
    assert SECRET_TEXT not in repr(answer)
    assert "tools called: request_human" in caplog.text  # the offered name is what is logged


async def test_the_fake_calls_a_tool_on_its_trigger_only_when_offered(
    fake: FakeOpenAI, make_model: ModelFactory
) -> None:
    fake.tool_triggers = [ToolTrigger(phrase="A Person", with_text=False)]
    model = make_model()
    handed = await model.complete(conversation("can I talk to a person?"), tools=[HANDOFF])
    assert handed.text == "" and handed.called("request_human") is not None
    assert (await model.complete(conversation("can I talk to a person?"))).tool_calls == ()  # not offered
    assert (await model.complete(conversation("hello"), tools=[HANDOFF])).tool_calls == ()  # no trigger
    fake.tool_triggers = [ToolTrigger(phrase="person")]  # with_text by default: the responder's text too
    both = await model.complete(conversation("a person"), tools=[HANDOFF])
    assert both.text == "echo: a person" and both.called("request_human") is not None
    fake.reset()
    assert fake.tool_triggers == ()


# ----- the fake itself, from sync code and as a standalone process --------------------------------


def test_fake_serves_sync_clients_and_models_route() -> None:
    with FakeOpenAI() as fake, httpx.Client(base_url=fake.base_url) as client:
        assert client.get("/models").json()["data"][0]["id"] == "gpt-4o-mini"
        fake.push(503, {"error": {"message": "busy"}}, headers={"Retry-After": "7"})
        forced = client.post("/chat/completions", json={"model": "m", "messages": []})
        assert (forced.status_code, forced.headers["retry-after"]) == (503, "7")
        json_mode = {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        }
        reply = client.post("/chat/completions", json=json_mode).json()
        assert json.loads(reply["choices"][0]["message"]["content"]) == {"echo": "echo: x"}
        assert len(fake.calls) == 2
        fake.reset()
        assert (fake.calls, fake.max_in_flight, fake.pending_forced) == ([], 0, 0)


async def test_fake_supports_async_with() -> None:
    async with FakeOpenAI(api_key="k") as fake, httpx.AsyncClient(base_url=fake.base_url) as client:
        assert (await client.get("/models")).status_code == 401
        authorized = await client.get("/models", headers={"Authorization": "Bearer k"})
        assert authorized.status_code == 200


@pytest.mark.slow
def test_fake_runs_standalone_and_logs_calls(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--delay", "0.01", "--log", str(log)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            assert base_url.endswith("/v1")
            with httpx.Client(base_url=base_url, timeout=10) as client:
                for text in ("one", "two"):
                    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
                    assert client.post("/chat/completions", json=body).status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["request"]["messages"][0]["content"] for line in lines] == ["one", "two"]
