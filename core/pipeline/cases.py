"""Support cases: an open support issue becomes a case, with its status, opened and resolved times, and the
turns it came from (``cases`` table, ``core.store.models.Case``).

Opening and resolving, only in a private conversation and only for a sender its channel vouches for (a
forged sender must neither open nor close the customer's cases):

- with an LLM, the model decides with its tools ``open_case(title)`` and ``resolve_case(case_id, summary)``
  (``core.agent.prompt``); it is shown the customer's open cases with their numbers, and a resolution of a
  case that is not one of them is dropped (``core.agent.agent.case_actions``, and again here);
- offline, rules decide (``rules``): a message that reports a problem ("charged twice", "not working",
  "broken", "refund", "cancel", "wrong", "missing", "complaint", ...) opens a case titled from the message
  (redacted, clipped) when the customer has no open case yet; a message that says it is solved ("that
  fixed it", "it works now", "resolved", "all good now") resolves the most recent open case.

The worker applies the decision inside the transaction that commits the reply (``Cases.apply_in`` before
the reply is written, ``CaseChange.attach_in`` once the turns are logged): the case, its turns, the words
the reply gains ("I've opened case #3 for this.", "Case #3 is resolved." and the satisfaction question) and,
for a resolution, ONE memory job of kind ``case`` that ``core.memory.writer`` hands to
``remember_resolution``: the memory "Resolved case #3 (2026-12-06): <summary>" with the provenance of the
resolving handle, category ``support_history`` and the metadata ``case_id`` / ``case_status``. Offline the
summary is built from the title and the resolving message (redacted).

Satisfaction: the resolution reply asks for a 1-5 rating (``RATING_QUESTION``), with five buttons where the
channel has them (``rating_buttons``, values ``rate:<case id>:<1-5>``); the answer is
``core.pipeline.ratings``'s.

Every case's title and summary are redacted (``core.agent.redaction``); logs carry ids only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent.agent import AgentReply, AgentTurn, CaseAction
from core.agent.prompt import CaseNote
from core.agent.redaction import redact
from core.events import record_event
from core.messages import Button, ChatMessage, Provenance
from core.metrics import Metrics
from core.ports import MemoryStore
from core.store.db import Database
from core.store.models import Case, MemoryJob, Turn, utcnow

log = logging.getLogger(__name__)

OPEN, RESOLVED = "open", "resolved"
SUMMARY_JOB = "case"  # the memory job kind of a resolved case's summary (``core.memory.writer``)
MAX_TITLE_CHARS = 80
MAX_SUMMARY_CHARS = 400
RECENT_RESOLVED = 20  # resolved cases the prompt knows of (it lists fewer; the others still mark history)
RATING_QUESTION = "How did we do? Reply with a number from 1 (bad) to 5 (great)."
_SCAN_CHARS = 500  # the rules read the start of a message only (bounded time whatever its length)

_PROBLEM = re.compile(
    r"\b(?:charged\s(?:\w+\s)?twice|double[\s-]charged|overcharged|not\s(?:\w+\s)?working|"
    r"(?:does\s?n[o']?t|do\s?n[o']?t|is\s?n[o']?t|wo\s?n[o']?t|can\s?n?[o']?t|cannot|stopped)\s"
    r"(?:work|working|load|connect|arrive|start|open)\w*|"
    r"broken|broke|refund\w*|cancel\w*|wrong|missing|complain\w*|complaint|faulty|defective|"
    r"never\s(?:arrived|came)|error)\b",
    re.IGNORECASE,
)
_SOLVED = re.compile(
    r"\b(?:that\s(?:fixed|solved|sorted)\sit|(?:it|this|that|everything)\s(?:works|is\sworking)\s(?:now|again)|"
    r"it'?s\sworking\s(?:now|again)|works\s(?:now|again)|(?:is|it'?s|was|been|now)\s(?:fixed|resolved|solved|sorted)|"
    r"all\sgood\snow|fixed\snow|problem\s(?:solved|resolved)|issue\s(?:solved|resolved)|"
    r"thanks?,?\s(?:it'?s\s)?(?:solved|resolved|fixed|sorted)|^\s*(?:solved|resolved|fixed)\b)",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"\b(?:not|never|still|no\slonger)\s(?:\w+\s){0,2}?(?:fixed|resolved|solved|sorted|work\w*)\b|"
    r"n't\s(?:\w+\s){0,2}?(?:fixed|resolved|solved|sorted|work\w*)\b",
    re.IGNORECASE,
)


def rating_buttons(case_id: int) -> tuple[Button, ...]:
    """The five buttons under a resolution's rating question: labels 1-5, values ``rate:<case>:<n>``."""
    return tuple(Button(str(n), f"rate:{case_id}:{n}") for n in range(1, 6))


def _words(text: str) -> str:
    return " ".join(text[:_SCAN_CHARS].split())


def reports_problem(text: str) -> bool:
    """Whether a message reports a problem ("charged twice", "not working", "broken", "refund", ...)."""
    return bool(_PROBLEM.search(_words(text)))


