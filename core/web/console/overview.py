"""The console's overview: messages per channel per hour over the last 24 hours, how fast the bot replies,
and how many conversations wait for a person.

Counted in Python from bounded queries (at most ``MAX_ROWS`` rows each, the newest; ``truncated`` says
when the window held more): inbound messages by ``received_at``, and the bot's replies (outbox rows of
origin ``bot`` or ``handoff``) sent in the window, each timed from its message's ``received_at`` to its
``sent_at``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from core.compose import Services
from core.store.models import InboxRow, OutboxRow, utcnow

HOURS = 24
MAX_ROWS = 50_000
BOT_ORIGINS = ("bot", "handoff")


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    hours: list[datetime]  # the start of each hour, oldest first (the last is the current hour)
    messages: dict[str, list[int]]  # channel -> messages received in each hour
    messages_truncated: bool
    median_reply_seconds: float | None  # over the whole window
    median_reply_by_hour: list[float | None]
    replies: int
    replies_truncated: bool
    open_handoffs: dict[str, int]  # waiting, owned

    @property
    def total_messages(self) -> int:
        return sum(sum(counts) for counts in self.messages.values())

    @property
    def labels(self) -> list[str]:
        return [f"{hour:%H}:00" for hour in self.hours]


def _bucket(start: datetime, moment: datetime) -> int | None:
    index = int((moment - start).total_seconds() // 3600)
    return index if 0 <= index < HOURS else None


async def overview(svc: Services, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=HOURS - 1)
    hours = [start + timedelta(hours=i) for i in range(HOURS)]
    async with svc.db.read() as session:
        received = list(
            await session.execute(
                select(InboxRow.channel, InboxRow.received_at)
                .where(InboxRow.received_at >= start)
                .order_by(InboxRow.id.desc())
                .limit(MAX_ROWS + 1)
            )
        )
        replied = list(
            await session.execute(
                select(InboxRow.received_at, OutboxRow.sent_at)
                .join(InboxRow, OutboxRow.inbox_id == InboxRow.id)
                .where(
                    OutboxRow.sent_at.is_not(None),
                    OutboxRow.sent_at >= start,
                    OutboxRow.origin.in_(BOT_ORIGINS),
                )
                .order_by(OutboxRow.id.desc())
                .limit(MAX_ROWS + 1)
            )
        )
    messages: dict[str, list[int]] = {}
    for channel, at in received[:MAX_ROWS]:
        index = _bucket(start, at)
        if index is not None:
            messages.setdefault(channel, [0] * HOURS)[index] += 1
    by_hour: list[list[float]] = [[] for _ in range(HOURS)]
    every: list[float] = []
    for received_at, sent_at in replied[:MAX_ROWS]:
        index = _bucket(start, sent_at) if sent_at is not None else None
        if index is None or sent_at is None:
            continue
        seconds = max(0.0, (sent_at - received_at).total_seconds())
        by_hour[index].append(seconds)
        every.append(seconds)
    return Overview(
        hours=hours,
        messages=dict(sorted(messages.items())),
        messages_truncated=len(received) > MAX_ROWS,
        median_reply_seconds=statistics.median(every) if every else None,
        median_reply_by_hour=[statistics.median(s) if s else None for s in by_hour],
        replies=len(every),
        replies_truncated=len(replied) > MAX_ROWS,
        open_handoffs=await svc.handoffs.count_open(),
    )
