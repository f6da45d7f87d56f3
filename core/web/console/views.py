"""What the console's pages show, read from the store: the inbox, a customer's timeline and page.

Nothing here changes anything, and every query is bounded (the inbox looks at the latest
``RECENT_TURNS`` turns, a timeline shows a customer's latest ``TIMELINE_TURNS``). A customer's turn shows
the files it came with (name, type, size, or why it was refused; a stored one links to its download,
``core.web.console.files``); the files an operator sent are items of their own, where they were sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.agent.conversation import WITHHELD
from core.compose import Services
from core.media.check import shown_size
from core.memory.supersession import is_superseded
from core.messages import MemoryRecord
from core.pipeline.cases import CaseView, list_cases
from core.pipeline.handoff import HandoffView
from core.store.models import AttachmentRow, IdentityEvent, Turn, utcnow
from core.web.console.render import BASE
from identity.directory import CustomerDetail, ledger_entries, show_customer
from identity.suggestions import MergeSuggestion, merge_suggestions

RECENT_TURNS = 2000  # the inbox's window: the latest turns of every customer
RECENT_CUSTOMERS = 50
TIMELINE_TURNS = 1000
PREVIEW = 140


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffRow:
    customer_id: str
    status: str  # waiting, owned
    operator: str | None
    channel: str | None
    requested_by: str
    opened_at: datetime
    waiting_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecentRow:
    customer_id: str
    channel: str
    role: str
    operator: str | None
    preview: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbox:
    handoffs: list[HandoffRow]
    recent: list[RecentRow]


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"


async def inbox(svc: Services) -> Inbox:
    """Open handoffs (waiting first, oldest first; then owned) and the latest message of each customer."""
    now = utcnow()
    handoffs = [
        HandoffRow(
            customer_id=h.customer_id,
            status=h.status,
            operator=h.operator,
            channel=h.channel,
            requested_by=h.requested_by,
            opened_at=h.opened_at,
            waiting_seconds=h.waiting_seconds(now),
        )
        for h in await svc.handoffs.open_handoffs()
    ]
    window = (
        select(Turn.id, Turn.customer_id)
        .where(Turn.role != WITHHELD)
        .order_by(Turn.id.desc())
        .limit(RECENT_TURNS)
        .subquery()
    )
    latest = (
        select(func.max(window.c.id).label("id"))
        .group_by(window.c.customer_id)
        .order_by(func.max(window.c.id).desc())
        .limit(RECENT_CUSTOMERS)
        .subquery()
    )
    async with svc.db.read() as session:
        turns = list(
            await session.scalars(select(Turn).join(latest, Turn.id == latest.c.id).order_by(Turn.id.desc()))
        )
    recent = [
        RecentRow(
            customer_id=t.customer_id,
            channel=t.channel,
            role=t.role,
            operator=t.operator,
            preview=_preview(t.text),
            at=t.created_at,
        )
        for t in turns
    ]
    return Inbox(handoffs=handoffs, recent=recent)


# ----- a customer's timeline -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Recalled:
    id: str
    known: bool  # still among the customer's memories (else it was forgotten or moved)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileView:
    """A file of a turn as the timeline shows it: stored ones can be downloaded, refused ones say why."""

    id: int
    name: str
    media_type: str
    size: str  # as people read it: "120 KB"
    stored: bool
    reason: str | None = None
    href: str | None = None  # the download (stored files only)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineItem:
    """A turn (``kind`` "turn"), a note about the conversation (``kind`` "note"), or files sent to the
    customer (``kind`` "files": an operator's reply's files, shown where they were sent)."""

    kind: str
    at: datetime
    order: int
    channel: str | None = None
    role: str | None = None  # customer, assistant, operator, withheld
    operator: str | None = None
    text: str = ""
    recalled: tuple[Recalled, ...] = ()
    files: tuple[FileView, ...] = ()


def _file_view(row: AttachmentRow, customer_id: str) -> FileView:
    stored = row.status == "stored" and row.sha256 is not None
    return FileView(
        id=row.id,
        name=row.name,
        media_type=row.media_type,
        size=shown_size(row.size),
        stored=stored,
        reason=row.reason,
        href=f"{BASE}/customers/{customer_id}/files/{row.id}" if stored else None,
    )


async def _files(
    svc: Services, customer_id: str, inbox_ids: list[int]
) -> tuple[dict[int, tuple[FileView, ...]], list[TimelineItem]]:
    """The customer's files: those received, by the inbox row they came with; those sent, as timeline
    items of their own (one per reply). Bounded by the timeline's turns (received) and ``TIMELINE_TURNS``."""
    async with svc.db.read() as session:
        received = list(
            await session.scalars(
                select(AttachmentRow)
                .where(AttachmentRow.customer_id == customer_id, AttachmentRow.inbox_id.in_(inbox_ids))
                .order_by(AttachmentRow.inbox_id, AttachmentRow.position)
            )
        )
        sent = list(
            await session.scalars(
                select(AttachmentRow)
                .where(AttachmentRow.customer_id == customer_id, AttachmentRow.direction == "out")
                .order_by(AttachmentRow.id.desc())
                .limit(TIMELINE_TURNS)
            )
        )
    by_inbox: dict[int, list[FileView]] = {}
    for row in received:
        if row.inbox_id is not None:
            by_inbox.setdefault(row.inbox_id, []).append(_file_view(row, customer_id))
    by_reply: dict[int | None, list[AttachmentRow]] = {}
    for row in reversed(sent):
        by_reply.setdefault(row.outbox_id, []).append(row)
    items = [
        TimelineItem(
            kind="files",
            at=rows[0].created_at,
            order=4,
            channel=rows[0].channel,
            role="sent",
            files=tuple(_file_view(row, customer_id) for row in sorted(rows, key=lambda r: r.position)),
        )
        for rows in by_reply.values()
    ]
    return {key: tuple(views) for key, views in by_inbox.items()}, items


