"""Human handoff: a person takes a conversation over, and the bot stays silent until it is handed back.

A customer has at most one open handoff (``handoffs`` table, a partial unique index), in one of two states:

- ``waiting``: asked for and nobody has taken it yet. The customer asked in words (``asks_for_person``:
  "human", "agent", "talk to a person"), the LLM called its handoff tool, or the LLM failed for good
  (the fallback reply promises a person). The bot says once that a person will answer, and when the
  team is online (``core.pipeline.working_hours``); the team hears of it (``core.pipeline.handoff_team``).
- ``owned``: an operator took it (the console, ``POST /admin/customers/{id}/handoff``), or replied.

While a handoff is open the bot sends that customer nothing on any channel: new messages are still
stored, logged and remembered (``core.pipeline.handoff_requests.HandoffInterception`` keeps them without
a reply), an answer the agent was already writing when a person took over is committed ``withheld``, and
the delivery lane withholds any bot answer still in the outbox (``core.pipeline.delivery``). Hub replies
that the customer's own action asks for (a proof code's answer, STOP) are not the bot speaking and still
go.

An operator's reply (``Handoffs.reply``, written by ``core.pipeline.handoff_reply``) goes out through the
outbox once per idempotency key, is logged as an ``operator`` turn and remembered, and makes the person
the conversation's owner. The rows both share (the open handoff, its events, ``record_action``) are in
``core.pipeline.handoff_rows``.

The team's side (``core.pipeline.handoff_team``): a new handoff and an escalation are notices to the
team's Slack channel and/or email address, and ``escalate_due`` escalates every waiting handoff nobody has
answered for ``escalate_after_minutes`` of the team's online time.

Every operator action is recorded in ``operator_actions`` (``record_action``), attributed by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.media.outbound import OutgoingFile
from core.metrics import Metrics
from core.pipeline.handoff_reply import MAX_REPLY_CHARS as MAX_REPLY_CHARS  # the console's limit too
from core.pipeline.handoff_reply import OperatorReply, send_reply
from core.pipeline.handoff_rows import OPEN, handoff_event, live_customer, open_handoff_row, own
from core.pipeline.handoff_rows import record_action as record_action  # the console records with it
from core.pipeline.handoff_team import Escalations, TeamNotices
from core.pipeline.working_hours import WorkingHours
from core.ports import MediaStore
from core.settings import HandoffSettings, MemorySettings
from core.store.db import Database
from core.store.models import Handoff, utcnow

log = logging.getLogger(__name__)

# how the reply begins when the LLM failed for good (``fallback``; the worker's bare one too)
FALLBACK_OPENING = "Sorry, I can't answer right now because of a technical problem. Your message is saved"


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffView:
    id: int
    customer_id: str
    status: str  # waiting, owned, closed
    requested_by: str  # customer, assistant, fallback, operator
    operator: str | None
    note: str | None
    channel: str | None
    opened_at: datetime
    taken_at: datetime | None
    answered_at: datetime | None
    escalated_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def waiting_seconds(self, now: datetime) -> float:
        """How long the customer has waited for a person: from opening to the first reply (or now)."""
        end = self.answered_at or self.closed_at or now
        return max(0.0, (end - self.opened_at).total_seconds())

    @classmethod
    def of(cls, row: Handoff) -> HandoffView:
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            status=row.status,
            requested_by=row.requested_by,
            operator=row.operator,
            note=row.note,
            channel=row.channel,
            opened_at=row.opened_at,
            taken_at=row.taken_at,
            answered_at=row.answered_at,
            escalated_at=row.escalated_at,
            closed_at=row.closed_at,
            closed_by=row.closed_by,
        )


class Handoffs:
    """Open, take, answer and hand back conversations; escalate the ones nobody answers."""

    def __init__(
        self,
        db: Database,
        settings: HandoffSettings,
        *,
        memory_settings: MemorySettings | None = None,
        console_url: str | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._memory_settings = memory_settings or MemorySettings()
        self.hours = WorkingHours(settings.working_hours, settings.timezone)
        self._notices = TeamNotices(settings, console_url=console_url)
        self._escalations = Escalations(db, settings, self.hours, self._notices)
        self.metrics: Metrics | None = None

    # ----- what the customer is told ---------------------------------------------------------------

    def acknowledgement(self, now: datetime | None = None) -> str:
        """The bot's last word before a person takes over: a person will answer, and when."""
        now = now or utcnow()
        text = "I've asked a person from our team to take over; they will answer you here."
        if self.hours.always:
            return text + " Someone will be with you shortly."
        text += f" Our team is online {self.hours.describe()}."
        if self.hours.is_open(now):
            return text + " Someone will be with you shortly."
        back = self.hours.next_open(now)
        if back is None:
            return text
        local = back.astimezone(self.hours._zone)
        return text + f" We're offline now and back {local:%a %H:%M}."

    def fallback(self, now: datetime | None = None) -> str:
        """The reply when the LLM failed for good: the message is saved and a person will follow up."""
        return f"{FALLBACK_OPENING}. {self.acknowledgement(now)}"

    # ----- reads -------------------------------------------------------------------------------------

    async def current(self, customer_id: str) -> HandoffView | None:
        async with self._db.read() as session:
            row = await open_handoff_row(session, customer_id)
            return HandoffView.of(row) if row is not None else None

    async def open_handoffs(self) -> list[HandoffView]:
        """Open handoffs: waiting ones first, oldest first; then owned ones, oldest first."""
        async with self._db.read() as session:
            rows = list(
                await session.scalars(
                    select(Handoff).where(Handoff.status.in_(OPEN)).order_by(Handoff.opened_at)
                )
            )
        views = [HandoffView.of(row) for row in rows]
        return sorted(views, key=lambda v: (v.status != "waiting", v.opened_at))

    async def history(self, customer_id: str) -> list[HandoffView]:
        async with self._db.read() as session:
            rows = await session.scalars(
                select(Handoff).where(Handoff.customer_id == customer_id).order_by(Handoff.id.desc())
            )
            return [HandoffView.of(row) for row in rows]

    # ----- opening (inside the worker's commit) --------------------------------------------------------

    async def open_in(
        self,
        session: AsyncSession,
        *,
        customer_id: str,
        requested_by: str,
        channel: str | None,
        inbox_id: int | None,
        note: str | None = None,
    ) -> Handoff | None:
        """Open a waiting handoff in the caller's transaction, with its team notices; None when one is
        open already (the customer is told once)."""
        if await open_handoff_row(session, customer_id) is not None:
            return None
        row = Handoff(
            customer_id=customer_id,
            status="waiting",
            requested_by=requested_by,
            channel=channel,
            inbox_id=inbox_id,
            note=note[:500] if note else None,
            opened_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        self._notices.add_in(session, row, "opened")
        await handoff_event(session, "handoff.requested", row)
        if self.metrics is not None:
            self.metrics.handoffs_opened.labels(requested_by).inc()
        log.info("handoff %s opened for customer %s (%s)", row.id, customer_id, requested_by)
        return row

    # ----- operators ---------------------------------------------------------------------------------

    async def take(self, customer_id: str, *, operator: str, note: str | None = None) -> HandoffView:
        """``operator`` owns the conversation (a waiting handoff is taken; none open: one is opened).
        ``Conflict`` when another operator owns it; taking one's own again changes nothing."""
        now = utcnow()
        async with self._db.session() as session:
            await live_customer(session, customer_id)
            row = await open_handoff_row(session, customer_id)
            if row is not None and row.status == "owned" and row.operator != operator:
                raise Conflict(f"the conversation is owned by {row.operator}; they must hand it back first")
            if row is not None and row.status == "owned":
                return HandoffView.of(row)  # already this operator's
            row, opened = own(
                session, row, customer_id=customer_id, operator=operator, now=now, metrics=self.metrics
            )
            if note:
                row.note = note
            try:
                await session.flush()
            except IntegrityError as exc:  # another process opened one at the same moment
                raise Conflict("the conversation was just taken over; reload and try again") from exc
            if opened:  # opened here, by the operator
                await handoff_event(session, "handoff.requested", row)
            await record_action(session, operator=operator, action="take_over", customer_id=customer_id)
            view = HandoffView.of(row)
        log.info("handoff %s: customer %s taken over by an operator", view.id, customer_id)
        return view

    async def hand_back(self, customer_id: str, *, operator: str) -> HandoffView:
        """Close the open handoff: the bot answers the customer's next message. ``NotFound`` when none."""
        async with self._db.session() as session:
            row = await open_handoff_row(session, customer_id)
            if row is None:
                raise NotFound(f"customer {customer_id} has no open handoff")
            row.status, row.closed_at, row.closed_by = "closed", utcnow(), operator
            await record_action(session, operator=operator, action="hand_back", customer_id=customer_id)
            await handoff_event(session, "handoff.closed", row)
            view = HandoffView.of(row)
        log.info("handoff %s: customer %s handed back to the bot", view.id, customer_id)
        return view

    async def reply(
        self,
        customer_id: str,
        *,
        text: str,
        operator: str,
        channel: str | None = None,
        key: str | None = None,
        files: Sequence[OutgoingFile] = (),
        store: MediaStore | None = None,
    ) -> OperatorReply:
        """Send a person's reply on the customer's channel, once per ``key``; the person owns the
        conversation from now on if nobody did (``core.pipeline.handoff_reply``). ``files`` (checked; kept
        in ``store``) go with it. ``NotFound``: no such customer (or forgotten); ``Conflict``: nowhere to
        reply, or the recipient opted out; ``ValueError``: empty (no text and no file) or too long."""
        return await send_reply(
            self._db,
            self._memory_settings,
            self.metrics,
            customer_id,
            text=text,
            operator=operator,
            channel=channel,
            key=key,
            files=files,
            store=store,
        )

    # ----- escalation (``core.pipeline.handoff_team``) -------------------------------------------------

    async def escalate_due(self, now: datetime | None = None) -> list[int]:
        """Escalate every waiting, unanswered handoff past ``escalate_after_minutes`` of online time."""
        escalated = await self._escalations.escalate_due(now)
        if self.metrics is not None:
            self.metrics.handoff_escalations.inc(len(escalated))
        return escalated

    async def run_escalations(self) -> None:
        """Escalate what is due every ``check_interval_seconds`` while the hub runs (any number of
        processes may: the escalation mark is conditional, each notice keyed)."""
        while True:
            await asyncio.sleep(self._settings.check_interval_seconds)
            try:
                await self.escalate_due()
            except Exception:  # the store may be briefly away: the next round tries again
                log.exception("the handoff escalation round failed; retrying next round")

    async def count_open(self) -> dict[str, int]:
        async with self._db.read() as session:
            rows = await session.execute(select(Handoff.status).where(Handoff.status.in_(OPEN)))
            counts = dict.fromkeys(OPEN, 0)
            for (status,) in rows:
                counts[status] += 1
            return counts
