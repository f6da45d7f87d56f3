"""The admin API's JSON shapes that are not identity's: failed replies (dead letters), handoffs, memory
searches and error bodies.

Pydantic models only, no FastAPI (like ``identity.views``, which holds the identity shapes): the router
(``core.web.admin``) answers with them, and a command line could print them without the web framework.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.messages import MemoryFilter, MemoryRecord


class DeadLetterOut(BaseModel):
    """A reply that failed for good (``retryable``: an admin may send it again)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str
    customer_id: str | None
    inbox_id: int | None
    attempts: int
    parts_sent: int
    last_error: str | None
    created_at: datetime
    retryable: bool


class RetryRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class DeadLettersOut(BaseModel):
    dead_letters: list[DeadLetterOut]


class ErrorOut(BaseModel):
    """Why a call was refused; nothing was changed."""

    detail: str


class UnprocessableOut(BaseModel):
    """A 422: FastAPI's validation errors (a list) or an unusable address (a sentence)."""

    detail: str | list[dict[str, Any]]


# ----- handoff ---------------------------------------------------------------------------------------

OperatorName = Field(
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.@-]*$",
    description="Who acts (an operator's name: letters, digits, space, _ . @ -).",
)


class HandoffRequest(BaseModel):
    operator: str = OperatorName
    note: str | None = Field(default=None, max_length=500)


class HandBackRequest(BaseModel):
    operator: str = OperatorName


