"""The conversation log: every customer turn and every reply, per customer, across channels.

A reply is ``WITHHELD`` when the handles it was written for were found not to be one customer (an unlink,
the undo of a merge: ``identity.handover``): it may quote either side, so no model is shown it again. The
row stays (emptied), so that its id is never given to another turn: memories name the turns they came
from, and a memory write checks those ids before it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from core.store.db import Database
from core.store.models import Turn

# the role of a reply no model is shown again (its text is removed)
WITHHELD = "withheld"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedTurn:
    id: int
    channel: str
    address: str
    role: str
    text: str
    created_at: datetime
    inbox_id: int | None
    vouched: bool = True


def _logged(row: Turn) -> LoggedTurn:
    return LoggedTurn(
        id=row.id,
        channel=row.channel,
        address=row.address,
        role=row.role,
        text=row.text,
        created_at=row.created_at,
        inbox_id=row.inbox_id,
        vouched=row.vouched is not False,
    )


class ConversationLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def recent(
        self,
        customer_id: str,
        limit: int,
        *,
        before_inbox_id: int | None = None,
        address: str | None = None,
        vouched_only: bool = False,
    ) -> list[LoggedTurn]:
        """The customer's last ``limit`` turns on every channel (or of one ``address``), oldest first;
        ``vouched_only`` leaves out turns of messages nobody vouched for. Withheld replies are left out."""
        if limit <= 0:
            return []
        query = select(Turn).where(Turn.customer_id == customer_id, Turn.role != WITHHELD)
        if address is not None:
            query = query.where(Turn.address == address)
        if vouched_only:
            query = query.where(Turn.vouched.is_(True))
        if before_inbox_id is not None:
            query = query.where((Turn.inbox_id.is_(None)) | (Turn.inbox_id < before_inbox_id))
        async with self._db.read() as session:
            rows = list(await session.scalars(query.order_by(Turn.id.desc()).limit(limit)))
        return [_logged(row) for row in reversed(rows)]

    async def by_ids(self, customer_id: str, turn_ids: list[int]) -> list[LoggedTurn]:
        if not turn_ids:
            return []
        async with self._db.read() as session:
            rows = await session.scalars(
                select(Turn).where(Turn.customer_id == customer_id, Turn.id.in_(turn_ids)).order_by(Turn.id)
            )
            return [_logged(row) for row in rows]
