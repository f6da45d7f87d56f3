"""The LLM: any OpenAI-compatible endpoint through the official ``openai`` SDK.

``OpenAIChatModel`` implements ``core.ports.ChatModel``. Every failure (HTTP status errors after the
SDK's own retries, timeouts, connection errors, and garbage answers) becomes an ``LLMError`` whose
message names the kind of failure only: never a prompt, a reply or the API key.

Tools (OpenAI function calling): the offered ``core.messages.Tool`` s go out as ``tools``; the answer's
``tool_calls`` come back as ``ToolCall`` s. An answer that only calls a tool (no text) is valid. The
answer's shape is never trusted: a call to a tool that was not offered, or not shaped as a function call,
is dropped; arguments that are not a JSON object (or are too long) count as no arguments. Arguments are
the model's words and may quote the customer: they are never logged, only the names of offered tools.
A user message's images (``ChatMessage.images``, a customer's photos when ``THREADLINE_LLM__VISION`` is on)
go as OpenAI ``image_url`` content parts holding ``data:`` URLs (base64): the endpoint is never given a URL
of ours to fetch.
``build_chat_model`` returns ``None`` when no key is configured (offline mode); when a base URL is set
without a key it logs one warning that says so (``LLMSettings.offline_notice``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Collection, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartImageParam,
    ChatCompletionContentPartParam,
    ChatCompletionContentPartTextParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolParam,
    ChatCompletionUserMessageParam,
)

from core.errors import ConfigError, LLMError
from core.messages import ChatMessage, Completion, ImagePart, Tool, ToolCall
from core.ports import ChatModel
from core.settings import LLMSettings, env_name

logger = logging.getLogger(__name__)

UNREACHABLE = "LLM endpoint unreachable"  # the LLMError of a connection that could not be made
MAX_ARGUMENT_CHARS = 4_000  # a tool call's arguments beyond this are not read (counted as none)


def _to_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return ChatCompletionSystemMessageParam(role="system", content=message.content)
    if message.role == "assistant":
        return ChatCompletionAssistantMessageParam(role="assistant", content=message.content)
    if message.images:
        parts: list[ChatCompletionContentPartParam] = [
            ChatCompletionContentPartTextParam(type="text", text=message.content)
        ]
        parts += [
            ChatCompletionContentPartImageParam(
                type="image_url", image_url={"url": _data_url(image), "detail": "auto"}
            )
            for image in message.images
        ]
        return ChatCompletionUserMessageParam(role="user", content=parts)
    return ChatCompletionUserMessageParam(role="user", content=message.content)


def _data_url(image: ImagePart) -> str:
    """The image inline as a ``data:`` URL: the endpoint never fetches anything of ours."""
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def endpoint_of(base_url: str | None) -> str:
    """Scheme, host and port only: a base URL may carry credentials in its user info or query."""
    if not base_url:
        return "default"
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _tool_param(tool: Tool) -> ChatCompletionToolParam:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": dict(tool.parameters)},
    }


def _field(value: object, name: str) -> object:
    """``value.name`` of an SDK model, or ``value[name]`` of a dict (what the SDK leaves of a part it could
    not parse); None otherwise."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _arguments(raw: object) -> dict[str, Any]:
    """A tool call's arguments as a JSON object; ``{}`` for anything else (they are never logged)."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or len(raw) > MAX_ARGUMENT_CHARS:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_calls(message: object, offered: Collection[str]) -> tuple[ToolCall, ...]:
    """The answer's calls to offered tools; anything else in ``tool_calls`` is dropped."""
    raw = _field(message, "tool_calls")
    if not isinstance(raw, list):
        return ()
    calls: list[ToolCall] = []
    for item in raw:
        function = _field(item, "function")
        name = _field(function, "name")
        if not isinstance(name, str) or name not in offered:
            continue
        calls.append(ToolCall(name=name, arguments=_arguments(_field(function, "arguments"))))
    return tuple(calls)