class HandoffOut(BaseModel):
    """A conversation handed to a person: ``waiting`` (asked for), ``owned`` (taken), ``closed``."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: str
    status: str
    requested_by: str = Field(description="customer, assistant (the LLM's tool), fallback, or operator.")
    operator: str | None
    note: str | None
    channel: str | None
    since: datetime = Field(description="When it was opened.")
    taken_at: datetime | None
    answered_at: datetime | None
    escalated_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    waiting_seconds: float = Field(description="From opening to a person's first reply (or now).")


class HandoffsOut(BaseModel):
    handoffs: list[HandoffOut]


class FileIn(BaseModel):
    """A file of an operator's reply. The name is made safe and the type is what the bytes are (sniffed);
    ``media_type`` is only what the sender says."""

    name: str = Field(min_length=1, max_length=255)
    media_type: str | None = Field(default=None, max_length=100)
    data_base64: str = Field(min_length=1, description="The file's bytes, base64 (RFC 4648, padded).")


class ReplyRequest(BaseModel):
    text: str = Field(default="", max_length=4000, description="May be empty when files are sent.")
    attachments: list[FileIn] = Field(
        default_factory=list,
        max_length=50,
        description="Files sent after the text: each on THREADLINE_ATTACHMENTS__ALLOWED_TYPES, at most "
        "__MAX_PER_MESSAGE of them and __MAX_BYTES in all.",
    )
    operator: str = OperatorName
    channel: str | None = Field(
        default=None, pattern=r"^(slack|telegram|sms|email|console)$", description="Default: the latest."
    )
    key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{8,64}$",
        description="Idempotency key: the same key twice sends once (the Idempotency-Key header works too).",
    )


class ReplyOut(BaseModel):
    outbox_id: int
    customer_id: str
    channel: str
    duplicate: bool = Field(description="The key was used before: nothing new was sent.")


# ----- memories --------------------------------------------------------------------------------------


class MemoryItemOut(BaseModel):
    """One memory with its provenance: where it came from, who said it, and whether anyone checked it."""

    id: str
    text: str
    score: float | None = Field(description="The recall score (a search); null in a listing.")
    category: str | None
    channel: str | None = Field(description="The channel it came from (source_channel).")
    handle: str | None = Field(description="The handle it came from (source_handle).")
    message_ids: list[str]
    turn_ids: list[int]
    created_at: datetime | None = Field(description="When it was written.")
    said_at: datetime | None = Field(
        description="When the customer said it (what it is dated and filtered by); null when not recorded."
    )
    said_by: str | None = Field(description="customer, or support_team (an operator's reply).")
    verified: bool | None = Field(description="false: a statement nobody checked.")
    sender_vouched: bool | None = Field(description="false: from a message nobody vouched for.")
    imported_from: str | None = Field(description="<format>:<original id> when it was imported.")


class MemoryFilterOut(BaseModel):
    category: str | None
    channel: str | None
    since: datetime | None
    until: datetime | None


class MemoriesOut(BaseModel):
    """A customer's memories: recall order for a query, newest first without one."""

    customer_id: str
    query: str | None
    filters: MemoryFilterOut
    memories: list[MemoryItemOut]


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _word(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def memories_out(
    customer_id: str, query: str | None, filters: MemoryFilter, records: list[MemoryRecord]
) -> MemoriesOut:
    return MemoriesOut(
        customer_id=customer_id,
        query=query,
        filters=MemoryFilterOut(
            category=filters.category, channel=filters.channel, since=filters.since, until=filters.until
        ),
        memories=[
            MemoryItemOut(
                id=r.id,
                text=r.text,
                score=r.score,
                category=r.category,
                channel=r.channel,
                handle=r.handle,
                message_ids=list(r.message_ids),
                turn_ids=list(r.turn_ids),
                created_at=r.created_at,
                said_at=r.said_at,
                said_by=_word(r.metadata.get("said_by")),
                verified=_flag(r.metadata.get("verified")),
                sender_vouched=_flag(r.metadata.get("sender_vouched")),
                imported_from=_word(r.metadata.get("imported_from")),
            )
            for r in records
        ],
    )


# ----- support cases ---------------------------------------------------------------------------------


class CaseOut(BaseModel):
    """A support case (``core.pipeline.cases``): ``open`` or ``resolved``, with the turns it came from."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    customer_id: str
    title: str = Field(description="What the problem is, in a few words (redacted).")
    status: str = Field(description="open or resolved.")
    opened_at: datetime
    resolved_at: datetime | None
    opened_by: str = Field(description="assistant (the LLM's tool), rules (offline), or operator:<name>.")
    resolved_by: str | None
    channel: str | None = Field(description="The channel it was opened on.")
    turn_ids: list[int] = Field(description="The conversation turns it came from.")
    summary: str | None = Field(description="How it was resolved (set on resolution).")
    rating: int | None = Field(description="The customer's rating, 1 (bad) to 5 (great).")
    rated_at: datetime | None


class CasesOut(BaseModel):
    customer_id: str
    cases: list[CaseOut] = Field(description="Newest first.")


class CaseOpenRequest(BaseModel):
    """A person opens a case (``core.pipeline.case_desk``), from the customer's latest message if any."""

    title: str = Field(min_length=1, max_length=2000, description="What the problem is (redacted, clipped).")
    operator: str = OperatorName


class CaseResolveRequest(BaseModel):
    """A person resolves an open case; its summary is written to the customer's memory once."""

    summary: str = Field(
        min_length=1, max_length=4000, description="How it was resolved (redacted, clipped)."
    )
    operator: str = OperatorName
    tell: bool = Field(
        default=False,
        description="Tell the customer on their latest private conversation and ask for a 1-5 rating.",
    )


class CaseResolvedOut(BaseModel):
    case: CaseOut
    told_on: str | None = Field(description="The channel the customer was told on; null when not told.")


# ----- event webhooks (core.events) -------------------------------------------------------------------


class EventEndpointRequest(BaseModel):
    """A receiver of the hub's events: its URL (https, on a public address) and the types it wants."""

    url: str = Field(min_length=1, max_length=2000, description="Where events are POSTed (https).")
    events: list[str] = Field(min_length=1, max_length=50, description="Event types, e.g. message.received.")
    include_text: bool = Field(
        default=False,
        description="Send message text, addresses and case summaries (personal data); off: ids only.",
    )
    description: str | None = Field(default=None, max_length=200)


class EventEndpointOut(BaseModel):
    """A registered receiver (its secret is never shown again after it is made)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    include_text: bool
    description: str | None
    created_at: datetime


class EventEndpointCreatedOut(EventEndpointOut):
    secret: str = Field(description="whsec_...: verifies the webhook-signature header. Shown this once.")


class EventEndpointsOut(BaseModel):
    endpoints: list[EventEndpointOut]


class EventDeliveryOut(BaseModel):
    """One delivery of the log; ``id`` is its ``webhook-id`` (the same on every attempt)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    endpoint_id: int
    type: str
    status: str  # pending, failed (retried later), sent, dead (retryable), cancelled
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    retryable: bool


class EventDeliveriesOut(BaseModel):
    endpoint_id: int
    deliveries: list[EventDeliveryOut]