def says_solved(text: str) -> bool:
    """Whether a message says its problem is solved ("that fixed it", "it works now", "all good now")."""
    words = _words(text)
    return bool(_SOLVED.search(words)) and not _NEGATED.search(words)


def clipped(text: str, limit: int) -> str:
    """One line of ``text``, redacted, at most ``limit`` characters."""
    line = " ".join(redact(text[: limit * 4]).text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def rules(turn: AgentTurn) -> tuple[CaseAction, ...]:
    """The offline decision: resolve the most recent open case, or open one for a reported problem."""
    still_open = [case for case in turn.cases if not case.resolved]
    if still_open and says_solved(turn.text):
        latest = max(still_open, key=lambda case: (case.opened_at, case.id))
        return (CaseAction(kind="resolve", case_id=latest.id),)
    if not still_open and not says_solved(turn.text) and reports_problem(turn.text):
        return (CaseAction(kind="open", title=clipped(turn.text, MAX_TITLE_CHARS)),)
    return ()


def note_of(row: Case) -> CaseNote:
    return CaseNote(
        id=row.id,
        title=row.title,
        status=row.status,
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        turn_ids=tuple(row.turn_ids or ()),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseView:
    """A case as the admin API, the CLI and an export show it."""

    id: int
    customer_id: str
    title: str
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    opened_by: str
    resolved_by: str | None
    channel: str | None
    turn_ids: tuple[int, ...]
    summary: str | None
    rating: int | None
    rated_at: datetime | None

    @classmethod
    def of(cls, row: Case) -> CaseView:
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            title=row.title,
            status=row.status,
            opened_at=row.opened_at,
            resolved_at=row.resolved_at,
            opened_by=row.opened_by,
            resolved_by=row.resolved_by,
            channel=row.channel,
            turn_ids=tuple(row.turn_ids or ()),
            summary=row.summary,
            rating=row.rating,
            rated_at=row.rated_at,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "title": self.title,
            "status": self.status,
            "opened_at": self.opened_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "opened_by": self.opened_by,
            "resolved_by": self.resolved_by,
            "channel": self.channel,
            "turn_ids": list(self.turn_ids),
            "summary": self.summary,
            "rating": self.rating,
            "rated_at": self.rated_at.isoformat() if self.rated_at else None,
        }


async def list_cases(db: Database, customer_id: str) -> list[CaseView]:
    """The customer's cases, newest first."""
    async with db.read() as session:
        rows = await session.scalars(
            select(Case)
            .where(Case.customer_id == customer_id)
            .order_by(Case.opened_at.desc(), Case.id.desc())
        )
        return [CaseView.of(row) for row in rows]


@dataclass(slots=True)
class CaseChange:
    """What ``Cases.apply_in`` did in the worker's transaction; ``attach_in`` completes it."""

    opened: list[Case] = field(default_factory=list)
    resolved: list[Case] = field(default_factory=list)

    def reply(self, text: str) -> str:
        """The reply with what the customer is told of the change (the rating question last)."""
        added = [f"I've opened case #{row.id} for this." for row in self.opened]
        added += [f"Case #{row.id} is resolved." for row in self.resolved]
        if self.resolved:
            added.append(RATING_QUESTION)
        if not added:
            return text
        return "\n\n".join(part for part in (text.strip(), " ".join(added)) if part)

    def buttons(self) -> tuple[Button, ...]:
        """The rating buttons of the case the reply asks about (the last one resolved), if any."""
        return rating_buttons(self.resolved[-1].id) if self.resolved else ()

    async def attach_in(
        self, session: AsyncSession, *, turn_ids: list[int], channel: str, metrics: Metrics | None = None
    ) -> None:
        """Record the turns on the changed cases; queue each resolution's summary memory (one job)."""
        for row in [*self.opened, *self.resolved]:
            row.turn_ids = list(dict.fromkeys([*(row.turn_ids or []), *turn_ids]))
        for row in self.resolved:
            job = MemoryJob(
                customer_id=row.customer_id, channel=channel, kind=SUMMARY_JOB, turn_ids=[], due_at=utcnow()
            )
            session.add(job)
            await session.flush()
            row.summary_job_id = job.id
        if metrics is not None:
            for row in self.opened:
                metrics.cases_opened.labels(row.opened_by).inc()
            for row in self.resolved:
                metrics.cases_resolved.labels(row.resolved_by or "").inc()


class Cases:
    """Read the cases the agent is shown; open and resolve them inside the worker's commit."""

    def __init__(self, db: Database, *, metrics: Metrics | None = None) -> None:
        self._db = db
        self.metrics = metrics

    async def notes(self, customer_id: str) -> tuple[CaseNote, ...]:
        """The customer's open cases and the last ``RECENT_RESOLVED`` resolved ones, for the prompt."""
        async with self._db.read() as session:
            still_open = list(
                await session.scalars(
                    select(Case).where(Case.customer_id == customer_id, Case.status == OPEN).order_by(Case.id)
                )
            )
            resolved = list(
                await session.scalars(
                    select(Case)
                    .where(Case.customer_id == customer_id, Case.status == RESOLVED)
                    .order_by(Case.resolved_at.desc(), Case.id.desc())
                    .limit(RECENT_RESOLVED)
                )
            )
        return tuple(note_of(row) for row in [*still_open, *resolved])

    def decide(self, turn: AgentTurn, reply: AgentReply, *, vouched: bool) -> tuple[CaseAction, ...]:
        """What is done about cases for this answered message: the model's tools, or offline the rules;
        nothing outside a private conversation or for a sender nobody vouches for."""
        if not turn.private or not vouched:
            return ()
        return rules(turn) if reply.offline else reply.case_actions

    async def apply_in(
        self,
        session: AsyncSession,
        *,
        customer_id: str,
        channel: str,
        said: str,
        actions: tuple[CaseAction, ...],
        offline: bool,
    ) -> CaseChange:
        """Open and resolve cases in the caller's transaction (``said``: the customer's message, for an
        offline summary). A resolution names an open case of this customer, else it is dropped."""
        change = CaseChange()
        if not actions:
            return change
        by = "rules" if offline else "assistant"
        now = utcnow()
        for action in actions:
            if action.kind == "resolve" and action.case_id is not None:
                row = await session.scalar(
                    select(Case).where(
                        Case.id == action.case_id, Case.customer_id == customer_id, Case.status == OPEN
                    )
                )
                if row is None:
                    continue
                summary = action.summary or f"{row.title}. The customer said: {clipped(said, 200)}"
                row.status, row.resolved_at, row.resolved_by = RESOLVED, now, by
                row.rating_asked_at = now  # the resolution reply asks for the rating (``CaseChange.reply``)
                row.summary = clipped(summary, MAX_SUMMARY_CHARS)
                change.resolved.append(row)
            elif action.kind == "open" and action.title:
                if offline and await session.scalar(
                    select(Case.id).where(Case.customer_id == customer_id, Case.status == OPEN).limit(1)
                ):
                    continue  # the rules open one case at a time
                row = Case(
                    customer_id=customer_id,
                    title=clipped(action.title, MAX_TITLE_CHARS),
                    status=OPEN,
                    opened_at=now,
                    opened_by=by,
                    channel=channel,
                    turn_ids=[],
                )
                session.add(row)
                change.opened.append(row)
        await session.flush()
        for row in change.opened:
            log.info("case %s opened for customer %s (%s)", row.id, customer_id, by)
        for row in change.resolved:
            log.info("case %s of customer %s resolved (%s)", row.id, customer_id, by)
        for event_type, rows in (("case.opened", change.opened), ("case.resolved", change.resolved)):
            for row in rows:
                await case_event(session, event_type, row)
        return change


async def case_event(session: AsyncSession, event_type: str, row: Case) -> None:
    """The business's event (``core.events``) for a case opened or resolved, in its transaction; the
    title and summary only for endpoints that take personal data."""
    await record_event(
        session,
        event_type,
        {
            "case_id": row.id,
            "customer_id": row.customer_id,
            "channel": row.channel,
            "status": row.status,
            "opened_by": row.opened_by,
            "opened_at": row.opened_at,
            "resolved_by": row.resolved_by,
            "resolved_at": row.resolved_at,
        },
        personal={"title": row.title, "summary": row.summary},
    )


# ----- the summary memory (run by ``core.memory.writer`` for a job of kind ``case``) ----------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseProvenance(Provenance):
    """The provenance of a case's summary memory: its metadata names the case and its status."""

    case_id: int
    case_status: str = RESOLVED

    def as_metadata(self) -> dict[str, Any]:
        return {**Provenance.as_metadata(self), "case_id": self.case_id, "case_status": self.case_status}


def summary_text(row: Case) -> str:
    when = row.resolved_at.date().isoformat() if row.resolved_at else "earlier"
    return f"Resolved case #{row.id} ({when}): {row.summary or row.title}"


async def remember_resolution(db: Database, memory: MemoryStore, job_id: int) -> str:
    """Write the summary memory of the case whose summary job is ``job_id``; the writer's outcome label.
    Idempotent: a summary already in memory (a re-run after a crash) is not written again."""
    async with db.read() as session:
        row = await session.scalar(select(Case).where(Case.summary_job_id == job_id))
        if row is None or row.status != RESOLVED:
            return "nothing_to_write"  # forgotten, or the case is gone
        turns = list(
            await session.scalars(
                select(Turn).where(Turn.id.in_(row.turn_ids or []), Turn.role == "customer").order_by(Turn.id)
            )
        )
    if not turns:
        return "nothing_to_write"
    if any(m.metadata.get("case_id") == row.id for m in await memory.list(row.customer_id)):
        return "already_written"
    last = turns[-1]
    provenance = CaseProvenance(
        channel=last.channel,
        handle=last.address,
        message_ids=tuple(dict.fromkeys(f"inbox:{t.inbox_id}" for t in turns if t.inbox_id is not None)),
        category="support_history",
        sender_vouched=True,
        said_by="support_team",
        case_id=row.id,
    )
    await memory.remember(
        row.customer_id,
        [ChatMessage(role="user", content=summary_text(row))],
        provenance=provenance,
        infer=False,
    )
    log.info("case %s: summary written to the memory of customer %s", row.id, row.customer_id)
    return "written"
