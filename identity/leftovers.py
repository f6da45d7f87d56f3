"""What other customers hold of a customer being forgotten (``identity.erasure``).

- Replies written for another customer while it held one of the forgotten customer's handles along with
  handles of its own (a merge or a link since undone) may quote them; so may their outbox rows (what was
  sent, or failed to be). ``identity.handover`` withholds such replies when the handles part, and leaves
  the outbox rows with the customer they were written for: here both are found again, from the identity
  ledger (``identity.tenure``), and erased with the customer (a reply is emptied and withheld, its row
  kept: another customer's memories may name its id).
- A memory whose move is still queued (``identity.moves``) sits with the customer its handle left.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent.conversation import WITHHELD
from core.store.models import MemoryMove, OutboxRow, Turn
from identity.tenure import Tenure


async def moves_waiting(session: AsyncSession, family: Collection[str]) -> int:
    """Memory moves of the family still queued or running."""
    ids = list(family)
    count = await session.scalar(
        select(func.count()).where(
            MemoryMove.status.in_(("pending", "running")),
            or_(MemoryMove.from_customer_id.in_(ids), MemoryMove.to_customer_id.in_(ids)),
        )
    )
    return int(count or 0)


async def mixed_rows(
    session: AsyncSession, family: Collection[str], addresses: Collection[str]
) -> tuple[list[int], list[int]]:
    """Replies (turn ids) and outbox rows outside the family written for a customer that then held one of
    ``addresses`` along with other handles: they may quote the family. Such a row may have travelled on
    (a later merge) to a customer that never held those addresses, so they are looked for by the address
    they were written to: any address that was ever a handle together with one of ``addresses``."""
    companions = (await Tenure.load(session, addresses)).companions()
    outside = ~Turn.customer_id.in_(list(family))
    replies = (
        await session.execute(
            select(Turn.id, Turn.address, Turn.created_at, Turn.customer_id).where(
                outside, Turn.address.in_(companions), Turn.role.not_in(("customer", WITHHELD))
            )
        )
    ).all()
    sent = (
        await session.execute(
            select(OutboxRow.id, OutboxRow.recipient, OutboxRow.created_at, OutboxRow.customer_id).where(
                or_(OutboxRow.customer_id.is_(None), ~OutboxRow.customer_id.in_(list(family))),
                OutboxRow.recipient.in_(companions),
            )
        )
    ).all()
    if not replies and not sent:
        return [], []
    tenure = await Tenure.load(session, {*addresses, *(row[1] for row in [*replies, *sent])})

    def mixed(rows: list[Any]) -> list[int]:
        return [
            row_id
            for row_id, address, when, holder in rows
            if tenure.mixed(address, when, holder=holder or "", side=addresses)
        ]

    return mixed(list(replies)), mixed(list(sent))
