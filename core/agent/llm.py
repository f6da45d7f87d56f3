"""The LLM: any OpenAI-compatible endpoint through the official ``openai`` SDK.

``OpenAIChatModel`` implements ``core.ports.ChatModel``. Every failure (HTTP status errors after the
SDK's own retries, timeouts, connection errors, and garbage answers) becomes an ``LLMError`` whose
message names the kind of failure only: never a prompt, a reply or the API key.
``build_chat_model`` returns ``None`` when no key is configured (offline mode); when a base URL is set
without a key it logs one warning that says so (``LLMSettings.offline_notice``).
"""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from core.errors import ConfigError, LLMError
from core.messages import ChatMessage
from core.ports import ChatModel
from core.settings import LLMSettings, env_name

logger = logging.getLogger(__name__)

UNREACHABLE = "LLM endpoint unreachable"  # the LLMError of a connection that could not be made


def _to_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return ChatCompletionSystemMessageParam(role="system", content=message.content)
    if message.role == "assistant":
        return ChatCompletionAssistantMessageParam(role="assistant", content=message.content)
    return ChatCompletionUserMessageParam(role="user", content=message.content)


def endpoint_of(base_url: str | None) -> str:
    """Scheme, host and port only: a base URL may carry credentials in its user info or query."""
    if not base_url:
        return "default"
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _reply_text(completion: object) -> str:
    """The assistant's text, or ``LLMError`` for anything unusable. Never trusts the response's shape."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise LLMError("LLM answered without choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if content is None and getattr(message, "refusal", None):
        raise LLMError("LLM refused to answer")
    if not isinstance(content, str):
        raise LLMError("LLM answered without text content")
    text = content.strip()
    if not text:
        raise LLMError("LLM answered empty content")
    return text


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

    async def complete(self, messages: list[ChatMessage]) -> str:
        """The model's reply to ``messages``. Raises ``LLMError`` on failure, timeout or garbage."""
        if not messages:
            raise LLMError("no messages to complete")
        try:
            completion = await self._client.chat.completions.create(
                model=self._model,
                messages=[_to_param(m) for m in messages],
                max_tokens=self._max_tokens,
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
            text = _reply_text(completion)
        except LLMError:
            logger.warning(
                "LLM call to %s answered garbage (completion id %s)", self._host, _id_of(completion)
            )
            raise
        logger.debug(
            "LLM reply from %s: completion id %s, %d chars", self._host, _id_of(completion), len(text)
        )
        return text

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
