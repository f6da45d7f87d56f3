"""The admin API's JSON shapes that are not identity's: failed replies (dead letters) and error bodies.

Pydantic models only, no FastAPI (like ``identity.views``, which holds the identity shapes): the router
(``core.web.admin``) answers with them, and a command line could print them without the web framework.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class ReplyRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
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
