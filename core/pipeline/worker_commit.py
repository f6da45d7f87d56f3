"""The worker's transactions: what it writes when it commits a message, answered or intercepted.

``commit_reply`` is the one transaction of a message the agent answered: the row done (only under this
process's claim), a handoff opened where the reply asks for one, support cases applied, the reply to the
outbox and both turns logged and remembered; when a person took the conversation over meanwhile, only the
customer's turn (the agent's answer is dropped). ``commit_outcome`` is the one transaction of a message
an interception answered (``core.pipeline.interceptions``): the row done (only under this process's
claim), an opt-out recorded or lifted, a rating, a handoff opened, the reply and notices to the outbox,
and the turns logged and remembered only where the interception keeps the message. ``log_turns`` (the
customer's turn and the reply, the memory job, the ``message.received`` event) and ``outbox_row`` (the
reply, keyed ``reply:<inbox id>``) are written in both.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent.agent import CaseAction
from core.events import record_event
from core.memory.policy import queue_memory_write
from core.messages import BUTTONS_KEY, Assurance, Button
from core.metrics import Metrics
from core.pipeline.cases import Cases
from core.pipeline.handoff import Handoffs
from core.pipeline.handoff_rows import open_handoff_row
from core.pipeline.interceptions import Outcome
from core.pipeline.ratings import Ratings
from core.pipeline.strangers import Strangers
from core.settings import MemorySettings
from core.store.db import Database
from core.store.leases import Claim
from core.store.models import InboxRow, OptOut, OutboxRow, Turn, utcnow
from core.store.wakeups import announce

log = logging.getLogger(__name__)


def assurance_of(value: str | None) -> Assurance:
    """The channel's word on a row's sender; a row from before it was recorded counts as unverified."""
    try:
        return Assurance(value) if value else Assurance.UNVERIFIED
    except ValueError:
        return Assurance.UNVERIFIED


async def commit_outcome(
    db: Database,
    claim: Claim,
    row: InboxRow,
    outcome: Outcome,
    *,
    customer_id: str,
    memory_settings: MemorySettings,
    ratings: Ratings,
    strangers: Strangers,
    handoffs: Handoffs | None,
) -> tuple[bool, str | None]:
    """Write what an interception decided (``core.pipeline.interceptions``), in one transaction, if this
    process still holds its claim on the row. Returns whether it was written, and the reply it queued."""
    stored = row.text if outcome.stored_text is None else outcome.stored_text
    async with db.session() as session:
        claimed = await session.execute(
            update(InboxRow)
            .where(claim.held(), InboxRow.status == "pending")
            .values(status="done", finished_at=utcnow(), last_error=None, text=stored, lease_until=None)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            log.info("inbox %s: answered elsewhere or its claim lapsed; nothing written", row.id)
            return False, None
        if outcome.opt_out is not None:
            opted_out = await session.get(OptOut, row.sender)
            if outcome.opt_out and opted_out is None:
                session.add(OptOut(address=row.sender))
            elif not outcome.opt_out and opted_out is not None:
                await session.delete(opted_out)
        if outcome.case_rating is not None:
            case_id, rating = outcome.case_rating
            await ratings.rate_in(session, customer_id=customer_id, case_id=case_id, rating=rating)
        reply = outcome.reply
        if outcome.acknowledge:
            reply = await strangers.acknowledgement(session, row.sender)
        if outcome.handoff is not None and handoffs is not None:
            opened = await handoffs.open_in(
                session,
                customer_id=customer_id,
                requested_by=outcome.handoff,
                channel=row.channel,
                inbox_id=row.id,
            )
            if opened is None:  # a person took the conversation meanwhile: nothing more to say
                reply = None
        if reply is not None:
            origin = "handoff" if outcome.handoff is not None else None
            session.add(outbox_row(row, customer_id, reply, origin=origin))
        if outcome.keep:
            await log_turns(session, memory_settings, row, customer_id, stored, reply)
        await announce(session, "outbox", "memory")
        for notice in outcome.notices:
            session.add(
                OutboxRow(
                    idempotency_key=notice.idempotency_key,
                    channel=notice.recipient.channel,
                    recipient=str(notice.recipient),
                    customer_id=customer_id,
                    reply_target={"one_time": True} if notice.one_time else {},
                    text=notice.text,
                    status="pending",
                )
            )
    return True, reply


async def log_turns(
    session: AsyncSession,
    memory_settings: MemorySettings,
    row: InboxRow,
    customer_id: str,
    said: str,
    reply: str | None,
    *,
    recalled: list[str] | None = None,
) -> list[int]:
    """Log what the customer said (and the reply) and queue its memory write (``core.memory.policy``).
    Both turns are vouched for as far as the channel vouched for the message. Returns their ids."""
    vouched = assurance_of(row.sender_assurance) is not Assurance.UNVERIFIED

    def turn(role: str, text: str, at: datetime, provider_id: str | None) -> Turn:
        return Turn(
            customer_id=customer_id,
            channel=row.channel,
            address=row.sender,
            role=role,
            text=text,
            inbox_id=row.id,
            provider_message_id=provider_id,
            created_at=at,
            vouched=vouched,
        )

    turns = [turn("customer", said, row.received_at, row.provider_message_id)]
    if reply is not None:
        answer = turn("assistant", reply, utcnow(), None)
        answer.recalled = recalled
        turns.append(answer)
    session.add_all(turns)
    await session.flush()
    await queue_memory_write(
        session,
        memory_settings,
        customer_id=customer_id,
        channel=row.channel,
        turn_ids=[turn.id for turn in turns],
    )
    await record_event(
        session,
        "message.received",
        {
            "inbox_id": row.id,
            "customer_id": customer_id,
            "channel": row.channel,
            "provider_message_id": row.provider_message_id,
            "private": row.private,
            "vouched": vouched,
            "received_at": row.received_at,
        },
        personal={"text": said, "sender": row.sender},
    )
    return [turn.id for turn in turns]


def outbox_row(
    row: InboxRow,
    customer_id: str,
    text: str,
    *,
    origin: str | None,
    buttons: tuple[Button, ...] = (),
) -> OutboxRow:
    reply_target = dict(row.reply_target)
    if buttons:
        reply_target[BUTTONS_KEY] = [[button.label, button.value] for button in buttons]
    return OutboxRow(
        origin=origin,
        inbox_id=row.id,
        idempotency_key=f"reply:{row.id}",
        channel=row.channel,
        recipient=row.sender,
        customer_id=customer_id,
        reply_target=reply_target,
        text=text,
        status="pending",
    )


async def commit_reply(
    db: Database,
    claim: Claim,
    row: InboxRow,
    customer_id: str,
    text: str,
    *,
    memory_settings: MemorySettings,
    handoffs: Handoffs | None,
    support_cases: Cases,
    metrics: Metrics,
    handoff: str | None = None,
    note: str | None = None,
    recalled: list[str] | None = None,
    cases: tuple[CaseAction, ...] = (),
    offline: bool = False,
    said: str | None = None,
) -> bool:
    """Mark the row done and write the reply, turns and memory job in one transaction, if this
    process still holds its claim on the row (``core.store.leases``).

    ``handoff``: the reply opens a handoff, asked for by this (the LLM's tool, the fallback). When a
    person took the conversation over while the agent was answering, the customer's message is
    logged and remembered and the agent's answer is dropped: the bot says nothing more."""
    async with db.session() as session:
        claimed = await session.execute(
            update(InboxRow)
            .where(claim.held(), InboxRow.status == "pending")
            .values(status="done", finished_at=utcnow(), last_error=None, lease_until=None)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            log.info("inbox %s: answered elsewhere or its claim lapsed; nothing written", row.id)
            return False
        said = row.text if said is None else said  # the message, with its files described
        if await open_handoff_row(session, customer_id) is not None:
            log.info("inbox %s: a person owns the conversation; the agent's answer is dropped", row.id)
            await log_turns(session, memory_settings, row, customer_id, said, None)
            await announce(session, "memory")
            return False
        if handoff is not None and handoffs is not None:
            await handoffs.open_in(
                session,
                customer_id=customer_id,
                requested_by=handoff,
                channel=row.channel,
                inbox_id=row.id,
                note=note,
            )
        change = await support_cases.apply_in(
            session,
            customer_id=customer_id,
            channel=row.channel,
            said=said,
            actions=cases,
            offline=offline,
        )
        text = change.reply(text)
        origin = "handoff" if handoff is not None else "bot"
        # the rating question's buttons, where only the customer reads them (a group could press them)
        buttons = change.buttons() if row.private is True else ()
        session.add(outbox_row(row, customer_id, text, origin=origin, buttons=buttons))
        turn_ids = await log_turns(session, memory_settings, row, customer_id, said, text, recalled=recalled)
        await change.attach_in(session, turn_ids=turn_ids, channel=row.channel, metrics=metrics)
        await announce(session, "outbox", "memory")
    return True
