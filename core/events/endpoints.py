"""The admin side of event webhooks: register, list and delete endpoints; their delivery log; retries.

An endpoint is made with a fresh ``whsec_`` secret, returned by ``create_endpoint`` once and never shown
again (an admin who lost it deletes the endpoint and registers it anew). Deleting one is final: its
secret is emptied, its deliveries still queued are ``cancelled`` (nothing more is sent to it), and its log
is no longer listed. A dead delivery (``core.events.sender``) may be retried: it goes back to the queue
with a fresh count of tries, under the same ``webhook-id``. Nothing here logs a URL or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from core.errors import Conflict, NotFound
from core.events.addresses import check
from core.events.record import EVENT_TYPES
from core.events.signing import new_secret
from core.store.db import Database
from core.store.models import EventDelivery, EventEndpoint, utcnow

log = logging.getLogger(__name__)

QUEUED = ("pending", "failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    """An endpoint as an admin sees it (never its secret)."""

    id: int
    url: str
    events: list[str]
    include_text: bool
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: EventEndpoint) -> EndpointView:
        return cls(
            id=row.id,
            url=row.url,
            events=list(row.event_types),
            include_text=row.include_text,
            description=row.description,
            created_at=row.created_at,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryView:
    """One delivery of the log: ``id`` is its ``webhook-id``; the body is not shown (it may hold text)."""

    id: str
    endpoint_id: int
    type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @property
    def retryable(self) -> bool:
        return self.status == "dead"

    @classmethod
    def of(cls, row: EventDelivery) -> DeliveryView:
        return cls(
            id=row.webhook_id,
            endpoint_id=row.endpoint_id,
            type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
        )


def checked_types(events: Sequence[str]) -> list[str]:
    """The event types asked for, known and without repeats; ``ValueError`` naming an unknown one."""
    wanted: list[str] = []
    for name in events:
        if name not in EVENT_TYPES:
            raise ValueError(f"unknown event type {name!r}; known: {', '.join(EVENT_TYPES)}")
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise ValueError("name at least one event type")
    return wanted


async def create_endpoint(
    db: Database,
    *,
    url: str,
    events: Sequence[str],
    include_text: bool = False,
    description: str | None = None,
    allow_private: bool = False,
) -> tuple[EndpointView, str]:
    """Register a receiver; returns it and its secret (the only time the secret leaves the hub).
    ``ValueError`` (``RefusedURL`` among them) for a bad URL or type: then nothing is stored."""
    types = checked_types(events)
    await check(url, allow_private=allow_private)
    secret = new_secret()
    async with db.session() as session:
        row = EventEndpoint(
            url=url,
            event_types=types,
            secret=secret,
            include_text=include_text,
            description=description,
            created_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        view = EndpointView.of(row)
    log.info("event endpoint %s registered (%d types, text %s)", view.id, len(types), include_text)
    return view, secret


async def list_endpoints(db: Database) -> list[EndpointView]:
    async with db.read() as session:
        rows = await session.scalars(
            select(EventEndpoint).where(EventEndpoint.deleted_at.is_(None)).order_by(EventEndpoint.id)
        )
        return [EndpointView.of(row) for row in rows]


async def _live(db: Database, endpoint_id: int) -> EventEndpoint:
    async with db.read() as session:
        row = await session.get(EventEndpoint, endpoint_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no event endpoint {endpoint_id}")
    return row


async def delete_endpoint(db: Database, endpoint_id: int) -> EndpointView:
    """Delete an endpoint: nothing more is sent to it (its queued deliveries are cancelled)."""
    async with db.session() as session:
        row = await session.get(EventEndpoint, endpoint_id, with_for_update=True)
        if row is None or row.deleted_at is not None:
            raise NotFound(f"no event endpoint {endpoint_id}")
        row.deleted_at, row.secret = utcnow(), ""
        cancelled = await session.execute(
            update(EventDelivery)
            .where(EventDelivery.endpoint_id == endpoint_id, EventDelivery.status.in_(QUEUED))
            .values(status="cancelled", next_attempt_at=None, last_error="endpoint deleted")
        )
        view = EndpointView.of(row)
    log.info(
        "event endpoint %s deleted (%d queued deliveries cancelled)",
        endpoint_id,
        cancelled.rowcount,  # type: ignore[attr-defined]
    )
    return view


async def list_deliveries(
    db: Database, endpoint_id: int, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[DeliveryView]:
    """The endpoint's deliveries, newest first (``status``: only those)."""
    await _live(db, endpoint_id)
    query = select(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(EventDelivery.status == status)
    async with db.read() as session:
        rows = await session.scalars(query.order_by(EventDelivery.id.desc()).limit(limit).offset(offset))
        return [DeliveryView.of(row) for row in rows]


async def retry_delivery(db: Database, endpoint_id: int, msg_id: str) -> DeliveryView:
    """Queue a dead delivery again, same ``webhook-id``, fresh tries. ``NotFound``/``Conflict``."""
    await _live(db, endpoint_id)
    async with db.session() as session:
        row = await session.scalar(
            select(EventDelivery).where(
                EventDelivery.webhook_id == msg_id, EventDelivery.endpoint_id == endpoint_id
            )
        )
        if row is None:
            raise NotFound(f"no delivery {msg_id} for event endpoint {endpoint_id}")
        if row.status != "dead":
            raise Conflict(f"delivery {msg_id} is {row.status}, not dead")
        row.status, row.attempts, row.next_attempt_at = "pending", 0, None
        await session.flush()
        view = DeliveryView.of(row)
    log.info("event delivery %s of endpoint %s queued again", row.id, endpoint_id)
    return view
