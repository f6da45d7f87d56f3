"""The business's signed event webhooks: the receivers and the deliveries to each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, Id, Leased, UTCDateTime, utcnow


class EventEndpoint(Base):
    """A business's receiver of the hub's events (``core.events``): where they go and which types.

    ``secret`` (``whsec_...``) signs every delivery (Standard Webhooks); it is shown once, when the endpoint
    is made, and never again (no API answer, log line or repr carries it). It is kept as it is because
    the hub needs it to sign; a deleted endpoint (``deleted_at``) has it emptied. ``include_text``: the
    events carry the message text and the customer's address (personal data) only when this is set.
    """

    __tablename__ = "event_endpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(128))
    include_text: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EventDelivery(Leased, Base):
    """One event for one endpoint: the durable queue of the event lane and its delivery log at once.

    ``webhook_id`` (``msg_...``) is the ``webhook-id`` header, the same on every attempt (receivers drop
    repeats by it). ``status``: ``pending`` (not tried yet) → ``failed`` (an attempt failed; retried at
    ``next_attempt_at``) → ``sent`` (a 2xx answer) or ``dead`` (``events.max_attempts`` tries failed: an
    admin may retry it); ``cancelled``: its endpoint was deleted first. ``payload`` is the JSON body as
    sent (``{"type", "timestamp", "data"}``); ``customer_id`` is whom it is about (forget removes it).
    """

    __tablename__ = "event_deliveries"
    __table_args__ = (
        Index("ix_event_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_event_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("event_endpoints.id"))
    event_type: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
