"""``record_event``: an event, written in the transaction of what it reports (a row per subscribed endpoint).

The caller's transaction decides: when it rolls back, no event was recorded; when it commits, every
endpoint subscribed to the type has a pending delivery (``core.events.sender`` sends it). So a crash loses
no event, and an event is never told about something that did not happen. On PostgreSQL the same
transaction announces the ``events`` lane (``core.store.wakeups``): the lanes of every process sharing the
store wake when it commits, instead of at their next poll.

What an event carries (``data``): ids (customer, inbox and outbox rows, case, handoff, ledger entry),
channels and times; never a secret. ``personal`` holds what is personal data: the message text, the
customer's address, a case's title or summary, a handoff's note. It goes only to endpoints registered with
``include_text`` (a business that wants its CRM to hold the conversation asks for it explicitly); for the
others it is left out entirely, not masked. An event about a forgotten customer is removed with them
(``identity.erasure``).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.store.models import EventDelivery, EventEndpoint, utcnow
from core.store.wakeups import announce

log = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "message.received",
    "reply.sent",
    "handoff.requested",
    "handoff.closed",
    "customer.linked",
    "customer.unlinked",
    "customer.merged",
    "customer.unmerged",
    "customer.forgotten",
    "case.opened",
    "case.resolved",
)


def webhook_id() -> str:
    """A delivery's ``webhook-id``: ``msg_`` and 128 random bits (the same on every attempt)."""
    return "msg_" + secrets.token_urlsafe(16)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def record_event(
    session: AsyncSession,
    event_type: str,
    data: Mapping[str, Any],
    *,
    personal: Mapping[str, Any] | None = None,
) -> int:
    """Queue ``event_type`` for every live endpoint subscribed to it, in ``session``'s transaction.

    ``data``: ids and times (datetimes become ISO 8601); ``personal``: added to ``data`` only for endpoints
    with ``include_text``. Returns how many deliveries were queued."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    endpoints = [
        endpoint
        for endpoint in await session.scalars(select(EventEndpoint).where(EventEndpoint.deleted_at.is_(None)))
        if event_type in endpoint.event_types
    ]
    if not endpoints:
        return 0
    now = utcnow()
    plain = _json_safe(data)
    full = {**plain, **_json_safe(personal or {})}
    customer_id = plain.get("customer_id")
    for endpoint in endpoints:
        session.add(
            EventDelivery(
                webhook_id=webhook_id(),
                endpoint_id=endpoint.id,
                event_type=event_type,
                customer_id=customer_id if isinstance(customer_id, str) else None,
                payload={
                    "type": event_type,
                    "timestamp": now.isoformat(),
                    "data": full if endpoint.include_text else plain,
                },
                status="pending",
                attempts=0,
                created_at=now,
            )
        )
    await announce(session, "events")  # on PostgreSQL: the event lanes wake when this commits
    log.debug("event %s queued for %d endpoints", event_type, len(endpoints))
    return len(endpoints)
