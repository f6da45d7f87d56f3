"""The channel adapter protocol and the framework-free request and reply it speaks.

Every platform module implements ``ChannelAdapter``:

- ``verify(request)`` fails closed: it raises ``VerificationFailed`` (401/403) before anything is
  parsed, on a missing, stale or wrong signature;
- ``parse(request)`` turns an authentic request into a ``Parsed``: the ``InboundMessage``s to commit
  (none for noise such as edits, joins, bot echoes or auto-replies), delivery ``StatusUpdate``s, and the
  ``WebhookReply`` to answer once they are committed (Slack's challenge, Twilio's empty TwiML). It
  raises ``BadRequest`` (4xx) for a body it cannot read;
- ``send(message)`` delivers a reply through the platform's official SDK, split to the platform's
  limit, and raises ``TransientDeliveryError`` / ``PermanentDeliveryError`` (see ``core.errors``).

The web framework appears only in ``core/web/app.py``: one route per channel converts the request in,
calls verify then parse, commits through the hub, and converts the reply out. Adapters that receive
traffic on their own (the SMTP listener) also implement ``InboundServer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.messages import InboundMessage, StatusUpdate
from core.ports import AcceptFn, InboundServer, Sender

DEFAULT_MAX_BODY_BYTES = 1_048_576


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRequest:
    """An inbound HTTP request as an adapter sees it: raw body bytes, lower-cased header names.

    ``path`` and ``query_string`` are as the client sent them (the query string raw, without ``?``).
    """

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookReply:
    """What to answer the platform once everything parsed has been committed."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    messages: list[InboundMessage] = field(default_factory=list)
    status_updates: list[StatusUpdate] = field(default_factory=list)
    reply: WebhookReply = field(default_factory=WebhookReply)


@runtime_checkable
class ChannelAdapter(Sender, Protocol):
    """A platform channel: verify and parse its webhooks, send replies through its SDK."""

    max_body_bytes: int

    async def verify(self, request: WebhookRequest) -> None: ...

    async def parse(self, request: WebhookRequest) -> Parsed: ...


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "AcceptFn",
    "ChannelAdapter",
    "InboundServer",
    "Parsed",
    "WebhookReply",
    "WebhookRequest",
]
