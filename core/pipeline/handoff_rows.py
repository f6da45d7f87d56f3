"""The handoff rows every part of the handoff touches: the open one, its events, the operator's actions.

``core.pipeline.handoff`` (the rules) and ``core.pipeline.handoff_reply`` (a person's reply) both open,
take and record handoffs in their own transactions; what they share lives here, so that neither imports
the other. ``open_handoff_row`` is also how the worker's commit and the delivery lane see that a person
has taken over.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.events import record_event
from core.metrics import Metrics
from core.store.models import Customer, Handoff, OperatorAction

OPEN = ("waiting", "owned")


async def record_action(
    session: AsyncSession,
    *,
    operator: str,
    action: str,
    customer_id: str | None = None,
    subject: str | None = None,
) -> None:
    """Record what an operator did (``operator_actions``), in the caller's transaction."""
    session.add(OperatorAction(operator=operator, action=action, customer_id=customer_id, subject=subject))


async def handoff_event(session: AsyncSession, event_type: str, row: Handoff) -> None:
    """The business's event (``core.events``) for a handoff opened or closed, in its transaction."""
    await record_event(
        session,
        event_type,
        {
            "handoff_id": row.id,
            "customer_id": row.customer_id,
            "status": row.status,
            "requested_by": row.requested_by,
            "operator": row.operator,
            "channel": row.channel,
            "inbox_id": row.inbox_id,
            "opened_at": row.opened_at,
            "closed_at": row.closed_at,
            "closed_by": row.closed_by,
        },
        personal={"note": row.note},
    )


async def open_handoff_row(session: AsyncSession, customer_id: str) -> Handoff | None:
    return await session.scalar(
        select(Handoff).where(Handoff.customer_id == customer_id, Handoff.status.in_(OPEN))
    )


async def live_customer(session: AsyncSession, customer_id: str) -> Customer:
    """The customer an operator acts on: ``NotFound`` when unknown or forgotten, ``Conflict`` when merged."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id} (unknown or forgotten)")
    if customer.merged_into is not None:
        raise Conflict(f"customer {customer_id} is merged into {customer.merged_into}: act on that one")
    return customer


def own(
    session: AsyncSession,
    row: Handoff | None,
    *,
    customer_id: str,
    operator: str,
    now: datetime,
    metrics: Metrics | None = None,
) -> tuple[Handoff, bool]:
    """``operator`` owns the customer's conversation: a waiting handoff ``row`` is taken (its wait is
    observed), none open (``row`` None) opens an owned one. Returns the handoff and whether it was opened
    here. An owned ``row`` is returned as it is: whose it is, is the caller's check."""
    if row is None:
        row = Handoff(
            customer_id=customer_id,
            status="owned",
            requested_by="operator",
            operator=operator,
            opened_at=now,
            taken_at=now,
        )
        session.add(row)
        return row, True
    if row.status == "waiting":
        row.status, row.operator, row.taken_at = "owned", operator, now
        if metrics is not None:
            metrics.handoff_wait_seconds.observe((now - row.opened_at).total_seconds())
    return row, False