def _completion(completion: object, offered: Collection[str]) -> Completion:
    """The assistant's text and tool calls, or ``LLMError`` for anything unusable. Never trusts the
    response's shape."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise LLMError("LLM answered without choices")
    message = getattr(choices[0], "message", None)
    calls = _tool_calls(message, offered) if offered else ()
    content = getattr(message, "content", None)
    if content is None and calls:
        return Completion(text="", tool_calls=calls)
    if content is None and getattr(message, "refusal", None):
        raise LLMError("LLM refused to answer")
    if not isinstance(content, str):
        raise LLMError("LLM answered without text content")
    text = content.strip()
    if not text and not calls:
        raise LLMError("LLM answered empty content")
    return Completion(text=text, tool_calls=calls)


class OpenAIChatModel:
    """A ``ChatModel`` over ``openai.AsyncOpenAI``.

    ``http_client`` injects a transport (for tests or proxies); the model then owns it and closes it
    in ``aclose``. The SDK retries 408/409/429/5xx and connection errors ``max_retries`` times.
    """

    __slots__ = ("_client", "_host", "_max_tokens", "_model")

    def __init__(self, settings: LLMSettings, *, http_client: httpx.AsyncClient | None = None) -> None:
        if settings.api_key is None or not settings.configured:
            raise ConfigError(
                f"{env_name('llm', 'api_key')} (or OPENAI_API_KEY) is required for the LLM",
                setting=env_name("llm", "api_key"),
            )
        self._model = settings.model
        self._max_tokens = settings.max_tokens
        self._host = endpoint_of(settings.base_url)
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key.get_secret_value(),
            base_url=settings.base_url,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            # Typed as httpx2 by newer SDKs, which accept an httpx client as well.
            http_client=cast(Any, http_client),
        )

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self._model!r}, endpoint={self._host!r})"

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, messages: list[ChatMessage], *, tools: Sequence[Tool] = ()) -> Completion:
        """The model's answer to ``messages``, offered ``tools``. Raises ``LLMError`` on failure, timeout
        or garbage (neither text nor a call to an offered tool)."""
        if not messages:
            raise LLMError("no messages to complete")
        options: dict[str, Any] = {}
        if tools:  # an endpoint without function calling still serves the calls that offer none
            options["tools"] = [_tool_param(tool) for tool in tools]
        try:
            completion = await self._client.chat.completions.create(
                model=self._model,
                messages=[_to_param(m) for m in messages],
                max_tokens=self._max_tokens,
                **options,
            )
        except openai.APITimeoutError as exc:
            logger.warning("LLM call to %s timed out", self._host)
            raise LLMError("LLM request timed out") from exc
        except openai.APIConnectionError as exc:
            logger.warning("LLM call to %s could not connect", self._host)
            raise LLMError(UNREACHABLE) from exc
        except openai.APIStatusError as exc:
            logger.warning(
                "LLM call to %s failed with HTTP %s (request id %s)",
                self._host,
                exc.status_code,
                exc.request_id,
            )
            raise LLMError(f"LLM endpoint answered HTTP {exc.status_code}") from exc
        except openai.APIResponseValidationError as exc:
            logger.warning("LLM call to %s answered an invalid body (HTTP %s)", self._host, exc.status_code)
            raise LLMError("LLM answered an invalid body") from exc
        except (openai.OpenAIError, ValueError, TypeError) as exc:
            # OpenAIError covers the remaining SDK errors; ValueError/TypeError a body that is not JSON.
            logger.warning("LLM call to %s failed: %s", self._host, type(exc).__name__)
            raise LLMError("LLM request failed") from exc
        try:
            answer = _completion(completion, {tool.name for tool in tools})
        except LLMError:
            logger.warning(
                "LLM call to %s answered garbage (completion id %s)", self._host, _id_of(completion)
            )
            raise
        logger.debug(
            "LLM reply from %s: completion id %s, %d chars, tools called: %s",
            self._host,
            _id_of(completion),
            len(answer.text),
            ", ".join(call.name for call in answer.tool_calls) or "none",  # offered names only
        )
        return answer

    async def aclose(self) -> None:
        await self._client.close()


def _id_of(completion: object) -> str:
    value = getattr(completion, "id", None)
    return value if isinstance(value, str) else "?"


def build_chat_model(settings: LLMSettings) -> ChatModel | None:
    """The configured chat model, or ``None`` in offline mode (no API key)."""
    if not settings.configured:
        if settings.offline_notice:  # an endpoint was meant to be used: say why it is not
            logger.warning("%s", settings.offline_notice)
        else:
            logger.info("no LLM API key configured: offline mode")
        return None
    return OpenAIChatModel(settings)
