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