def _notes(history: list[HandoffView]) -> list[TimelineItem]:
    notes: list[TimelineItem] = []
    for h in history:
        if h.requested_by != "operator":
            who = {"customer": "the customer", "assistant": "the bot", "fallback": "the bot (it failed)"}
            text = f"A person was asked for by {who.get(h.requested_by, h.requested_by)}."
            notes.append(TimelineItem(kind="note", at=h.opened_at, order=0, text=text))
        if h.taken_at is not None and h.operator:
            notes.append(
                TimelineItem(kind="note", at=h.taken_at, order=1, text=f"Taken over by {h.operator}.")
            )
        if h.closed_at is not None:
            by = f" by {h.closed_by}" if h.closed_by else ""
            notes.append(
                TimelineItem(kind="note", at=h.closed_at, order=2, text=f"Handed back to the bot{by}.")
            )
    return notes


async def timeline(svc: Services, customer_id: str, memory_ids: set[str] | None = None) -> list[TimelineItem]:
    """The customer's conversation on every channel, oldest first, with the handoff notes in between.
    A withheld reply is a note (its text is gone); a ``recalled`` id is known when in ``memory_ids``."""
    async with svc.db.read() as session:
        rows = list(
            await session.scalars(
                select(Turn)
                .where(Turn.customer_id == customer_id)
                .order_by(Turn.id.desc())
                .limit(TIMELINE_TURNS)
            )
        )
    known = memory_ids or set()
    received, sent = await _files(
        svc, customer_id, [t.inbox_id for t in rows if t.role == "customer" and t.inbox_id is not None]
    )
    items: list[TimelineItem] = []
    for t in reversed(rows):
        if t.role == WITHHELD:
            text = (
                "A reply was withheld here: it was written while handles since separated were one customer."
            )
            items.append(TimelineItem(kind="note", at=t.created_at, order=3, channel=t.channel, text=text))
            continue
        recalled = tuple(Recalled(id=str(m), known=str(m) in known) for m in (t.recalled or ()))
        items.append(
            TimelineItem(
                kind="turn",
                at=t.created_at,
                order=3,
                channel=t.channel,
                role=t.role,
                operator=t.operator,
                text=t.text,
                recalled=recalled,
                files=received.get(t.inbox_id, ()) if t.role == "customer" and t.inbox_id else (),
            )
        )
    history = await svc.handoffs.history(customer_id)
    first = rows[-1].created_at if len(rows) == TIMELINE_TURNS else None
    notes = [n for n in [*_notes(history), *sent] if first is None or n.at >= first]
    # turns keep the log's order (a customer's time is the platform's, in whole seconds, so it may read
    # earlier than the reply before it); each note goes before the first turn that is later than it
    pending = sorted(notes, key=lambda item: (item.at, item.order))
    merged: list[TimelineItem] = []
    for item in items:
        while pending and pending[0].at <= item.at:
            merged.append(pending.pop(0))
        merged.append(item)
    return merged + pending


# ----- a customer's page ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UndoableMerge:
    merge_id: int
    source: str  # the customer merged away
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerPage:
    detail: CustomerDetail
    memories: tuple[MemoryRecord, ...]
    handoff: HandoffView | None
    ledger: list[IdentityEvent]
    suggestions: list[MergeSuggestion]
    merges: list[UndoableMerge]  # merges into or out of this customer that are still in force
    items: list[TimelineItem]
    cases: list[CaseView]  # support cases, newest first (``core.pipeline.cases``)
    superseded: frozenset[str]  # memories replaced by a newer statement of the same fact (history)


async def customer_page(svc: Services, customer_id: str) -> CustomerPage:
    """Everything the customer page shows; ``NotFound`` for a customer nobody has (or forgotten)."""
    detail = await show_customer(svc.db, svc.memory, customer_id, turns=0)
    ledger = await ledger_entries(svc.db, customer_id=customer_id, limit=500)
    suggestions = [
        s
        for s in await merge_suggestions(svc.db, default_region=svc.default_region)
        if customer_id in (s.customer_a, s.customer_b)
    ]
    merges: list[UndoableMerge] = []
    if detail.merged_into is not None and detail.merge_id is not None:
        merges.append(UndoableMerge(merge_id=detail.merge_id, source=customer_id, target=detail.merged_into))
    latest: dict[str, int] = {}
    for entry in ledger:
        source = entry.from_customer_id
        if entry.kind == "merge" and entry.customer_id == customer_id and source in detail.merged_from:
            assert source is not None
            latest[source] = entry.id
    merges += [
        UndoableMerge(merge_id=mid, source=src, target=customer_id) for src, mid in sorted(latest.items())
    ]
    items = await timeline(svc, customer_id, {m.id for m in detail.memories})
    return CustomerPage(
        detail=detail,
        memories=detail.memories,
        handoff=await svc.handoffs.current(customer_id),
        ledger=ledger,
        suggestions=suggestions,
        merges=merges,
        items=items,
        cases=await list_cases(svc.db, customer_id),
        superseded=frozenset(m.id for m in detail.memories if is_superseded(m.metadata)),
    )
