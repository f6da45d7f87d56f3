"""The LLM conversation: roles, messages (with images), the tools offered and the calls the model made,
and its answer. Used by ``core.ports.ChatModel`` and the agent; ``core.messages`` re-exports them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePart:
    """An image shown to a vision-capable LLM beside a message's text (a customer's photo): its bytes and
    their sniffed type. Bytes are kept out of ``repr``."""

    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    """One message of an LLM conversation: its text, and (a user message, ``THREADLINE_LLM__VISION``) the
    images that go with it, sent as OpenAI ``image_url`` content parts."""

    role: Role
    content: str
    images: tuple[ImagePart, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A function the LLM is offered besides answering (OpenAI function calling): its name, when to call
    it (the model reads ``description``) and the JSON Schema of its arguments (an object schema)."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """The model called an offered tool. ``arguments`` are the model's own words (they may quote the
    customer): kept out of ``repr`` and never logged."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """What the LLM answered: its text (``""`` when it only called tools) and the offered tools it called.
    Never empty: without text it called a tool (``ChatModel.complete`` raises ``LLMError`` otherwise)."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()

    def called(self, name: str) -> ToolCall | None:
        """The first call to the tool ``name``, if the model made one."""
        return next((call for call in self.tool_calls if call.name == name), None)
