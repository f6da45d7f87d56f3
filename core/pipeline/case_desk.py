"""A person opens and resolves support cases (the console, ``POST /admin/customers/{id}/cases``, the CLI).

The bot opens and resolves cases in the worker (``core.pipeline.cases``); a person does it here, with the
same rows, events, metrics and summary memory, attributed to ``operator:<name>`` (``opened_by`` /
``resolved_by``, the ``operator_actions`` record):

- **open**: a title (redacted, one line, at most ``MAX_TITLE_CHARS``) for a live customer (``NotFound``
  when unknown or forgotten, ``Conflict`` when merged). The case comes from the customer's latest message
  (its turn and channel), if there is one. People may open several cases at once; the rules open one.
- **resolve**: an open case of that customer (``NotFound`` otherwise; ``Conflict`` when it is resolved
  already, so a double submit resolves once) with a summary (redacted, at most ``MAX_SUMMARY_CHARS``):
  one memory job of kind ``case`` writes it to memory ("Resolved case #3 (2026-12-06): ..."), as for the
  bot's resolutions. With ``tell=True`` the customer is told on their latest private conversation ("Case
  #3 is resolved." and the rating question, with the rating buttons where the channel has them), under the
  idempotency key ``case:<id>:resolved``; the question is what lets a digit answer rate the case
  (``Case.rating_asked_at``, ``core.pipeline.ratings``). Telling does not take the conversation over.
  Nowhere to tell (no private conversation, or the customer opted out) is a ``Conflict`` and nothing is
  changed: resolve without telling, or reply first.

Everything of one call happens in one transaction. Logs carry ids only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.messages import BUTTONS_KEY
from core.metrics import Metrics
from core.pipeline.cases import (
    MAX_SUMMARY_CHARS,
    MAX_TITLE_CHARS,
    OPEN,
    RATING_QUESTION,
    RESOLVED,
    SUMMARY_JOB,
    CaseView,
    case_event,
    clipped,
    rating_buttons,
)
from core.pipeline.handoff_reply import reply_target
from core.pipeline.handoff_rows import live_customer, record_action
from core.store.db import Database
from core.store.models import Case, MemoryJob, OptOut, OutboxRow, Turn, utcnow
from core.store.wakeups import announce

log = logging.getLogger(__name__)

OPERATOR_LABEL = "operator"  # the metrics' opened_by / resolved_by for a person (names would be unbounded)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    case: CaseView
    told_on: str | None  # the channel the customer was told on, None when not told


_OPERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.@-]{0,63}")  # as the admin API's ``OperatorName``


def _actor(operator: str) -> str:
    if not _OPERATOR.fullmatch(operator):
        raise ValueError("an operator name is 1 to 64 letters, digits, spaces or _ . @ -")
    return f"operator:{operator}"


def _text(value: str, limit: int, what: str) -> str:
    line = clipped(value, limit)
    if not line:
        raise ValueError(f"the {what} is empty")
    return line


async def _latest_customer_turn(session: AsyncSession, customer_id: str) -> Turn | None:
    return await session.scalar(
        select(Turn)
        .where(Turn.customer_id == customer_id, Turn.role == "customer")
        .order_by(Turn.id.desc())
        .limit(1)
    )


class CaseDesk:
    """Cases opened and resolved by a person."""

    def __init__(self, db: Database, *, metrics: Metrics | None = None) -> None:
        self._db = db
        self.metrics = metrics

    async def open(self, customer_id: str, *, title: str, operator: str) -> CaseView:
        """Open a case for the customer, from their latest message if any. ``ValueError``: no title."""
        line, actor = _text(title, MAX_TITLE_CHARS, "title"), _actor(operator)
        async with self._db.session() as session:
            await live_customer(session, customer_id)
            latest = await _latest_customer_turn(session, customer_id)
            row = Case(
                customer_id=customer_id,
                title=line,
                status=OPEN,
                opened_at=utcnow(),
                opened_by=actor,
                channel=latest.channel if latest else None,
                turn_ids=[latest.id] if latest else [],
            )
            session.add(row)
            await session.flush()
            await record_action(
                session, operator=operator, action="open_case", customer_id=customer_id, subject=str(row.id)
            )
            await case_event(session, "case.opened", row)
            view = CaseView.of(row)
        if self.metrics is not None:
            self.metrics.cases_opened.labels(OPERATOR_LABEL).inc()
        log.info("case %s opened for customer %s by a person", view.id, customer_id)
        return view

    async def resolve(
        self, customer_id: str, case_id: int, *, summary: str, operator: str, tell: bool = False
    ) -> Resolved:
        """Resolve an open case of the customer with a summary (written to memory once); ``tell``: say so
        to the customer and ask for the rating. ``ValueError``: no summary."""
        line, actor = _text(summary, MAX_SUMMARY_CHARS, "summary"), _actor(operator)
        now = utcnow()
        async with self._db.session() as session:
            await live_customer(session, customer_id)
            row = await session.scalar(
                select(Case).where(Case.id == case_id, Case.customer_id == customer_id).with_for_update()
            )
            if row is None:
                raise NotFound(f"customer {customer_id} has no case {case_id}")
            if row.status != OPEN:
                raise Conflict(f"case {case_id} is resolved already")
            turn_ids = list(row.turn_ids or [])
            channel = row.channel
            if not turn_ids:  # the summary memory is dated and attributed by the case's customer turns
                latest = await _latest_customer_turn(session, customer_id)
                turn_ids = [latest.id] if latest else []
                channel = channel or (latest.channel if latest else None)
            told_on = await self._tell(session, row, operator, turn_ids) if tell else None
            row.status, row.resolved_at, row.resolved_by = RESOLVED, now, actor
            row.summary = line
            row.turn_ids = turn_ids
            row.rating_asked_at = now if told_on else None
            if turn_ids:  # a customer who never wrote has nothing to attribute a memory to
                # the writer of a process serving the case's channel writes it (``core.memory.writer``)
                job = MemoryJob(
                    customer_id=customer_id,
                    channel=told_on or channel or "",
                    kind=SUMMARY_JOB,
                    turn_ids=[],
                    due_at=now,
                )
                session.add(job)
                await session.flush()
                row.summary_job_id = job.id
            await record_action(
                session,
                operator=operator,
                action="resolve_case",
                customer_id=customer_id,
                subject=str(row.id),
            )
            await case_event(session, "case.resolved", row)
            await announce(session, "outbox", "memory")
            view = CaseView.of(row)
        if self.metrics is not None:
            self.metrics.cases_resolved.labels(OPERATOR_LABEL).inc()
        log.info(
            "case %s of customer %s resolved by a person (told: %s)", case_id, customer_id, bool(told_on)
        )
        return Resolved(case=view, told_on=told_on)

    async def _tell(self, session: AsyncSession, row: Case, operator: str, turn_ids: list[int]) -> str:
        """Queue "Case #N is resolved." and the rating question on the customer's latest private
        conversation; its turn joins ``turn_ids``. The channel it goes out on."""
        target = await reply_target(session, row.customer_id, None)
        if await session.get(OptOut, target.sender) is not None:
            raise Conflict(f"the customer opted out on {target.channel}: resolve without telling them")
        text = f"Case #{row.id} is resolved. {RATING_QUESTION}"
        reply_to = dict(target.reply_target)
        reply_to[BUTTONS_KEY] = [[button.label, button.value] for button in rating_buttons(row.id)]
        outbox = OutboxRow(
            idempotency_key=f"case:{row.id}:resolved",
            channel=target.channel,
            recipient=target.sender,
            customer_id=row.customer_id,
            reply_target=reply_to,
            text=text,
            status="pending",
            origin="operator",
        )
        turn = Turn(
            customer_id=row.customer_id,
            channel=target.channel,
            address=target.sender,
            role="operator",
            operator=operator,
            text=text,
            created_at=utcnow(),
            vouched=True,
        )
        session.add_all([outbox, turn])
        await session.flush()
        turn_ids.append(turn.id)
        return target.channel
